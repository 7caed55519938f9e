"""Issue 9, items 3-6 and 10-11: odd values never kill recording, memory stays bounded, no stitching.

* odd info values (NUL, lone surrogate, key type changes number -> dict -> number, integers beyond
  int64, None, arbitrary objects, arrays changing shape, vector infos of the wrong batch length) are
  dropped with one warning per key, counted, and the count reaches the manifest on disk;
* info columns are sized by their own rows, and their bytes count toward ``max_pending_bytes``;
* vector infos are copied at record time;
* the batched (Isaac Lab) path waits for a lagging writer: pending bytes never exceed the cap
  (observed through the writer's own counters, not timing);
* a value that fails validation closes the episode (truncated, marked) and ``reset()`` after
  ``close()`` raises;
* JSON files get the permissions of shards; the free-space check accepts data that fits.
"""

from __future__ import annotations

import os
import stat
import time

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from gym_aquacollect import CollectingVectorWrapper, CollectingWrapper, load_dataset
from gym_aquacollect.storage import writer as writer_mod
from gym_aquacollect.storage.writer import DatasetWriter


class _Odd:
    def __repr__(self) -> str:
        return "<odd object>"


def _odd_info(t: int) -> dict:
    info = {"good": float(t), "text": "ok"}
    if t == 3:
        info["text"] = "a\x00b"  # NUL: HDF5 cannot store it
    if t == 4:
        info["text"] = "\ud800"  # lone surrogate: not UTF-8
    info["flip"] = {"inner": 1.0} if t == 5 else float(t)  # number -> dict -> number
    info["big"] = 2 ** 70 if t == 6 else t  # beyond int64 (and uint64)
    info["maybe"] = None if t % 2 else 1.0
    info["obj"] = _Odd()
    info["arr"] = np.zeros(3 if t != 7 else 4)  # shape changes once
    return info


class _Endless(gym.Wrapper):
    """CartPole whose episode never ends (so a test controls its length)."""

    def __init__(self, env=None):
        super().__init__(env if env is not None else gym.make("CartPole-v1").unwrapped)

    def step(self, action):
        obs, r, _, _, info = self.env.step(action)
        return obs, r, False, False, info


class _OddInfoEnv(gym.Wrapper):
    def reset(self, **kw):
        self.t = 0
        obs, _ = self.env.reset(**kw)
        return obs, _odd_info(0)

    def step(self, action):
        self.t += 1
        obs, r, term, trunc, _ = self.env.step(action)
        return obs, r, term, trunc, _odd_info(self.t)


def _manifest_info(path) -> dict:
    (m,) = load_dataset(path).manifests
    return m.info


def test_odd_info_values_never_kill_recording_and_the_count_reaches_disk(tmp_path):
    env = CollectingWrapper(_OddInfoEnv(_Endless()), tmp_path / "ds")
    env.reset(seed=0)
    for _ in range(12):
        env.step(0)
    env.close()
    ds = load_dataset(tmp_path / "ds")
    assert ds.total_steps == 12
    infos = ds[0].infos
    assert infos["good"].tolist() == list(range(13))
    assert list(infos["_text"]) == [True] * 3 + [False, False] + [True] * 8
    assert infos["obj"][5] == "<odd object>"
    assert infos["_big"].tolist() == [t != 6 for t in range(13)]
    assert infos["_flip"].tolist() == [t != 5 for t in range(13)]
    assert infos["_maybe"].tolist() == [t % 2 == 0 for t in range(13)]
    assert infos["_arr"].tolist() == [t != 7 for t in range(13)]
    dropped = _manifest_info(tmp_path / "ds")["dropped_info"]
    assert dropped == {"text": 2, "flip": 1, "big": 1, "arr": 1}


class _OddVectorInfos(gym.vector.VectorWrapper):
    """Vector infos with odd values, and one whose batch length is wrong."""

    def step(self, actions):
        obs, r, term, trunc, infos = self.env.step(actions)
        n = self.num_envs
        self.t = getattr(self, "t", 0) + 1
        infos = dict(infos)
        infos["good"] = np.full(n, float(self.t))
        infos["text"] = np.array(["a\x00b" if self.t == 2 else "ok"] * n, dtype=object)
        infos["flip"] = {"inner": np.ones(n)} if self.t == 3 else np.full(n, 1.0)
        infos["big"] = np.array([2 ** 70 if self.t == 4 else 1] * n, dtype=object)
        infos["wrong_len"] = np.zeros(n + 1)
        return obs, r, term, trunc, infos


def test_odd_vector_info_values_never_kill_recording(tmp_path):
    venv = _OddVectorInfos(gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync"))
    env = CollectingVectorWrapper(venv, tmp_path / "ds")
    env.reset(seed=0)
    for _ in range(8):
        env.step(np.zeros(2, np.int64))
    env.close()
    ds = load_dataset(tmp_path / "ds")
    assert ds.total_steps == 16
    ep = ds[0]
    assert ep.infos["good"][1:].tolist() == list(range(1, 9))
    dropped = _manifest_info(tmp_path / "ds")["dropped_info"]
    assert dropped["text"] == 2 and dropped["big"] == 2 and dropped["wrong_len"] == 16
    assert dropped["flip/inner"] == 2  # a dict where numbers were stored (HDF5 cannot hold both)
    assert ep.infos["flip"].dtype == np.float64 and ep.infos["_flip"][1:].tolist() == [t != 3 for t in range(1, 9)]


class _BigInfo(gym.Wrapper):
    """A 512x512x3 camera frame in every info (a CartPole block holds thousands of rows)."""

    def _frame(self, t):
        return np.full((512, 512, 3), t % 256, np.uint8)

    def reset(self, **kw):
        self.t = 0
        obs, info = self.env.reset(**kw)
        return obs, {"frame": self._frame(0)}

    def step(self, action):
        self.t += 1
        obs, r, term, trunc, _ = self.env.step(action)
        return obs, r, term, trunc, {"frame": self._frame(self.t)}


def test_info_columns_are_sized_by_their_own_rows(tmp_path):
    """Today the first frame allocates a column for the block's 65,536 CartPole rows: 48 GiB."""
    env = CollectingWrapper(_BigInfo(gym.make("CartPole-v1")), tmp_path / "ds")
    env.reset(seed=0)
    assert env.collector._infos.nbytes < 16 << 20
    steps = 0
    for _ in range(30):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        steps += 1
        if term or trunc:
            break
    env.close()
    ep = load_dataset(tmp_path / "ds")[0]
    assert len(ep) == steps
    assert [int(f[0, 0, 0]) for f in ep.infos["frame"]] == list(range(steps + 1))


def test_a_big_info_key_appearing_late_in_a_block_starts_its_own_column(tmp_path):
    class Late(_BigInfo):
        def reset(self, **kw):
            self.t = 0
            return self.env.reset(**kw)[0], {"small": 1.0}

        def step(self, action):
            out = list(super().step(action))
            if self.t < 300:
                out[4] = {"small": 1.0}
            else:
                out[4] = {"small": 1.0, "frame": self._frame(self.t)}
            out[2] = out[3] = False
            return tuple(out)

    env = CollectingWrapper(Late(gym.make("CartPole-v1").unwrapped), tmp_path / "ds")
    env.reset(seed=0)
    for _ in range(310):
        env.step(0)
        assert env.collector._infos.nbytes < 32 << 20
    env.close()
    ep = load_dataset(tmp_path / "ds")[0]
    assert len(ep) == 310
    assert ep.infos["_frame"].tolist() == [False] * 300 + [True] * 11
    assert [int(f[0, 0, 0]) for f in ep.infos["frame"][300:]] == [t % 256 for t in range(300, 311)]


@pytest.fixture
def slow_writer(monkeypatch):
    """A writer that lags behind the env: it stores nothing until the producer has had to wait for it
    (then it goes on normally), so the budget is exercised whatever the machine's speed."""
    real = DatasetWriter.write_block

    def slow(self, block):
        deadline = time.monotonic() + 60
        while self.pending.waits == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        return real(self, block)

    monkeypatch.setattr(DatasetWriter, "write_block", slow)


def test_pending_info_bytes_count_toward_max_pending_bytes(tmp_path, slow_writer):
    cap = 6 << 20
    from gym_aquacollect.collectors import RLCollector

    col = RLCollector(dataset_path=tmp_path / "ds2", max_pending_bytes=cap, block_bytes=1 << 20)
    env = CollectingWrapper(_BigInfo(_Endless()), collector=col)
    env.reset(seed=0)
    for _ in range(120):
        env.step(0)
    budget = col.writer.pending
    env.close()
    assert budget.waits > 0  # the writer lagged and recording waited
    assert budget.peak <= cap  # never more than the cap waiting (the info frames included)
    assert load_dataset(tmp_path / "ds2").total_steps == 120


class _ReusedInfoArrays(gym.vector.VectorWrapper):
    """An env that writes its info into the same arrays every step."""

    def reset(self, **kw):
        self.buf = np.zeros(self.num_envs)
        self.t = 0
        return self.env.reset(**kw)

    def step(self, actions):
        obs, r, term, trunc, infos = self.env.step(actions)
        self.t += 1
        self.buf[:] = self.t
        return obs, r, term, trunc, {**infos, "t": self.buf}


def test_vector_infos_are_copied_at_record_time(tmp_path):
    env = CollectingVectorWrapper(_ReusedInfoArrays(gym.make_vec("CartPole-v1", num_envs=2,
                                                                 vectorization_mode="sync")), tmp_path / "ds")
    env.reset(seed=0)
    for _ in range(6):
        env.step(np.zeros(2, np.int64))
    env.close()
    ep = load_dataset(tmp_path / "ds")[0]
    assert ep.infos["t"][1:].tolist() == [1, 2, 3, 4, 5, 6]


def test_batched_isaac_path_waits_for_a_lagging_writer(tmp_path, slow_writer):
    """Camera frames arrive faster than the writer stores them: the env waits, and the bytes pending
    for the writer never exceed max_pending_bytes (today the Isaac Lab path allocates a new chunk for
    every hand-over and RSS grows without bound)."""
    import torch

    from gym_aquacollect.collectors import RLCollector
    from gym_aquacollect.testing.fake_isaaclab import FakeEnvCfg, FakeSceneCfg

    n, cap = 32, 8 << 20
    cfg = FakeEnvCfg(scene=FakeSceneCfg(num_envs=n), image_obs=(64, 64), record_ground_truth=False)
    col = RLCollector(dataset_path=tmp_path / "ds", max_pending_bytes=cap)
    env = CollectingVectorWrapper(gym.make("Isaac-Fake-v0", cfg=cfg), collector=col, chunk_steps=8)
    env.reset(seed=0)
    for _ in range(160):
        env.step(torch.zeros(n, 2))
    budget = col.writer.pending
    chunks_allocated = len(env._chunks._free) + (env._chunks.cur is not None)
    env.close()
    assert budget.waits > 0
    assert budget.peak <= cap
    assert chunks_allocated <= cap // (8 * n * 64 * 64 * 3) + 2  # memory bounded: chunks are reused
    assert load_dataset(tmp_path / "ds").total_steps == 160 * n


class _BadStep(gym.Wrapper):
    """Step 3 returns an observation of the wrong shape."""

    def reset(self, **kw):
        self.t = 0
        return self.env.reset(**kw)

    def step(self, action):
        self.t += 1
        obs, r, term, trunc, info = self.env.step(action)
        if self.t == 3:
            obs = np.zeros(5, np.float32)
        return obs, r, False, False, info


@pytest.mark.parametrize("kind", ["default", "buffer", "trajectory"])
def test_a_value_that_fails_validation_never_stitches_an_episode(tmp_path, kind):
    from gym_aquacollect import BufferCollector, TrajectoryCollector
    from gym_aquacollect.spaces import SpaceMismatchError

    inner = gym.make("CartPole-v1").unwrapped
    collector = {"default": None, "buffer": BufferCollector(dataset_path=tmp_path / "ds", max_buffer_size=100),
                 "trajectory": TrajectoryCollector(dataset_path=tmp_path / "ds")}[kind]
    env = CollectingWrapper(_BadStep(inner), tmp_path / "ds", collector=collector)
    obs0, _ = env.reset(seed=0)
    seen = [obs0]
    for _ in range(1, 6):
        try:
            seen.append(env.step(0)[0])
        except SpaceMismatchError:
            seen.append(None)  # the caller catches the error and goes on
    env.close()
    ds = load_dataset(tmp_path / "ds")
    assert len(ds) == 1
    ep = ds[0]
    assert len(ep) == 2 and ep.metadata["interrupted"] == "invalid_step" and ep.metadata["truncated"]
    np.testing.assert_array_equal(ep.observations, np.stack(seen[:3]))  # steps 4, 5 are not joined to it
    with pytest.raises(RuntimeError, match="closed"):
        env.reset()


def test_json_files_get_the_permissions_of_shards(tmp_path):
    old = os.umask(0o022)
    try:
        env = CollectingWrapper(gym.make("CartPole-v1"), tmp_path / "ds")
        env.reset(seed=0)
        for _ in range(20):
            env.step(0)
        env.close()
    finally:
        os.umask(old)
    root = tmp_path / "ds"
    (shard,) = (root / "shards").glob("*.h5")
    shard_mode = stat.S_IMODE(shard.stat().st_mode)
    assert shard_mode == 0o644
    for p in [root / "aquacollect.json", *(root / "manifests").glob("*.json")]:
        assert stat.S_IMODE(p.stat().st_mode) == shard_mode, p


def test_free_space_check_accepts_data_that_fits(tmp_path, monkeypatch):
    """A 24 MiB block of incompressible frames with 1.4x its size free: it fits, so it is stored
    (today the check demands 2.2x the block and refuses it)."""
    from collections import namedtuple

    from gym_aquacollect.collectors import RLCollector

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (97, 256, 256, 4), dtype=np.uint8)  # 24.25 MiB
    raw = frames[:, :, :, :].nbytes
    free = int(1.4 * raw)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(writer_mod.shutil, "disk_usage", lambda p: usage(10 * free, 9 * free, free))

    class Frames(gym.Env):
        observation_space = spaces.Box(0, 255, (256, 256, 4), np.uint8)
        action_space = spaces.Discrete(2)

        def reset(self, **kw):
            self.t = 0
            return frames[0], {}

        def step(self, a):
            self.t += 1
            return frames[self.t], 0.0, self.t == 96, False, {}

    col = RLCollector(dataset_path=tmp_path / "ds", compression=None, block_bytes=64 << 20, record_infos=False)
    env = CollectingWrapper(Frames(), collector=col)
    env.reset()
    for _ in range(96):
        env.step(0)
    env.close()
    ds = load_dataset(tmp_path / "ds")
    assert ds.total_steps == 96
    on_disk = sum(p.stat().st_size for p in (tmp_path / "ds" / "shards").glob("*.h5"))
    assert on_disk <= free  # it did fit
    np.testing.assert_array_equal(ds[0].observations, frames)


def test_opt_in_bounds_and_nan_check(tmp_path):
    """Shape and dtype are always validated; Box bounds and NaN only with check_bounds=True."""
    from gym_aquacollect.collectors import RLCollector
    from gym_aquacollect.spaces import SpaceMismatchError

    class NaNAt3(gym.Wrapper):
        def reset(self, **kw):
            self.t = 0
            return self.env.reset(**kw)

        def step(self, action):
            self.t += 1
            obs, r, term, trunc, info = self.env.step(action)
            if self.t == 3:
                obs = obs.copy()
                obs[0] = np.nan
            return obs, r, False, False, info

    for check in (False, True):
        col = RLCollector(dataset_path=tmp_path / f"ds{check}", check_bounds=check)
        env = CollectingWrapper(NaNAt3(gym.make("CartPole-v1").unwrapped), collector=col)
        env.reset(seed=0)
        errors = []
        for _ in range(4):
            try:
                env.step(0)
            except SpaceMismatchError as e:
                errors.append(str(e))
        env.close()
        ep = load_dataset(tmp_path / f"ds{check}")[0]
        if check:
            assert len(errors) == 1 and "NaN" in errors[0] and "observation" in errors[0]
            assert len(ep) == 2 and ep.metadata["interrupted"] == "invalid_step"
        else:
            assert not errors and len(ep) == 4 and np.isnan(ep.observations[3, 0])

    act = RLCollector(dataset_path=tmp_path / "act", check_bounds=True)
    env = CollectingWrapper(gym.make("Pendulum-v1"), collector=act)
    env.reset(seed=0)
    with pytest.raises(SpaceMismatchError, match="outside the bounds"):
        env.step(np.array([5.0], np.float32))
    env.close()
