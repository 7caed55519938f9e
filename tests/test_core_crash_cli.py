"""A recording process SIGKILLed mid-collection, and the command line end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from gym_aquacollect import load_dataset

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

CHILD = textwrap.dedent(
    """
    import sys, gymnasium as gym
    from gym_aquacollect import CollectingWrapper
    env = CollectingWrapper(gym.make("CartPole-v1"), sys.argv[1],
                            flush_policy={"every_steps": 2000, "every_seconds": 0.05})
    obs, _ = env.reset(seed=0)
    episodes = 0
    while True:
        obs, r, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            episodes += 1
            obs, _ = env.reset()
            if episodes % 25 == 0:
                env.flush()
                print(episodes, flush=True)
    """
)


def test_sigkill_mid_collection_keeps_every_flushed_episode(tmp_path):
    path = tmp_path / "ds"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, env=ENV, text=True)
    flushed = 0
    try:
        deadline = time.monotonic() + 60
        while flushed < 200 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            flushed = int(line)
        time.sleep(0.03)  # let it run on past the flush, mid-episode and mid-shard
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert flushed >= 200, "child did not report progress"
    ds = load_dataset(path)
    assert len(ds) >= flushed
    for ep in ds.iterate_episodes(range(0, len(ds), 7)):
        assert ep.observations.shape == (len(ep) + 1, 4)
        assert ep.terminations[-1] or ep.truncations[-1]
        assert not ep.terminations[:-1].any()
    # the episode that was running at the kill, if any part of it was flushed, is recoverable
    partial = load_dataset(path, include_partial=True)
    assert len(partial) >= len(ds)
    for ep in list(partial)[len(ds):]:
        assert ep.metadata["interrupted"] == "crash" and ep.truncations[-1]


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "gym_aquacollect.cli", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=120)


def test_cli_record_and_info(tmp_path):
    out = _cli("record", "CartPole-v1", "--steps", "3000", "--out", "data/cp", "--quiet", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert stats["total_steps"] == 3000 and stats["total_episodes"] > 10
    ds = load_dataset(tmp_path / "data" / "cp")
    assert ds.total_steps == 3000 and ds.metadata["env_description"]["id"] == "CartPole-v1"
    info = _cli("info", "data/cp", cwd=tmp_path)
    assert info.returncode == 0 and "total_episodes" in info.stdout and "Discrete(2)" in info.stdout
    again = _cli("record", "--steps", "100", "--out", "data/cp", "--quiet", cwd=tmp_path)
    assert again.returncode != 0 and "--append" in again.stderr
    assert load_dataset(tmp_path / "data" / "cp").total_steps == 3000  # untouched
    again = _cli("record", "--steps", "100", "--out", "data/cp", "--quiet", "--append", cwd=tmp_path)
    assert again.returncode == 0 and load_dataset(tmp_path / "data" / "cp").total_steps == 3100
    again = _cli("record", "--steps", "100", "--out", "data/cp", "--quiet", "--overwrite", cwd=tmp_path)
    assert again.returncode == 0 and load_dataset(tmp_path / "data" / "cp").total_steps == 100


def test_cli_record_with_user_policy(tmp_path):
    (tmp_path / "mypolicy.py").write_text("def always_left(obs):\n    return 0\n")
    out = _cli("record", "CartPole-v1", "--steps", "500", "--out", "d", "--policy", "mypolicy:always_left",
               "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    ds = load_dataset(tmp_path / "d")
    assert all(np.all(ep.actions == 0) for ep in ds)


def test_cli_errors_are_clear(tmp_path):
    out = _cli("info", "nowhere", cwd=tmp_path)
    assert out.returncode == 2 and "nowhere" in out.stderr and "Traceback" not in out.stderr
    out = _cli("record", "--policy", "nomodule_xyz:f", "--steps", "10", "--out", "d", cwd=tmp_path)
    assert out.returncode != 0 and "cannot import module 'nomodule_xyz'" in out.stderr
    assert "record" in _cli("--help", cwd=tmp_path).stdout
