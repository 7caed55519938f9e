"""The specialised per-step path (recording/row.py) and the episode time column (storage/shard.py).

The single-env wrapper records a step through a function generated for the env's spaces when the values
already have the right types; everything else takes the general path. These tests check that both paths
store the same data and raise the same errors, and that the wall-clock times moved out of the metadata
JSON into ``index/episode_time`` read back exactly, also from shards written before that column existed.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
from gymnasium import spaces

from gym_aquacollect import CollectingWrapper, DatasetFormatError, RLCollector, load_dataset
from gym_aquacollect.schema.spaces import SpaceMismatchError
from gym_aquacollect.storage.manifest import _read_json, atomic_write_json, file_checksum
from gym_aquacollect.storage.verify import verify_dataset


class ScriptEnv(gym.Env):
    """Returns the values of a script, so each step's types can be chosen (NumPy scalars, bools, ...)."""

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, steps: list[tuple]) -> None:
        self.observation_space, self.action_space = obs_space, act_space
        self.steps = steps
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.steps[0][0], {}

    def step(self, action):
        self.t += 1
        obs, reward, term, trunc = self.steps[self.t % len(self.steps)]
        return obs, reward, term, trunc, {}


def _shards(path: Path) -> list[Path]:
    return sorted((path / "shards").glob("*.h5"))


def _reseal(path: Path) -> None:
    for m in (path / "manifests").glob("*.json"):
        d = _read_json(m)
        for s in d["shards"]:
            f = path / s["file"]
            s["size"], s["checksum"] = f.stat().st_size, file_checksum(f)
        atomic_write_json(m, d)


def test_the_wrapper_records_through_the_specialised_step(tmp_path: Path) -> None:
    env = CollectingWrapper(gym.make("CartPole-v1"), tmp_path / "ds")
    assert "step" in vars(env), "CartPole (Box obs, Discrete action) should get the generated step"
    obs, _ = env.reset(seed=3)
    seen_obs, seen_act, seen_rew = [obs.copy()], [], []
    for t in range(300):
        a = t % 2 if t % 3 else np.int64(t % 2)  # Python ints and NumPy ints
        obs, r, term, trunc, _ = env.step(a)
        seen_obs.append(obs.copy()), seen_act.append(int(a)), seen_rew.append(r)
        if term or trunc:
            break
    env.close()
    ep = load_dataset(tmp_path / "ds")[0]
    np.testing.assert_array_equal(ep.observations, np.stack(seen_obs))
    assert ep.actions.dtype == np.int64 and ep.actions.tolist() == seen_act
    np.testing.assert_array_equal(ep.rewards, seen_rew)


@pytest.mark.parametrize("kind", ["fast", "numpy scalars", "general"])
def test_fast_and_general_paths_store_the_same_values(tmp_path: Path, kind: str) -> None:
    obs_space = spaces.Box(-5, 5, (3,), np.float32)
    act_space = spaces.Discrete(3, start=-1)
    rng = np.random.default_rng(0)
    steps = []
    for t in range(40):
        o = rng.uniform(-5, 5, 3).astype(np.float32)
        r, term, trunc = float(t), t == 17, t == 39
        if kind == "numpy scalars":
            r, term, trunc = np.float64(r), np.bool_(term), np.bool_(trunc)
        elif kind == "general":  # a list observation and an int reward: the general path converts them
            o, r = o.tolist(), t
        steps.append((o, r, term, trunc))
    env = CollectingWrapper(ScriptEnv(obs_space, act_space, steps), tmp_path / "ds")
    env.reset()
    actions = [int(a) - 1 for a in rng.integers(0, 3, 39)]
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    env.close()
    ds = load_dataset(tmp_path / "ds")
    assert [len(e) for e in ds] == [17, 22]
    acts = np.concatenate([e.actions for e in ds])
    assert acts.tolist() == actions
    rews = np.concatenate([e.rewards for e in ds])
    np.testing.assert_array_equal(rews, np.arange(1, 40, dtype=np.float64))
    obs = np.concatenate([e.observations[1:] for e in ds])
    np.testing.assert_array_equal(obs, np.asarray([s[0] for s in steps[1:40]], dtype=np.float32))
    assert ds[0].terminations[-1] and ds[1].truncations[-1] and not ds[1].terminations.any()


@pytest.mark.parametrize("bad", ["dtype", "shape", "action range", "action type"])
def test_a_bad_value_gets_the_general_error_and_stores_the_episode_as_it_was(tmp_path: Path, bad: str) -> None:
    obs_space, act_space = spaces.Box(-1, 1, (2,), np.float32), spaces.Discrete(2)
    good = np.zeros(2, np.float32)
    value = {"dtype": np.zeros(2, np.float64), "shape": np.zeros(3, np.float32)}.get(bad, good)
    env = CollectingWrapper(ScriptEnv(obs_space, act_space, [(good, 1.0, False, False)] * 4 + [(value, 1.0, False, False)]),
                            tmp_path / "ds")
    env.reset()
    for _ in range(3):
        env.step(0)
    action = {"action range": 2, "action type": 0.5}.get(bad, 1)
    with pytest.raises(SpaceMismatchError, match="action" if "action" in bad else "observation"):
        env.step(action)
    env.close()
    ds = load_dataset(tmp_path / "ds")
    assert len(ds) == 1 and len(ds[0]) == 3
    assert ds[0].metadata["interrupted"] == "invalid_step"


def test_box_actions_and_image_observations_take_the_specialised_step(tmp_path: Path) -> None:
    obs_space = spaces.Box(0, 255, (8, 8, 3), np.uint8)  # 192 B rows: stored as raw bytes
    act_space = spaces.Box(-1, 1, (2,), np.float32)
    frames = [(np.full((8, 8, 3), t, np.uint8), 0.5, False, t == 9) for t in range(10)]
    env = CollectingWrapper(ScriptEnv(obs_space, act_space, frames), tmp_path / "ds")
    assert "step" in vars(env)
    env.reset()
    acts = [np.full(2, t / 10, np.float32) for t in range(9)]
    for a in acts:
        env.step(a)
    env.close()
    ep = load_dataset(tmp_path / "ds")[0]
    np.testing.assert_array_equal(ep.actions, np.stack(acts))
    np.testing.assert_array_equal(ep.observations[:, 0, 0, 0], np.arange(10))


def test_a_subclass_overriding_record_step_keeps_it(tmp_path: Path) -> None:
    calls = []

    class Counting(RLCollector):
        def record_step(self, *args, **kwargs):
            calls.append(1)
            return super().record_step(*args, **kwargs)

    env = CollectingWrapper(gym.make("CartPole-v1"), tmp_path / "ds", collector=Counting())
    assert "step" not in vars(env)
    env.reset(seed=0)
    for _ in range(5):
        env.step(0)
    env.close()
    assert len(calls) == 5


def test_episode_times_are_a_column_and_read_back_exactly(tmp_path: Path) -> None:
    captured = []
    col = RLCollector(episode_callbacks=[lambda c, s: captured.append((s["metadata"]["t_start"],
                                                                           s["metadata"]["t_end"]))])
    env = CollectingWrapper(gym.make("CartPole-v1"), tmp_path / "ds", collector=col)
    env.reset(seed=0)
    while len(captured) < 5:
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    env.close()
    ds = load_dataset(tmp_path / "ds")
    assert [(e.metadata["t_start"], e.metadata["t_end"]) for e in ds][:5] == captured
    np.testing.assert_array_equal(ds.episode_times[:5], np.array(captured))
    with h5py.File(_shards(tmp_path / "ds")[0], "r") as f:
        assert f["index/episode_time"].shape == (len(ds), 2)
        texts = f["index/episode_meta"].asstr()[()]
    assert not any("t_start" in t for t in texts), "times are stored once, in the column"


def test_shards_without_a_time_column_still_give_their_times(tmp_path: Path) -> None:
    """A shard written before the column existed kept the times inside each episode's JSON."""
    path = tmp_path / "ds"
    env = CollectingWrapper(gym.make("CartPole-v1"), path)
    env.reset(seed=0)
    for _ in range(200):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    env.close()
    want = load_dataset(path).episode_times.copy()
    with h5py.File(_shards(path)[0], "r+") as f:  # rewrite it the old way
        times = f["index/episode_time"][()]
        metas = [json.loads(t) for t in f["index/episode_meta"].asstr()[()]]
        for m, (a, b) in zip(metas, times.tolist()):
            m["t_start"], m["t_end"] = a, b
        del f["index/episode_time"], f["index/episode_meta"]
        f.create_dataset("index/episode_meta", data=np.array([json.dumps(m) for m in metas], dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
    _reseal(path)
    ds = load_dataset(path)
    np.testing.assert_array_equal(ds.episode_times, want)
    assert ds[0].metadata["t_start"] == want[0, 0]
    assert verify_dataset(path).ok


@pytest.mark.parametrize("lie", ["shape", "dtype"])
def test_a_malformed_time_column_is_refused_naming_the_shard(tmp_path: Path, lie: str) -> None:
    path = tmp_path / "ds"
    env = CollectingWrapper(gym.make("CartPole-v1"), path)
    env.reset(seed=0)
    for _ in range(100):
        _, _, term, trunc, _ = env.step(0)
        if term or trunc:
            env.reset()
    env.close()
    shard = _shards(path)[0]
    with h5py.File(shard, "r+") as f:
        n = f["index/episode_time"].shape[0]
        del f["index/episode_time"]
        if lie == "shape":
            f.create_dataset("index/episode_time", data=np.zeros((n + 1, 2)))
        else:
            f.create_dataset("index/episode_time", data=np.zeros((n, 2), np.int64))
    _reseal(path)
    with pytest.raises(DatasetFormatError, match=shard.name):
        load_dataset(path)


def test_every_steps_commits_while_recording_without_waiting_for_a_full_block(tmp_path: Path) -> None:
    """``FlushPolicy(every_steps=N)``: rows reach the writer at least every N steps (the row path's blocks
    are capped at N rows), so the manifest lists committed steps long before a 64k-row block would fill."""
    import time

    from gym_aquacollect.storage.manifest import MANIFEST_DIR, Manifest

    path = tmp_path / "ds"
    env = CollectingWrapper(gym.make("CartPole-v1"), path,
                            flush_policy={"every_steps": 1000, "every_seconds": None})
    env.reset(seed=0)
    for _ in range(3500):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    (manifest,) = (path / MANIFEST_DIR).glob("*.json")
    deadline, listed = time.monotonic() + 20, 0
    while time.monotonic() < deadline:  # the writer thread commits asynchronously: wait for the event
        listed = sum(s.n_step_rows for s in Manifest.load(manifest).shards)
        if listed >= 1500:
            break
        time.sleep(0.05)
    env.close()
    # a block holds at most 1000 rows and a commit needs 1000 new steps: at most ~2000 steps wait
    assert listed >= 1500, f"only {listed} of 3500 steps committed with every_steps=1000"


def test_a_wrapper_subclass_overriding_step_keeps_it(tmp_path: Path) -> None:
    calls = []

    class Counting(CollectingWrapper):
        def step(self, action):
            calls.append(action)
            return super().step(action)

    env = Counting(gym.make("CartPole-v1"), tmp_path / "ds")
    env.reset(seed=0)
    for _ in range(5):
        env.step(0)
    env.close()
    assert calls == [0] * 5
    assert load_dataset(tmp_path / "ds").total_steps == 5


def test_a_record_step_set_on_the_instance_is_kept(tmp_path: Path) -> None:
    seen = []
    col = RLCollector()
    general = col.record_step

    def mine(*args, **kwargs):
        seen.append(args[0])
        return general(*args, **kwargs)

    col.record_step = mine
    env = CollectingWrapper(gym.make("CartPole-v1"), tmp_path / "ds", collector=col)
    env.reset(seed=0)
    for _ in range(3):
        env.step(1)
    env.close()
    assert seen == [1, 1, 1]
