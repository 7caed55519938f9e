"""Reliability: SIGKILL at random points, file size limit, concurrent writer processes.

Real processes, real signals, real files. Soak mode (``--soak`` / ``AQUACOLLECT_SOAK=1``) runs many more
kills. Figures are printed (``-s``) and appended to ``$AQUACOLLECT_FIGURES`` when set.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from reliability_child import expected_episode, report_figures

import gym_aquacollect
from gym_aquacollect import load_dataset
from gym_aquacollect.storage.verify import verify_dataset

CHILD = Path(__file__).with_name("reliability_child.py")
PKG_ROOT = str(Path(gym_aquacollect.__file__).resolve().parent.parent)


def _spawn(*args: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": PKG_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, str(CHILD), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


class _Lines:
    """Reads a child's stdout lines in a thread (so the parent can kill at any moment)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._t = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._t.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line.strip())
            if line.startswith("READY"):
                self.ready.set()

    def join(self) -> None:
        self._t.join(10)

    def last(self, tag: str) -> list[int] | None:
        for line in reversed(self.lines):
            if line.startswith(tag + " "):
                return [int(x) for x in line.split()[1:]]
        return None


def _check_episodes(ds, base_seed: int, n_check: int | None = None) -> None:
    """Every stored episode equals the one the child's deterministic policy produces."""
    n = len(ds) if n_check is None else n_check
    for k in range(n):
        ep, exp = ds[k], expected_episode(base_seed + k)
        assert len(ep) == len(exp["actions"]), f"episode {k}: length {len(ep)} != {len(exp['actions'])}"
        np.testing.assert_array_equal(ep.observations, exp["observations"], err_msg=f"episode {k}")
        np.testing.assert_array_equal(ep.actions, exp["actions"], err_msg=f"episode {k}")
        np.testing.assert_array_equal(ep.rewards, exp["rewards"], err_msg=f"episode {k}")
        assert bool(ep.terminations[-1]) == bool(exp["terminated"])
        assert ep.metadata["seed"] == base_seed + k


def test_sigkill_at_random_points(tmp_path: Path, soak: bool) -> None:
    """Kill a recording process with SIGKILL at random moments: the dataset always opens, holds every
    episode flushed before the kill (and they are exactly what was recorded), verify finds no problem."""
    runs = 150 if soak else 10
    rng = random.Random(1234)
    kills = lost_bytes = lost_steps_max = total_eps = partial_steps = 0
    for run in range(runs):
        path = tmp_path / f"run{run}"
        seed = run + 1
        proc = _spawn(path, seed, "kill")
        lines = _Lines(proc)
        assert lines.ready.wait(60), f"child did not start: {proc.stderr.read() if proc.poll() is not None else ''}"
        time.sleep(rng.uniform(0.0, 1.2))
        flushed = lines.last("F")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        lines.join()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
        kills += 1
        # the last "F" printed before the kill is a lower bound of what must be durable
        ds = load_dataset(path)
        if flushed is not None:
            assert len(ds) >= flushed[0], f"run {run}: {len(ds)} episodes stored, {flushed[0]} were flushed"
            # "F" is printed right after an episode ended and was flushed: those steps are all durable
            assert sum(len(ds[k]) for k in range(flushed[0])) == flushed[1] <= ds.total_steps
        _check_episodes(ds, seed * 100_000)
        report = verify_dataset(path)
        assert report.ok, report.summary()
        lost_bytes += sum((path / f).stat().st_size for f in report.unreferenced)
        seen = lines.last("S")
        if seen is not None:
            durable_steps = sum(s.n_step_rows for m in ds.manifests for s in m.shards)
            lost_steps_max = max(lost_steps_max, seen[0] - durable_steps)
        # crash recovery: the unfinished episode's durable rows are a prefix of what was recorded
        dsp = load_dataset(path, include_partial=True)
        if len(dsp) > len(ds):
            assert len(dsp) == len(ds) + 1
            ep = dsp[len(ds)]
            assert ep.metadata["interrupted"] == "crash" and ep.truncations[-1]
            exp = expected_episode(seed * 100_000 + len(ds))
            np.testing.assert_array_equal(ep.observations, exp["observations"][: len(ep) + 1])
            partial_steps += len(ep)
        total_eps += len(ds)
    report_figures("sigkill", {"runs": runs, "kills_survived": kills, "episodes_checked": total_eps,
                               "unreferenced_bytes_lost": lost_bytes, "max_steps_lost_lower_bound": lost_steps_max,
                               "partial_steps_recovered": partial_steps})
    assert kills == runs


def test_file_size_limit_gives_clear_error_and_keeps_earlier_shards(tmp_path: Path) -> None:
    """RLIMIT_FSIZE in a subprocess, rows that cannot fit under it: the user's thread gets a WriterError
    naming the dataset and the limit; the shards committed before are intact; nothing half-written is
    presented as data or left behind; the process exits normally (HDF5 never sees a failed write)."""
    path = tmp_path / "ds"
    limit = 200 * 1024
    proc = _spawn(path, 7, "fsize", limit)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, f"expected a WriterError exit, got {proc.returncode}\n{out}\n{err[-3000:]}"
    lines = out.splitlines()
    flushed = [list(map(int, x.split()[1:])) for x in lines if x.startswith("F ")]
    errline = next(x for x in lines if x.startswith("ERR "))
    assert str(path) in errline and "failed" in errline
    assert "file size limit" in errline and "RLIMIT_FSIZE" in errline, errline
    assert "committed before the failure is intact" in errline
    assert [f[1] for f in flushed] == [1000, 2000, 3000]
    report = verify_dataset(path)
    assert report.ok, report.summary()
    assert report.unreferenced == [], "a half-written shard was left in shards/"
    ds = load_dataset(path)
    assert len(ds) >= flushed[-1][0]
    _check_episodes(ds, 7 * 100_000)
    dsp = load_dataset(path, include_partial=True)
    assert dsp.total_steps == 3000  # exactly the committed steps, nothing of the rows that did not fit
    assert all(s.size <= limit for m in ds.manifests for s in m.shards)
    report_figures("fsize", {"limit_bytes": limit, "committed_steps_kept": dsp.total_steps,
                             "error": errline[4:160]})


def test_file_size_limit_rotates_shards_when_blocks_fit(tmp_path: Path) -> None:
    """Under RLIMIT_FSIZE, small blocks and no flush: the writer commits shards before they reach the
    limit instead of failing; everything is recorded."""
    path = tmp_path / "ds"
    limit = 150 * 1024
    proc = _spawn(path, 8, "fsize-rotate", limit)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"{out}\n{err[-3000:]}"
    ds = load_dataset(path)
    assert ds.total_steps == 20_000
    sizes = [s.size for m in ds.manifests for s in m.shards]
    assert len(sizes) > 3 and max(sizes) <= limit, sizes
    assert verify_dataset(path).ok
    _check_episodes(ds, 8 * 100_000, n_check=len(ds) - 1)


def test_concurrent_writer_processes_never_clobber(tmp_path: Path, soak: bool) -> None:
    """Several processes record into one new dataset directory at once: every episode of every writer is
    there, exactly as recorded, and verify finds nothing wrong."""
    n_proc = 4
    steps = 20_000 if soak else 3_000
    path = tmp_path / "shared"
    procs = [_spawn(path, 10 + i, "steps", steps) for i in range(n_proc)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    report = verify_dataset(path)
    assert report.ok and report.manifests == n_proc, report.summary()
    ds = load_dataset(path)
    assert ds.total_steps == n_proc * steps
    by_writer: dict[int, list] = {}
    for ep in ds:
        by_writer.setdefault(ep.metadata["seed"] // 100_000, []).append(ep)
    assert sorted(by_writer) == [10 + i for i in range(n_proc)]
    for seed, eps in by_writer.items():
        # one writer's episodes stay in its order and equal what it recorded
        assert [e.metadata["seed"] for e in eps[:-1]] == [seed * 100_000 + k for k in range(len(eps) - 1)]
        for k, ep in enumerate(eps):
            exp = expected_episode(seed * 100_000 + k)
            n = len(ep)
            np.testing.assert_array_equal(ep.observations, exp["observations"][: n + 1])
            np.testing.assert_array_equal(ep.actions, exp["actions"][:n])
    report_figures("concurrent", {"processes": n_proc, "steps_each": steps, "episodes": len(ds)})


def test_writers_creating_one_new_dataset_at_once(tmp_path: Path) -> None:
    """Writers that create the same new dataset directory at the same moment all join it (found by the
    distributed benchmark: a writer saw the other's manifests/ before its aquacollect.json and refused)."""
    from gym_aquacollect.storage.manifest import init_dataset_dir

    meta = {"observation_space": {"type": "Discrete", "n": 2}, "action_space": {"type": "Discrete", "n": 2}}
    n_threads, rounds = 8, 30
    errors: list[BaseException] = []
    for r in range(rounds):
        path = tmp_path / f"new{r}"
        barrier = threading.Barrier(n_threads)

        def join(path: Path = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                init_dataset_dir(path, dict(meta))
            except BaseException as e:  # noqa: BLE001 - collected and asserted below
                errors.append(e)

        threads = [threading.Thread(target=join) for _ in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    # a directory holding something else is still refused
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a gym_aquacollect dataset"):
        init_dataset_dir(other, dict(meta))
