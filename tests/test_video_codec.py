"""VideoCodec: image observation columns stored as video inside the shards (single and vector envs)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest

pytest.importorskip("av")

from gym_aquacollect import CollectingVectorWrapper, CollectingWrapper, VideoCodec, load_dataset  # noqa: E402
from gym_aquacollect.storage import video as video_mod  # noqa: E402
from gym_aquacollect.storage.codecs import LazyFrames  # noqa: E402
from gym_aquacollect.storage.video import VideoError  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_lerobot import CameraArmEnv  # noqa: E402


def expected_frames(n, **kw):
    """The camera frames CameraArmEnv shows at steps 0..n-1 (they depend on the step only)."""
    env = CameraArmEnv(**kw)
    env.reset(seed=0)
    out = []
    for k in range(n):
        env._k = k
        out.append(env._obs()["camera"])
    return np.stack(out)


def run(env, episodes, seed=0):
    rng = np.random.default_rng(seed)
    with env:
        for e in range(episodes):
            env.reset(seed=seed + e)
            done = False
            while not done:
                *_, te, tr, _ = env.step(rng.uniform(-1, 1, 7).astype(np.float32))
                done = te or tr


def test_lossless_round_trip_lazy_and_settings_stored(tmp_path):
    path = tmp_path / "ds"
    run(CollectingWrapper(CameraArmEnv(horizon=30), path, codecs={"camera": VideoCodec.lossless()}), 3)
    ds = load_dataset(path)
    meta = json.loads((path / "aquacollect.json").read_text())
    assert meta["codecs"]["observations/camera"]["vcodec"] == "ffv1"
    assert len(ds) == 3
    for ep in ds:
        cam = ep.observations["camera"]
        assert isinstance(cam, LazyFrames) and cam.shape == (len(ep) + 1, 64, 96, 3) and cam.dtype == np.uint8
        np.testing.assert_array_equal(np.asarray(cam), expected_frames(len(ep) + 1))
        np.testing.assert_array_equal(cam[5], expected_frames(6)[5])
        np.testing.assert_array_equal(cam[-1], expected_frames(len(ep) + 1)[-1])
        np.testing.assert_array_equal(cam[3:7], expected_frames(7)[3:7])
        assert ep.observations["joints"].shape == (len(ep) + 1, 7)
    # the shard holds the column as encoded streams, not as an HDF5 frame dataset; one stream per episode
    shard = next((path / "shards").glob("*.h5")) if (path / "shards").exists() else next(path.rglob("*.h5"))
    with h5py.File(shard) as f:
        assert "observations/camera" not in f["obs"]
        g = f["codec/obs/observations/camera"]
        assert len(g["streams"]) == 3 and g["rows"].shape == (sum(len(e) + 1 for e in ds), 2)
        assert json.loads(g.attrs["codec"])["vcodec"] == "ffv1"


def test_lossy_av1_default_and_random_access_decodes_one_gop(tmp_path):
    path = tmp_path / "ds"
    run(CollectingWrapper(CameraArmEnv(horizon=40), path, codecs={"camera": VideoCodec()}), 1)
    ep = load_dataset(path)[0]
    want = expected_frames(len(ep) + 1)
    cam = ep.observations["camera"]
    for t in range(len(want)):  # any frame: at most one GOP (2 frames) decoded, not the episode
        video_mod.DECODE_STATS.update(frames=0, calls=0)
        frame = cam[t]
        assert video_mod.DECODE_STATS["frames"] <= 2, (t, video_mod.DECODE_STATS)
        assert np.abs(frame.astype(int) - want[t]).mean() < 2.5
    video_mod.DECODE_STATS.update(frames=0, calls=0)
    allf = np.asarray(cam)
    assert video_mod.DECODE_STATS["frames"] == len(want)
    err = np.abs(allf.astype(int) - want.astype(int))
    assert err.mean() < 2.0 and err.max() <= 16


def test_episode_spanning_shards_and_crash_keeps_committed_shards(tmp_path):
    path = tmp_path / "ds"
    script = textwrap.dedent(f"""
        import os, sys, numpy as np
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_lerobot import CameraArmEnv
        from gym_aquacollect import CollectingWrapper, VideoCodec
        env = CollectingWrapper(CameraArmEnv(horizon=25), {str(path)!r}, codecs={{"camera": VideoCodec.lossless()}})
        rng = np.random.default_rng(0)
        for e in range(3):
            env.reset(seed=e)
            done, t = False, 0
            while not done:
                *_, te, tr, _ = env.step(rng.uniform(-1, 1, 7).astype(np.float32))
                done, t = te or tr, t + 1
                if t % 7 == 0:
                    env.flush()  # commit a shard mid-episode: the episode continues in the next one
        env.flush()
        env.reset(seed=9)
        for _ in range(5):
            env.step(np.zeros(7, np.float32))
        os._exit(1)  # a crash: no close(), no atexit
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert r.returncode == 1, r.stderr[-3000:]
    ds = load_dataset(path)
    assert len(ds) == 3  # the three finished episodes; the open one was not committed as finished
    for ep in ds:
        cam = ep.observations["camera"]
        assert len(cam.parts) > 1  # the episode spans several shards (a stream in each)
        np.testing.assert_array_equal(np.asarray(cam), expected_frames(len(ep) + 1))
        np.testing.assert_array_equal(cam[len(ep)], expected_frames(len(ep) + 1)[-1])


def test_vector_env_one_stream_per_sub_env_episode(tmp_path):
    path = tmp_path / "vec"
    venv = gym.vector.SyncVectorEnv([lambda: CameraArmEnv(horizon=8) for _ in range(3)])
    env = CollectingVectorWrapper(venv, path, codecs={"camera": VideoCodec.lossless()})
    with env:
        env.reset(seed=0)
        for _ in range(30):
            env.step(np.zeros((3, 7), np.float32))
    ds = load_dataset(path)
    assert len(ds) >= 6 and {ep.metadata["env_index"] for ep in ds} == {0, 1, 2}
    for ep in ds:
        np.testing.assert_array_equal(np.asarray(ep.observations["camera"]), expected_frames(len(ep) + 1))
    n_streams = 0
    for shard in path.rglob("*.h5"):
        with h5py.File(shard) as f:
            if "codec" in f:
                n_streams += len(f["codec/obs/observations/camera/streams"])
    segments = sum(len(ep._ref.segments) for ep in ds)
    assert n_streams >= segments  # every sub-env episode segment is its own stream


def test_codec_errors_name_the_column(tmp_path):
    with pytest.raises(KeyError, match="'cam'.*does not exist"):
        CollectingWrapper(CameraArmEnv(), tmp_path / "a", codecs={"cam": VideoCodec()})
    with pytest.raises(VideoError, match="joints.*uint8"):
        CollectingWrapper(CameraArmEnv(), tmp_path / "b", codecs={"joints": VideoCodec()})
    with pytest.raises(VideoError, match="camera.*odd"):
        CollectingWrapper(CameraArmEnv(size=(33, 64)), tmp_path / "c", codecs={"camera": VideoCodec()})
    # lossless FFV1 takes any size, RGBA and grey included
    for ch, size in ((4, (33, 40)), (1, (17, 20))):
        p = tmp_path / f"ok{ch}"
        run(CollectingWrapper(CameraArmEnv(horizon=5, channels=ch, size=size), p,
                              codecs={"camera": VideoCodec.lossless()}), 1)
        ep = load_dataset(p)[0]
        np.testing.assert_array_equal(np.asarray(ep.observations["camera"]),
                                      expected_frames(len(ep) + 1, channels=ch, size=size))


def test_isaaclab_stand_in_camera_as_video(tmp_path):
    torch = pytest.importorskip("torch")
    from gym_aquacollect.testing.fake_isaaclab import FakeEnvCfg, FakeSceneCfg

    cfg = FakeEnvCfg(scene=FakeSceneCfg(num_envs=4), image_obs=(32, 48), compute_final_obs=True,
                     terminate_schedule=[[3], [4, 6], [5], [0]])
    inner = gym.make("Isaac-Fake-v0", cfg=cfg)
    env = CollectingVectorWrapper(inner, tmp_path / "d", chunk_steps=5, codecs={"camera": VideoCodec.lossless()})
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        env.step(torch.rand((4, cfg.action_dim), generator=gen) * 2 - 1)
    env.close()
    ds = load_dataset(tmp_path / "d")
    assert len(ds) >= 10
    for ep in ds:
        cam = ep.observations["camera"]
        assert isinstance(cam, LazyFrames)
        ids = ep.observations["policy"][:, :3].astype(np.int64)  # env index, episode id, step
        want = (ids[:, 2] * 7 + ids[:, 0] * 31 + ids[:, 1] * 13) % 256
        got = np.asarray(cam)
        # every frame is flat: its colour identifies the sub-env, episode and step it came from
        np.testing.assert_array_equal(got[:-1, 0, 0, 0], want[:-1])
        assert (got == got[:, :1, :1, :1]).all()


def test_coded_dataset_validates_and_exports_to_lerobot(tmp_path):
    path = tmp_path / "ds"
    env = CollectingWrapper(CameraArmEnv(horizon=10), path, codecs={"camera": VideoCodec.lossless()},
                            metadata={"task": "reach"})
    run(env, 2)
    r = subprocess.run([sys.executable, "-m", "gym_aquacollect.cli", "validate", str(path)], capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    ds = load_dataset(path)
    back = load_dataset(ds.to_lerobot(tmp_path / "lr", progress=False))
    for a, b in zip(ds, back):
        err = np.abs(np.asarray(b.observations["camera"])[:-1].astype(int) - np.asarray(a.observations["camera"])[:-1])
        assert err.mean() < 2.0


def test_torch_views_decode_coded_columns(tmp_path):
    pytest.importorskip("torch")
    from gym_aquacollect.torch_data import TorchDataset

    path = tmp_path / "ds"
    run(CollectingWrapper(CameraArmEnv(horizon=10), path, codecs={"camera": VideoCodec.lossless()}), 2)
    ds = load_dataset(path)
    want = expected_frames(len(ds[0]) + 1)
    item = TorchDataset(ds)[3]  # transition 3 of episode 0
    np.testing.assert_array_equal(item["obs"]["camera"].numpy(), want[3])
    np.testing.assert_array_equal(item["next_obs"]["camera"].numpy(), want[4])
    ep = TorchDataset(ds, unit="episodes")[0]
    np.testing.assert_array_equal(ep["observations"]["camera"].numpy(), want)
