"""LeRobotDataset v3.0 export and import.

The export is checked here against the v3.0 layout by reading it independently with pyarrow and PyAV (the
real ``lerobot`` package needs its own torch; ``make lerobot-interop`` runs tests/interop_lerobot/ with it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

av = pytest.importorskip("av")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from gym_aquacollect import CollectingWrapper, load_dataset  # noqa: E402
from gym_aquacollect.formats import ExportError, backends  # noqa: E402
from gym_aquacollect.formats.lerobot import write_lerobot  # noqa: E402

H, W = 64, 96


class CameraArmEnv(gym.Env):
    """A reaching arm seen by a camera: Dict(camera uint8 HxWx3 smooth frames, joints Box(7)); Box(7) action."""

    metadata = {"render_modes": [], "render_fps": 15}

    def __init__(self, horizon: int = 12, channels: int = 3, size=(H, W)):
        self.observation_space = spaces.Dict({
            "camera": spaces.Box(0, 255, (*size, channels), np.uint8),
            "joints": spaces.Box(-np.inf, np.inf, (7,), np.float32),
        })
        self.action_space = spaces.Box(-1, 1, (7,), np.float32)
        self.horizon, self.size, self.channels = horizon, size, channels

    def _obs(self):
        y, x = np.mgrid[0:self.size[0], 0:self.size[1]]
        k = self._k
        r = 128 + 60 * np.sin((x + 2 * k) / 24.0)  # smooth, camera-like colours
        g = 128 + 60 * np.cos((y - k) / 20.0)
        b = np.full_like(r, 90 + 4 * (k % 20))
        img = np.stack([r, g, b][: self.channels] if self.channels < 3 else [r, g, b, np.full_like(r, 200)][: self.channels],
                       axis=-1)
        return {"camera": img.round().astype(np.uint8), "joints": self._q.copy()}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._k = 0
        self._q = self.np_random.uniform(-1, 1, 7).astype(np.float32)
        self._h = self.horizon + int(self.np_random.integers(0, 5))
        return self._obs(), {}

    def step(self, action):
        self._k += 1
        self._q = (self._q + 0.1 * np.asarray(action, np.float32)).astype(np.float32)
        term = self._k >= self._h and self._k % 2 == 0
        trunc = self._k >= self._h and not term
        return self._obs(), float(-np.abs(self._q).sum()), term, trunc, {}


def record(path, n_episodes=3, task="reach the target", seed=0, **env_kw):
    env = CollectingWrapper(CameraArmEnv(**env_kw), path, metadata={"task": task} if task else None)
    rng = np.random.default_rng(seed)
    with env:
        for e in range(n_episodes):
            env.reset(seed=seed + e)
            done = False
            while not done:
                _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 7).astype(np.float32))
                done = term or trunc
    return load_dataset(path)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("lerobot")
    ds = record(root / "src")
    out = ds.to_lerobot(root / "lr", progress=False)
    return ds, out


def _decode_all(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [(float(f.pts * s.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(s)]
        return frames, s.codec_context.name, s.pix_fmt


def test_layout_read_independently_with_pyarrow_and_pyav(recorded):
    ds, out = recorded
    info = json.loads((out / "meta" / "info.json").read_text())
    T = [len(ep) for ep in ds]
    assert info["codebase_version"] == "v3.0"
    assert info["fps"] == 15 and info["total_episodes"] == len(ds) == 3 and info["total_frames"] == sum(T)
    assert info["total_tasks"] == 1 and info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    feats = info["features"]
    cam = feats["observation.images.camera"]
    assert cam["dtype"] == "video" and cam["shape"] == [H, W, 3] and cam["names"] == ["height", "width", "channels"]
    assert cam["info"]["video.codec"] == "av1" and cam["info"]["video.pix_fmt"] == "yuv420p"
    assert feats["observation.joints"]["dtype"] == "float32" and feats["observation.joints"]["shape"] == [7]
    assert feats["action"]["shape"] == [7]
    for k in ("timestamp", "frame_index", "episode_index", "index", "task_index", "next.reward", "next.done",
              "next.truncated"):
        assert feats[k]["shape"] == [1], k
    assert info["aquacollect"]["encoder"]["encoder_options"] == {"g": "2", "crf": "30", "preset": "12"}

    # data parquet: one row per frame; vectors are fixed_size_list<float>[n]
    data = pq.read_table(out / "data" / "chunk-000" / "file-000.parquet")
    assert data.schema.field("observation.joints").type == pa.list_(pa.float32(), 7)
    assert data.schema.field("next.reward").type == pa.float32()
    assert "observation.images.camera" not in data.column_names
    assert data.column("index").to_pylist() == list(range(sum(T)))
    joints = np.asarray(data.column("observation.joints").to_pylist(), np.float32)
    actions = np.asarray(data.column("action").to_pylist(), np.float32)
    eps = data.column("episode_index").to_numpy()
    fidx = data.column("frame_index").to_numpy()
    ts = data.column("timestamp").to_numpy()
    for i, ep in enumerate(ds):
        sel = eps == i
        np.testing.assert_array_equal(joints[sel], ep.observations["joints"][:-1])
        np.testing.assert_array_equal(actions[sel], ep.actions)
        np.testing.assert_array_equal(fidx[sel], np.arange(len(ep)))
        np.testing.assert_allclose(ts[sel], np.arange(len(ep)) / 15, atol=1e-6)
        np.testing.assert_array_equal(data.column("next.done").to_numpy(zero_copy_only=False)[sel], ep.terminations)
        np.testing.assert_array_equal(data.column("next.truncated").to_numpy(zero_copy_only=False)[sel],
                                      ep.truncations)
        np.testing.assert_allclose(data.column("next.reward").to_numpy()[sel], ep.rewards, rtol=1e-6)

    # tasks: pandas-indexed by the task text
    pd = pytest.importorskip("pandas")
    tasks = pd.read_parquet(out / "meta" / "tasks.parquet")
    assert tasks.index.name == "task" and tasks.loc["reach the target", "task_index"] == 0

    # episodes: frame ranges and per-episode video timestamps inside the one mp4
    epi = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    frames, codec, pix = _decode_all(out / "videos" / "observation.images.camera" / "chunk-000" / "file-000.mp4")
    assert codec == "libdav1d" and pix == "yuv420p" and len(frames) == sum(T)
    start = 0
    for i, (row, ep) in enumerate(zip(epi, ds)):
        assert row["episode_index"] == i and row["length"] == len(ep) and row["tasks"] == ["reach the target"]
        assert (row["dataset_from_index"], row["dataset_to_index"]) == (start, start + len(ep))
        f0 = row["videos/observation.images.camera/from_timestamp"]
        assert f0 == pytest.approx(start / 15) and row["videos/observation.images.camera/to_timestamp"] == \
            pytest.approx((start + len(ep)) / 15)
        errs = []
        for k in range(len(ep)):
            t, img = frames[start + k]
            assert t == pytest.approx(f0 + k / 15, abs=1e-4)  # what LeRobot's 1e-4 s tolerance needs
            errs.append(np.abs(img.astype(int) - ep.observations["camera"][k].astype(int)).mean())
        # smooth frames at the default AV1 settings: within 2 grey levels on average (keyframes ~1.3, the
        # yuv420p conversion's floor; predicted frames a little more)
        assert np.mean(errs) < 2.0 and max(errs) < 2.5, errs
        start += len(ep)

    # stats for every feature, LeRobot's keys; images per channel in [0, 1]
    stats = json.loads((out / "meta" / "stats.json").read_text())
    want = {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    for key in feats:
        assert set(stats[key]) == want, key
    allj = np.concatenate([ep.observations["joints"][:-1] for ep in ds])
    np.testing.assert_allclose(stats["observation.joints"]["mean"], allj.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["observation.joints"]["max"], allj.max(0), rtol=1e-6)
    assert stats["observation.joints"]["count"] == [sum(T)]
    assert np.asarray(stats["observation.images.camera"]["mean"]).shape == (3, 1, 1)
    assert 0 <= np.min(stats["observation.images.camera"]["min"]) <= np.max(stats["observation.images.camera"]["max"]) <= 1


def test_round_trip_through_load_dataset(recorded):
    ds, out = recorded
    back = load_dataset(out)
    assert back.metadata["source_format"] == "lerobot" and len(back) == len(ds)
    assert back.observation_space == ds.observation_space and back.action_space == ds.action_space
    for a, b in zip(ds, back):
        assert len(a) == len(b)
        np.testing.assert_array_equal(b.observations["joints"], a.observations["joints"])  # final obs kept
        np.testing.assert_array_equal(b.actions, a.actions)
        np.testing.assert_allclose(b.rewards, a.rewards, rtol=1e-6)
        np.testing.assert_array_equal(b.terminations, a.terminations)
        np.testing.assert_array_equal(b.truncations, a.truncations)
        assert b.metadata["seed"] == a.metadata["seed"] and b.metadata["task"] == "reach the target"
        cam_a, cam_b = a.observations["camera"], b.observations["camera"]
        assert cam_b.shape == cam_a.shape and cam_b.dtype == np.uint8
        assert np.abs(cam_b[:-1].astype(int) - cam_a[:-1].astype(int)).mean() < 2.0
        assert np.abs(cam_b[:-1].astype(int) - cam_a[:-1].astype(int)).max() <= 16
        np.testing.assert_array_equal(cam_b[-1], cam_b[-2])  # LeRobot keeps no final frame
        assert b.metadata["final_frame"] == "repeated"
    assert back.statistics()["total_steps"] == ds.total_steps


def test_cli_export_info_and_reexport(recorded, tmp_path):
    ds, _ = recorded
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "gym_aquacollect.cli", "export", str(ds.path), "--format", "lerobot", "--out",
           str(out), "--vcodec", "h264", "--crf", "18", "--task", "other task"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["features"]["observation.images.camera"]["info"]["video.codec"] == "h264"
    assert info["aquacollect"]["encoder"]["encoder_options"]["crf"] == "18"
    r = subprocess.run([sys.executable, "-m", "gym_aquacollect.cli", "info", str(out)], capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    assert str(ds.total_steps) in r.stdout
    r = subprocess.run([sys.executable, "-m", "gym_aquacollect.cli", "replay", str(out), "--playback"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    assert [f"episode {i}: {len(ep)} steps" in r.stdout for i, ep in enumerate(ds)] == [True] * len(ds)
    # a LeRobot dataset re-exports (fps and tasks come from it)
    again = load_dataset(out).to_lerobot(tmp_path / "again", progress=False)
    back = load_dataset(again)
    assert [len(e) for e in back] == [len(e) for e in ds] and back[0].metadata["task"] == "other task"
    assert json.loads((again / "meta" / "info.json").read_text())["fps"] == 15


def test_flat_box_obs_and_discrete_actions(tmp_path):
    path = tmp_path / "cp"
    with CollectingWrapper(gym.make("CartPole-v1"), path) as env:
        env.reset(seed=3)
        for _ in range(60):
            *_, te, tr, _ = env.step(env.action_space.sample())
            if te or tr:
                env.reset()
    ds = load_dataset(path)
    out = ds.to_lerobot(tmp_path / "lr", task="balance", progress=False)  # fps: CartPole's render_fps
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["fps"] == 50 and info["video_path"] is None
    assert info["features"]["observation.state"]["shape"] == [4]
    assert info["features"]["action"] == {"dtype": "int64", "shape": [1], "names": None}
    data = pq.read_table(out / "data" / "chunk-000" / "file-000.parquet")
    assert data.schema.field("action").type == pa.int64()
    back = load_dataset(out)
    for a, b in zip(ds, back):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
        assert b.actions.dtype == a.actions.dtype


def test_errors_name_the_problem_and_write_nothing(tmp_path):
    ds = record(tmp_path / "src", n_episodes=1, task=None)
    with pytest.raises(ExportError, match="task"):
        ds.to_lerobot(tmp_path / "a", progress=False)
    assert not (tmp_path / "a").exists()
    # no fps anywhere
    from gym_aquacollect.formats._common import MemoryDataset, MemoryEpisode

    ep = MemoryEpisode(0, np.zeros((3, 2), np.float32), np.zeros((2, 1), np.float32), np.ones(2),
                       np.array([False, True]), np.zeros(2, bool))
    mem = MemoryDataset([ep], spaces.Box(-1, 1, (2,)), spaces.Box(-1, 1, (1,)))
    with pytest.raises(ExportError, match="render_fps.*fps=N"):
        write_lerobot(mem, tmp_path / "b", task="x", progress=False)
    with pytest.raises(ExportError, match="integer fps"):
        write_lerobot(mem, tmp_path / "b", task="x", fps=12.5, progress=False)
    # odd frame sizes (yuv420p) and SVT-AV1's minimum size are refused before anything is encoded
    odd = record(tmp_path / "odd", n_episodes=1, size=(33, 64))
    with pytest.raises(ExportError, match=r"observation/camera.*33x64.*odd"):
        odd.to_lerobot(tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()
    # an existing output is kept
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "keep").write_text("x")
    with pytest.raises(FileExistsError):
        write_lerobot(mem, tmp_path / "e", task="x", fps=10, progress=False)
    assert (tmp_path / "e" / "keep").read_text() == "x"
    # Text leaves have no LeRobot type
    txt = MemoryDataset([ep], spaces.Dict({"a": spaces.Box(-1, 1, (2,)), "s": spaces.Text(4)}), spaces.Box(-1, 1, (1,)))
    with pytest.raises(ExportError, match="obs/s: Text"):
        write_lerobot(txt, tmp_path / "f", task="x", fps=10, progress=False)


def test_grey_frames_come_back_with_one_channel(tmp_path):
    ds = record(tmp_path / "g", n_episodes=2, channels=1)
    out = ds.to_lerobot(tmp_path / "lr", progress=False)
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["features"]["observation.images.camera"]["shape"] == [H, W, 3]
    back = load_dataset(out)
    for a, b in zip(ds, back):
        assert b.observations["camera"].shape == a.observations["camera"].shape
        assert np.abs(b.observations["camera"][:-1].astype(int) - a.observations["camera"][:-1]).mean() < 2.0


def test_registered_backend():
    b = backends()["lerobot"]
    assert callable(b.export) and callable(b.load)


def test_files_roll_over_at_the_size_limits(tmp_path, monkeypatch):
    import gym_aquacollect.formats.lerobot as lr

    monkeypatch.setattr(lr, "DATA_FILE_MB", 1e-6)
    monkeypatch.setattr(lr, "VIDEO_FILE_MB", 1e-6)
    ds = record(tmp_path / "src", n_episodes=3)
    out = ds.to_lerobot(tmp_path / "lr", progress=False)
    assert sorted(p.name for p in (out / "data" / "chunk-000").iterdir()) == [
        "file-000.parquet", "file-001.parquet", "file-002.parquet"]
    rows = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    assert [r["data/file_index"] for r in rows] == [0, 1, 2]
    vids = sorted((out / "videos" / "observation.images.camera" / "chunk-000").iterdir())
    # a new MP4 once the open one passed the limit: the limit is checked against the file's size on disk
    # between episodes, and SVT-AV1's worker threads may not have written the first episode's packets yet
    # on a loaded machine, so one file is possible; the offsets below must be consistent either way
    assert len(vids) >= 1
    key = "videos/observation.images.camera/"
    assert rows[0][key + "from_timestamp"] == 0.0
    for prev, r in zip(rows, rows[1:]):  # a fresh file starts at t=0; otherwise right after the previous episode
        want = 0.0 if r[key + "file_index"] != prev[key + "file_index"] else prev[key + "to_timestamp"]
        assert r[key + "from_timestamp"] == pytest.approx(want)
    assert len({r[key + "file_index"] for r in rows}) == len(vids)
    back = load_dataset(out)
    for a, b in zip(ds, back):
        np.testing.assert_array_equal(b.observations["joints"], a.observations["joints"])
        assert np.abs(np.asarray(b.observations["camera"])[:-1].astype(int) - a.observations["camera"][:-1]).mean() < 2


def test_small_uint8_grids_stay_exact_vectors(tmp_path):
    """MiniGrid-style 7x7x3 uint8 encodings are data, not pictures: exact int64 vectors, no video."""
    ds = record(tmp_path / "src", n_episodes=2, size=(7, 7))
    out = ds.to_lerobot(tmp_path / "lr", progress=False)
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["features"]["observation.camera"] == {
        "dtype": "int64", "shape": [147], "names": [f"observation.camera_{i}" for i in range(147)]}
    assert info["video_path"] is None and not (out / "videos").exists()
    for a, b in zip(ds, load_dataset(out)):
        np.testing.assert_array_equal(b.observations["camera"], a.observations["camera"])
        assert b.observations["camera"].dtype == np.uint8


def test_import_never_reads_outside_the_dataset_directory(recorded, tmp_path):
    _, out = recorded
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    secret = tmp_path / "secret.parquet"
    shutil.copy(out / "data" / "chunk-000" / "file-000.parquet", secret)
    info = json.loads((bad / "meta" / "info.json").read_text())
    info["data_path"] = "../secret.parquet"
    (bad / "meta" / "info.json").write_text(json.dumps(info))
    ds = load_dataset(bad)  # metadata only so far
    with pytest.raises(ExportError, match="outside the dataset directory"):
        ds[0]
    info["data_path"] = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    info["video_path"] = "/" + str(tmp_path).strip("/") + "/{video_key}.mp4"
    (bad / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(ExportError, match="outside the dataset directory"):
        _ = load_dataset(bad)[0].observations
