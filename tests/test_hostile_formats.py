"""Hostile and odd inputs found by the adversarial review: each test failed before its fix and passes now.

Contents:
    * Empty info arrays: an info value of shape ``(0, 3)`` (single env) or ``(n, 0, 3)`` (vector env) is
      recorded on every step and reads back with its shape.
    * Coded (video) columns from a stranger: a blob replaced by an ffconcat playlist that names a video
      outside the dataset raises ``DatasetFormatError`` (never the outside file's frames); a ``rows`` table
      declaring ``(2**40, 2)`` is refused with ``DatasetFormatError`` (no ``MemoryError``).
    * Minari directories whose ``data/main_data.hdf5`` is a FIFO or a symlink to another dataset.
    * LeRobot v3.0 directories with meta files symlinked outside, FIFO data/video/tasks files, a huge
      ``task_index``, a huge feature shape, a hostile ``data_path`` template.
    * The HTML report: NaN returns embed strict JSON; a ``Discrete(10**9)`` action space (a crafted
      ``aquacollect.json``) writes promptly.

Everything that could hang or allocate a lot runs in a child process (``cwd=tmp_path``, the package from
``PYTHONPATH``) with an address-space limit and a subprocess timeout, so a regression fails the test
instead of hanging the suite or exhausting the machine.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
from _peers import require
from gymnasium import spaces

from gym_aquacollect import CollectingVectorWrapper, CollectingWrapper, DatasetFormatError, load_dataset

#: Address-space limit of the child processes (a regression that allocates gigabytes fails, not the machine).
CHILD_AS_BYTES = 4 << 30
#: Seconds a child may take (imports included) before the test calls it a hang.
CHILD_TIMEOUT = 45

# The child: ``python -c CHILD <mode> <path> [out]``. mode "load": load_dataset(path), then read every field
# of every episode; mode "report": write_report(load_dataset(path), out). Prints one JSON line.
CHILD = r"""
import json, resource, sys
lim = int(sys.argv[4])
resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
mode, path = sys.argv[1], sys.argv[2]
res = {}
try:
    import numpy as np
    from gym_aquacollect import DatasetFormatError, load_dataset
    from gym_aquacollect.formats._common import ExportError
    try:
        ds = load_dataset(path)
        if mode == "load":
            eps = []
            for ep in ds:
                obs = ep.observations
                obs = {k: np.asarray(v).shape for k, v in obs.items()} if isinstance(obs, dict) else \
                    np.asarray(obs)[:2].tolist()
                eps.append({"len": len(ep), "rewards": np.asarray(ep.rewards).tolist(), "obs": obs})
            tasks = ds.metadata.get("tasks")
            res = {"result": "loaded", "episodes": eps[:3], "n_episodes": len(eps),
                   "tasks": None if tasks is None else [len(tasks), list(tasks[:3]), list(tasks[-3:])]}
        else:
            from gym_aquacollect.report import write_report
            write_report(ds, sys.argv[3])
            res = {"result": "written"}
    except BaseException as e:
        res = {"result": "error", "type": type(e).__name__, "dfe": isinstance(e, DatasetFormatError),
               "export": isinstance(e, ExportError), "msg": str(e)[:800]}
except BaseException as e:
    res = {"result": "child-broken", "type": type(e).__name__, "msg": str(e)[:800]}
# VmHWM: this process's own peak (ru_maxrss is inherited across fork+exec from a large pytest parent)
res["peak_rss_mb"] = next(int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print("RESULT " + json.dumps(res, default=str))
"""


def _child(tmp_path: Path, mode: str, path: Path, out: Path | None = None) -> dict:
    """Run :data:`CHILD` with ``cwd=tmp_path``; a timeout is a hang (test failure), not a skip."""
    cwd = tmp_path / "child_cwd"
    cwd.mkdir(exist_ok=True)
    try:
        r = subprocess.run([sys.executable, "-c", CHILD, mode, str(path), str(out or ""), str(CHILD_AS_BYTES)],
                           cwd=cwd, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{mode} of {path} did not return in {CHILD_TIMEOUT} s: it hangs", pytrace=False)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, f"child died (rc {r.returncode}): {(r.stdout + r.stderr)[-2000:]}"
    res = json.loads(line[len("RESULT "):])
    assert res["result"] != "child-broken", res
    return res


def _assert_refused(res: dict, *names: str, export_ok: bool = False) -> None:
    """The child failed with DatasetFormatError (or, where allowed, ExportError) naming one of ``names``."""
    assert res["result"] == "error", f"a hostile dataset was opened: {res}"
    assert res["dfe"] or (export_ok and res["export"]), f"wrong error type {res['type']}: {res['msg']}"
    if names:
        assert any(n in res["msg"] for n in names), f"the error does not name {names}: {res['msg']}"


# -- 1. empty info arrays ---------------------------------------------------------------------------------
class _EmptyInfo(gym.Wrapper):
    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        info["contacts"] = np.zeros((0, 3))  # "no contacts this step"
        return obs, r, term, trunc, info


class _VecEmptyInfo(gym.vector.VectorWrapper):
    def step(self, actions):
        obs, r, term, trunc, info = self.env.step(actions)
        info["contacts"] = np.zeros((self.num_envs, 0, 3))
        info["_contacts"] = np.ones(self.num_envs, bool)
        return obs, r, term, trunc, info


def test_empty_info_array_single_env(tmp_path: Path) -> None:
    path = tmp_path / "ds"
    steps = 0
    with CollectingWrapper(_EmptyInfo(gym.make("CartPole-v1")), path) as env:
        env.reset(seed=0)
        for _ in range(60):
            *_, term, trunc, _ = env.step(0)
            steps += 1
            if term or trunc:
                env.reset()
    ds = load_dataset(path)
    assert ds.total_steps == steps == 60
    assert len(ds) >= 2  # CartPole pushed one way ends its episodes within 60 steps
    for ep in ds:
        # T+1 info rows (the reset's first); the mask says which rows hold the key: every step's
        assert np.asarray(ep.infos["contacts"]).shape == (len(ep) + 1, 0, 3)
        assert np.asarray(ep.infos["_contacts"]).tolist() == [False] + [True] * len(ep)
        assert len(ep.actions) == len(ep) and ep.observations.shape == (len(ep) + 1, 4)


def test_empty_info_array_vector_env(tmp_path: Path) -> None:
    path = tmp_path / "vds"
    with CollectingVectorWrapper(_VecEmptyInfo(gym.make_vec("CartPole-v1", num_envs=2)), path) as env:
        env.reset(seed=0)
        for _ in range(40):
            env.step(np.zeros(2, np.int64))
    ds = load_dataset(path)
    # NEXT_STEP autoreset (the default): a sub-env's step after its episode ended is a reset, no transition
    assert sum(len(ep) for ep in ds) == ds.total_steps
    resets = sum(ep.metadata.get("interrupted") in (None, "", False) for ep in ds)
    assert 80 - resets <= ds.total_steps <= 80 and ds.total_steps > 40
    assert {ep.metadata.get("env_index") for ep in ds} == {0, 1}
    for ep in ds:
        assert np.asarray(ep.infos["contacts"]).shape == (len(ep) + 1, 0, 3)
        # an autoreset episode's first row comes from a step, which has the key too (then no mask is stored)
        assert np.asarray(ep.infos.get("_contacts", np.ones(len(ep) + 1, bool)))[1:].all()


# -- 2./3. coded (video) columns ---------------------------------------------------------------------------
class _Cam(gym.Env):
    observation_space = spaces.Dict({"camera": spaces.Box(0, 255, (16, 16, 3), np.uint8)})
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return {"camera": np.zeros((16, 16, 3), np.uint8)}, {}

    def step(self, action):
        self.t += 1
        return {"camera": np.full((16, 16, 3), 10, np.uint8)}, 1.0, self.t == 3, False, {}


@pytest.fixture(scope="module")
def video_pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require("av", why="PyAV (video codec columns)")
    from gym_aquacollect.storage.codecs import VideoCodec

    path = tmp_path_factory.mktemp("video") / "ds"
    with CollectingWrapper(_Cam(), path, codecs={"camera": VideoCodec.lossless()}) as env:
        env.reset(seed=0)
        for _ in range(3):
            env.step(0)
    # the pristine dataset reads back (the hostile edits below are what the tests are about)
    cam = np.asarray(load_dataset(path)[0].observations["camera"])
    assert cam.shape == (4, 16, 16, 3) and cam[:, 0, 0, 0].tolist() == [0, 10, 10, 10]
    return path


@pytest.fixture
def video_ds(video_pristine: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the pristine video dataset and its one shard."""
    path = tmp_path / "ds"
    shutil.copytree(video_pristine, path)
    (shard,) = sorted((path / "shards").iterdir())
    return path, shard


def _victim_video(directory: Path, value: int, frames: int = 4) -> Path:
    """A private video (all pixels ``value``) outside any dataset."""
    from gym_aquacollect.storage.video import VideoSettings, VideoStreamWriter

    s = VideoSettings(vcodec="ffv1", crf=None, gop=1, preset=None, pix_fmt="auto", extra={})
    p = directory / "victim.mkv"
    with open(p, "wb") as fh:
        w = VideoStreamWriter(fh, s, fps=30, shape=(16, 16, 3))
        w.write(np.full((frames, 16, 16, 3), value, np.uint8))
        w.close()
    return p


FFCONCAT = b"ffconcat version 1.0\nfile victim.mkv\n"


def test_decode_frames_never_follows_an_ffconcat_playlist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    av = require("av", why="PyAV")
    from gym_aquacollect.storage.video import VideoError, decode_frames

    monkeypatch.chdir(tmp_path)  # the playlist names victim.mkv relative to the reader's working directory
    _victim_video(tmp_path, 77, frames=3)
    try:
        frames = decode_frames(io.BytesIO(FFCONCAT), 0, 1)
    except (VideoError, av.error.FFmpegError):  # refused: the bytes are no mp4 (the container is named)
        return
    pytest.fail(f"decode_frames of an ffconcat playlist returned the outside file's frames {frames.shape} "
                f"(pixel {int(frames[0, 0, 0, 0])})")


def test_hostile_codec_blob_ffconcat_playlist_refused(video_ds: tuple[Path, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path, shard = video_ds
    with h5py.File(shard, "r+") as f:
        g = f["codec/obs/observations/camera"]
        blob = np.frombuffer(FFCONCAT, np.uint8)
        del g["blob"]
        g.create_dataset("blob", data=blob)
        g["streams"][...] = np.array([[0, len(blob), 4]] * len(g["streams"]), np.int64)
    outside = tmp_path / "cwd"
    outside.mkdir()
    _victim_video(outside, 201)
    monkeypatch.chdir(outside)
    ds = load_dataset(path)  # opening may succeed: the frames are decoded on demand
    with pytest.raises(DatasetFormatError, match=re.escape(shard.name)):
        ep = ds[0]
        cam = np.asarray(ep.observations["camera"])
        # reached only if nothing raised: say what was read
        raise AssertionError(f"read frames {cam[:, 0, 0, 0].tolist()} (201 = the file outside the dataset)")


def test_codec_rows_table_of_2_pow_40_rows_refused(video_ds: tuple[Path, Path], tmp_path: Path) -> None:
    path, shard = video_ds
    with h5py.File(shard, "r+") as f:
        g = f["codec/obs/observations/camera"]
        del g["rows"]  # a few KB on disk: every chunk unallocated, the fill value stands for them
        g.create_dataset("rows", shape=(1 << 40, 2), dtype=np.int64, chunks=(1 << 16, 2), compression="gzip",
                         fillvalue=-1)
    assert shard.stat().st_size < 1 << 20
    res = _child(tmp_path, "load", path)
    _assert_refused(res, shard.name)
    assert res["type"] != "MemoryError"


# -- 4. Minari ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minari_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two Minari exports of different CartPole recordings: the one to attack and one 'elsewhere on disk'."""
    from gym_aquacollect.formats.minari import write_minari

    out = []
    for i, steps in enumerate((20, 37)):
        base = tmp_path_factory.mktemp(f"minari{i}")
        with CollectingWrapper(gym.make("CartPole-v1"), base / "ds") as env:
            env.reset(seed=i)
            for _ in range(steps):
                *_, term, trunc, _ = env.step(i % 2)
                if term or trunc:
                    env.reset()
        d = Path(write_minari(load_dataset(base / "ds"), base / "root", "cartpole/test-v0"))
        assert (d / "data" / "metadata.json").is_file()
        out.append(d)
    assert load_dataset(out[0]).total_steps == 20 and load_dataset(out[1]).total_steps == 37
    return out[0], out[1]


def _minari_copy(minari_pair: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    d = tmp_path / "m"
    shutil.copytree(minari_pair[0], d)
    h5 = d / "data" / "main_data.hdf5"
    h5.unlink()
    return d, h5, minari_pair[1]


def test_minari_main_data_symlinked_to_another_dataset_refused(minari_pair, tmp_path: Path) -> None:
    d, h5, other = _minari_copy(minari_pair, tmp_path)
    os.symlink(other / "data" / "main_data.hdf5", h5)
    with pytest.raises(DatasetFormatError, match="main_data.hdf5"):
        ds = load_dataset(d)
        raise AssertionError(f"opened the other dataset's data: {ds.total_steps} steps")


@pytest.mark.timeout(120)
def test_minari_main_data_fifo_refused_without_hanging(minari_pair, tmp_path: Path) -> None:
    d, h5, _ = _minari_copy(minari_pair, tmp_path)
    os.mkfifo(h5)
    _assert_refused(_child(tmp_path, "load", d), "main_data.hdf5")


# -- 5. LeRobot ---------------------------------------------------------------------------------------------
def _lerobot_base(directory: Path, *, video: bool = False) -> Path:
    from gym_aquacollect.formats._common import MemoryDataset, MemoryEpisode
    from gym_aquacollect.formats.lerobot import write_lerobot

    if video:
        T = 4
        obs = {"cam": np.zeros((T + 1, 32, 32, 3), np.uint8), "state": np.zeros((T + 1, 2), np.float32)}
        ep = MemoryEpisode(0, obs, np.zeros(T, np.int64), np.ones(T), np.array([0, 0, 0, 1], bool),
                           np.zeros(T, bool))
        ds = MemoryDataset([ep], spaces.Dict({"cam": spaces.Box(0, 255, (32, 32, 3), np.uint8),
                                              "state": spaces.Box(-1, 1, (2,))}), spaces.Discrete(2))
    else:
        ep = MemoryEpisode(0, np.arange(8, dtype=np.float32).reshape(4, 2), np.array([0, 1, 0]), np.ones(3),
                           np.array([False, False, True]), np.zeros(3, bool))
        ds = MemoryDataset([ep], spaces.Box(-9, 9, (2,)), spaces.Discrete(2))
    return Path(write_lerobot(ds, directory, fps=10, task="balance", progress=False))


@pytest.fixture(scope="module")
def lerobot_pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require("pyarrow", why="pyarrow (LeRobot parquet files)")
    pa, pq = require("pyarrow"), require("pyarrow.parquet")
    base = tmp_path_factory.mktemp("lerobot")
    plain = _lerobot_base(base / "plain")
    outside = _lerobot_base(base / "outside")  # another LeRobot dataset elsewhere, with private task texts
    pq.write_table(pa.table({"task_index": [0], "task": ["SECRET-from-outside-the-dataset"]}),
                   outside / "meta" / "tasks.parquet")
    ds = load_dataset(plain)  # the untouched export reads back
    assert len(ds) == 1 and np.asarray(ds[0].observations).tolist()[:2] == [[0, 1], [2, 3]]
    return {"plain": plain, "outside": outside}


@pytest.fixture
def lerobot_ds(lerobot_pristine: dict[str, Path], tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "lr"
    shutil.copytree(lerobot_pristine["plain"], out)
    return out, lerobot_pristine["outside"]


def _relink(link: Path, target: Path) -> None:
    link.unlink()
    os.symlink(target, link)


@pytest.mark.parametrize("which", ["tasks", "episodes", "info"])
def test_lerobot_meta_file_symlinked_outside_refused(lerobot_ds, which: str) -> None:
    out, outside = lerobot_ds
    if which == "tasks":
        _relink(out / "meta" / "tasks.parquet", outside / "meta" / "tasks.parquet")
        name = "tasks.parquet"
    elif which == "episodes":
        p = next((out / "meta" / "episodes").rglob("*.parquet"))
        _relink(p, next((outside / "meta" / "episodes").rglob("*.parquet")))
        name = p.name
    else:
        _relink(out / "meta" / "info.json", outside / "meta" / "info.json")
        name = "info.json"
    with pytest.raises(DatasetFormatError, match=re.escape(name)) as e:
        ds = load_dataset(out)
        raise AssertionError(f"opened with a meta file from outside: tasks {ds.metadata.get('tasks')}")
    assert "SECRET" not in str(e.value)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("which", ["tasks", "data"])
def test_lerobot_fifo_file_refused_without_hanging(lerobot_ds, tmp_path: Path, which: str) -> None:
    out, _ = lerobot_ds
    p = out / "meta" / "tasks.parquet" if which == "tasks" else next((out / "data").rglob("*.parquet"))
    p.unlink()
    os.mkfifo(p)
    _assert_refused(_child(tmp_path, "load", out), p.name, export_ok=True)


@pytest.mark.timeout(120)
def test_lerobot_fifo_video_refused_without_hanging(tmp_path: Path) -> None:
    require("pyarrow", why="pyarrow (LeRobot parquet files)")
    require("av", why="PyAV (LeRobot videos)")
    out = _lerobot_base(tmp_path / "lr", video=True)
    assert np.asarray(load_dataset(out)[0].observations["cam"]).shape == (5, 32, 32, 3)  # pristine reads back
    mp4 = next(out.rglob("*.mp4"))
    mp4.unlink()
    os.mkfifo(mp4)
    _assert_refused(_child(tmp_path, "load", out), mp4.name, export_ok=True)


@pytest.mark.timeout(120)
def test_lerobot_huge_task_index_refused(lerobot_ds, tmp_path: Path) -> None:
    pa, pq = require("pyarrow"), require("pyarrow.parquet")
    out, _ = lerobot_ds
    pq.write_table(pa.table({"task_index": [100_000_000], "task": ["x"]}), out / "meta" / "tasks.parquet")
    res = _child(tmp_path, "load", out)
    _assert_refused(res, "tasks.parquet", export_ok=True)
    assert res["peak_rss_mb"] < 700, res  # one task: no list of 10**8 task names was built


@pytest.mark.timeout(120)
def test_lerobot_huge_feature_shape_refused(lerobot_ds, tmp_path: Path) -> None:
    out, _ = lerobot_ds
    info = json.loads((out / "meta" / "info.json").read_text())
    info.pop("aquacollect", None)  # no stored spaces: the reader infers them from the features
    info["features"]["observation.state"]["shape"] = [1 << 40]
    (out / "meta" / "info.json").write_text(json.dumps(info))
    res = _child(tmp_path, "load", out)
    _assert_refused(res, "observation.state", export_ok=True)
    assert res["type"] != "MemoryError"


@pytest.mark.timeout(120)
def test_lerobot_hostile_data_path_template_refused(lerobot_ds, tmp_path: Path) -> None:
    out, _ = lerobot_ds
    info = json.loads((out / "meta" / "info.json").read_text())
    # a 300 MB file name from a 70-byte template
    info["data_path"] = "data/chunk-{chunk_index:03d}/file-{file_index:>300000000}.parquet"
    (out / "meta" / "info.json").write_text(json.dumps(info))
    res = _child(tmp_path, "load", out)
    _assert_refused(res, "info.json", export_ok=True)
    assert res["peak_rss_mb"] < 700, res  # the template was refused before str.format ran it


# -- 6. the HTML report -------------------------------------------------------------------------------------
def _strict_json(text: str) -> object:
    def refuse(c: str) -> object:
        raise ValueError(f"non-JSON constant {c} (JSON.parse refuses it)")

    return json.loads(text, parse_constant=refuse)


def _episodes_json(html_text: str) -> str:
    m = re.search(r'<script type="application/json" id="episodes-data">(.*?)</script>', html_text, re.S)
    assert m, "the report embeds no episodes-data"
    return m.group(1)


class _NanOnTermination(gym.Wrapper):
    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        return obs, float("nan") if term else r, term, trunc, info


def test_report_with_nan_rewards_embeds_strict_json(tmp_path: Path) -> None:
    from gym_aquacollect.report import write_report

    path = tmp_path / "ds"
    with CollectingWrapper(_NanOnTermination(gym.make("CartPole-v1")), path) as env:
        env.reset(seed=0)
        for _ in range(40):
            *_, term, trunc, _ = env.step(0)
            if term or trunc:
                env.reset()
    ds = load_dataset(path)
    out = write_report(ds, tmp_path / "report.html")
    data = _strict_json(_episodes_json(Path(out).read_text()))
    col = data["columns"].index("return")
    by_id = {row[data["columns"].index("id")]: row[col] for row in data["rows"]}
    assert len(by_id) == len(ds) >= 2
    for ep in ds:
        ret = float(np.sum(ep.rewards))
        if np.isfinite(ret):
            assert by_id[ep.id] == pytest.approx(ret)
        else:  # the terminated episodes end on a NaN reward
            assert by_id[ep.id] is None
    assert any(v is None for v in by_id.values()) and any(v is not None for v in by_id.values())


@pytest.mark.timeout(120)
def test_report_of_discrete_space_of_10_pow_9_actions_is_written(tmp_path: Path) -> None:
    path = tmp_path / "ds"
    with CollectingWrapper(gym.make("CartPole-v1"), path) as env:
        env.reset(seed=0)
        for i in range(30):
            *_, term, trunc, _ = env.step(i % 2)
            if term or trunc:
                env.reset()
    meta_path = path / "aquacollect.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("crc32", None)  # the self-checksum is optional: a crafted file leaves it out
    assert meta["action_space"]["n"] == 2
    meta["action_space"]["n"] = 10**9
    meta_path.write_text(json.dumps(meta))
    out = tmp_path / "report.html"
    res = _child(tmp_path, "report", path, out)
    assert res["result"] == "written", res
    page = out.read_text()
    assert "Discrete 1000000000" in page
    # the bars are the values that occur (0 and 1, 15 steps each), not 10**9 of them
    assert re.search(r"<title>0: 15</title>", page) and re.search(r"<title>1: 15</title>", page)
    assert "<title>2: " not in page
    _strict_json(_episodes_json(page))
