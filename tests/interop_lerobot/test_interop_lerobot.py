"""The real lerobot 0.4.4 reads our LeRobot export, and we read a dataset lerobot itself wrote.

lerobot pins its own torch, so it lives in its own virtual environment (about 8 GB): ``make lerobot-interop``
creates ``.venv-lerobot`` and runs this file with ``LEROBOT_PYTHON`` pointing at it. Without it these tests skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("pyarrow")

LEROBOT_PYTHON = os.environ.get("LEROBOT_PYTHON")
SIDE = Path(__file__).with_name("lerobot_side.py")

pytestmark = pytest.mark.skipif(
    not LEROBOT_PYTHON or not Path(LEROBOT_PYTHON).exists(),
    reason="needs lerobot 0.4.4 in its own venv: run `make lerobot-interop` (sets LEROBOT_PYTHON)")


def _run(*args, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"
    r = subprocess.run([LEROBOT_PYTHON, str(SIDE), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]


@pytest.mark.parametrize("small_files", [False, True], ids=["one-file", "rolled-over-files"])
def test_lerobot_reads_our_export(tmp_path, monkeypatch, small_files):
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from test_lerobot import record

    if small_files:  # data and video files roll over (file-001, ...) as at LeRobot's 100/200 MB limits
        import gym_aquacollect.formats.lerobot as lr

        monkeypatch.setattr(lr, "DATA_FILE_MB", 1e-6)
        monkeypatch.setattr(lr, "VIDEO_FILE_MB", 1e-6)

    ds = record(tmp_path / "src", n_episodes=3)
    out = ds.to_lerobot(tmp_path / "lr", progress=False)
    rows = {"joints": [], "action": [], "camera": [], "reward": [], "done": [], "episode_index": [], "frame_index": []}
    for i, ep in enumerate(ds):
        T = len(ep)
        rows["joints"].append(ep.observations["joints"][:T])
        rows["camera"].append(ep.observations["camera"][:T])
        rows["action"].append(ep.actions)
        rows["reward"].append(ep.rewards)
        rows["done"].append(ep.terminations)
        rows["episode_index"].append(np.full(T, i))
        rows["frame_index"].append(np.arange(T))
    np.savez(tmp_path / "expected.npz", **{k: np.concatenate(v) for k, v in rows.items()})
    _run("read", out, tmp_path / "expected.npz", tmp_path / "report.json")
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["num_episodes"] == len(ds) and rep["num_frames"] == ds.total_steps and rep["fps"] == 15
    assert rep["episode_lengths"] == [len(ep) for ep in ds] and rep["episodes"] == list(range(len(ds)))
    assert rep["camera_keys"] == ["observation.images.camera"]
    assert rep["state_max_abs_diff"] == 0.0 and rep["action_max_abs_diff"] == 0.0
    assert rep["reward_max_abs_diff"] < 1e-5 and rep["done_mismatch"] == 0
    assert set(rep["tasks"]) == {"reach the target"}
    # smooth frames at the default settings: within 2 grey levels on average
    assert np.mean(rep["frame_mean_err"]) < 2.0 and max(rep["frame_mean_err"]) < 2.5, rep["frame_mean_err"]


def test_we_read_a_dataset_lerobot_wrote(tmp_path):
    from gym_aquacollect import load_dataset

    out = tmp_path / "by_lerobot"
    _run("write", out, tmp_path / "frames.npz")
    exp = np.load(tmp_path / "frames.npz")
    ds = load_dataset(out)
    assert ds.metadata["source_format"] == "lerobot" and len(ds) == 2 and [len(e) for e in ds] == [7, 5]
    for i, ep in enumerate(ds):
        sel = exp["episode"] == i
        np.testing.assert_array_equal(ep.observations["state"][:-1], exp["state"][sel])
        np.testing.assert_array_equal(ep.actions, exp["action"][sel])
        err = np.abs(ep.observations["top"][:-1].astype(int) - exp["image"][sel].astype(int))
        assert err.mean() < 2.5, err.mean()
        assert ep.metadata["task"] == f"task {i}" and ep.truncations[-1]
