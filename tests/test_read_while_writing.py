"""Read while writing: load_dataset / refresh() on a directory a live process is recording into.

The reader refreshes in a loop as fast as it can; in addition the child stops after each flush at a
multiple of 10,000 steps until the reader has refreshed and checked (a handshake over stdin/stdout), so
the sizes it must see do not depend on how the two processes are scheduled on a loaded runner.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
from reliability_child import expected_episode, report_figures

import gym_aquacollect
from gym_aquacollect import DatasetFormatError, load_dataset

CHILD = Path(__file__).with_name("reliability_child.py")
PKG_ROOT = str(Path(gym_aquacollect.__file__).resolve().parent.parent)


def test_reader_sees_every_durable_episode_consistently(tmp_path: Path) -> None:
    path = tmp_path / "live"
    steps = 40_000
    env = {**os.environ, "PYTHONPATH": PKG_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, str(CHILD), str(path), "21", "steps", str(steps), "handshake"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    checkpoints: queue.Queue[tuple[int, int]] = queue.Queue()

    def read_lines() -> None:  # "F <episodes> <steps>" after each flush; the child waits at 10k multiples
        for line in proc.stdout:
            parts = line.split()
            if parts[:1] == ["F"] and int(parts[2]) % 10_000 == 0:
                checkpoints.put((int(parts[1]), int(parts[2])))

    threading.Thread(target=read_lines, daemon=True).start()
    at_checkpoints: list[tuple[int, int]] = []
    base = 21 * 100_000
    expected: dict[int, dict] = {}
    ds = None
    counts: list[int] = []
    checked = 0
    while True:
        running = proc.poll() is None
        try:
            flushed = checkpoints.get_nowait()  # the child is waiting: everything up to here is durable
        except queue.Empty:
            flushed = None
        if ds is None:
            try:
                ds = load_dataset(path)
            except (FileNotFoundError, DatasetFormatError):
                assert running and flushed is None, proc.stderr.read()
                continue  # not created yet
        else:
            ds.refresh()
        n = len(ds)
        counts.append(n)
        assert n >= (counts[-2] if len(counts) > 1 else 0), "episodes disappeared"
        # every listed episode is whole and exactly what was recorded (check the newest few each time)
        for k in range(max(0, n - 3), n):
            if k not in expected:
                expected[k] = expected_episode(base + k)
            ep = ds[k]
            m = len(ep)  # the last episode may be the open one, stored truncated at close: a prefix
            assert m == len(expected[k]["actions"]) or ep.metadata.get("interrupted") == "close"
            np.testing.assert_array_equal(ep.observations, expected[k]["observations"][: m + 1])
            np.testing.assert_array_equal(ep.actions, expected[k]["actions"][:m])
            checked += 1
        if flushed is not None:
            assert n >= flushed[0], f"after a flush at {flushed[1]} steps: {n} episodes listed, {flushed[0]} flushed"
            at_checkpoints.append((flushed[1], n))
            proc.stdin.write("go\n")
            proc.stdin.flush()
        if not running:
            break
    assert proc.returncode == 0, proc.stderr.read()
    growth = len(set(counts))
    # at each of the 4 checkpoints (10k..40k steps) the reader saw a larger dataset than at the one before
    assert [c[0] for c in at_checkpoints] == [10_000, 20_000, 30_000, 40_000], at_checkpoints
    sizes = [c[1] for c in at_checkpoints]
    assert sizes == sorted(set(sizes)) and growth >= 4, f"sizes at checkpoints {sizes}, distinct sizes {growth}"
    assert ds.total_steps == steps
    fresh = load_dataset(path)
    assert len(fresh) == len(ds) and fresh.total_steps == steps
    report_figures("read_while_writing", {"refreshes": len(counts), "distinct_sizes": growth,
                                          "sizes_at_checkpoints": sizes,
                                          "episodes_checked_live": checked})
