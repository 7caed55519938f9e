"""Read while writing: load_dataset / refresh() on a directory a live process is recording into."""

from __future__ import annotations

import os
import subprocess
import sys
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
    proc = subprocess.Popen([sys.executable, str(CHILD), str(path), "21", "steps", str(steps)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    base = 21 * 100_000
    expected: dict[int, dict] = {}
    ds = None
    counts: list[int] = []
    checked = 0
    while True:
        running = proc.poll() is None
        if ds is None:
            try:
                ds = load_dataset(path)
            except (FileNotFoundError, DatasetFormatError):
                assert running, proc.stderr.read()
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
        if not running:
            break
    assert proc.returncode == 0, proc.stderr.read()
    growth = len(set(counts))
    assert growth >= 3, f"the reader saw only {growth} distinct sizes: {counts[:5]}..."
    assert ds.total_steps == steps
    fresh = load_dataset(path)
    assert len(fresh) == len(ds) and fresh.total_steps == steps
    report_figures("read_while_writing", {"refreshes": len(counts), "distinct_sizes": growth,
                                          "episodes_checked_live": checked})
