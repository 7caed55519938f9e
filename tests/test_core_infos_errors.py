"""Infos with keys that come and go, bad inputs, writer failures, spec round trip, autoreset."""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from gym_aquacollect import CollectingWrapper, DatasetFormatError, WriterError, load_dataset
from gym_aquacollect.spaces import SpaceMismatchError
from tests.envs import SpaceEnv, run_episodes


def test_record_episode_statistics_infos_do_not_crash(tmp_path):
    """Minari #246: info['episode'] appears only on the last step; we store it with a mask."""
    env = gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"))
    with CollectingWrapper(env, tmp_path / "ds") as rec:
        run_episodes(rec, 4, seed=0)
    ds = load_dataset(tmp_path / "ds")
    assert len(ds) == 4
    for ep in ds:
        T = len(ep)
        infos = ep.infos
        assert set(infos) == {"episode", "_episode"} or set(infos["episode"]) >= {"r", "l", "t"}
        ep_info = infos["episode"]
        assert ep_info["r"].shape == (T + 1,)
        mask = ep_info["_r"]
        assert mask.tolist() == [False] * T + [True]
        assert ep_info["l"][-1] == T and ep_info["r"][-1] == pytest.approx(ep.rewards.sum())


def test_heterogeneous_info_types(tmp_path):
    def info_fn(ep, t, done):
        info = {"step": t, "name": f"e{ep}", "vec": np.full(2, t, np.float32), "flag": t % 2 == 0}
        if t == 2:
            info["rare"] = {"deep": 1.5}
        if t == 3:
            info["vec"] = np.zeros(5)  # shape changes: dropped with a warning, never a crash
        if done:
            info["obj"] = {"list": [1, "a"]}
        return info

    inner = SpaceEnv(spaces.Box(-1, 1, (2,)), spaces.Discrete(2), lengths=(4,), truncate_every=0, info_fn=info_fn)
    with CollectingWrapper(inner, tmp_path / "ds") as env:
        run_episodes(env, 2)
    ds = load_dataset(tmp_path / "ds")
    infos = ds[1].infos
    assert infos["step"].tolist() == [0, 1, 2, 3, 4] and infos["step"].dtype == np.int64
    assert list(infos["name"]) == ["e1"] * 5
    assert infos["flag"].dtype == bool and infos["flag"].tolist() == [True, False, True, False, True]
    assert infos["rare"]["deep"].tolist() == [0, 0, 1.5, 0, 0]
    assert infos["rare"]["_deep"].tolist() == [False, False, True, False, False]
    assert infos["_vec"].tolist() == [True, True, True, False, True]
    np.testing.assert_array_equal(infos["vec"][4], [4, 4])
    assert json.loads(infos["obj"]["list"][-1]) == [1, "a"]  # not an array: kept as JSON text
    assert infos["obj"]["_list"].tolist() == [False] * 4 + [True]


def _write_some(path, n_eps=2):
    inner = SpaceEnv(spaces.Dict({"a": spaces.Box(-1, 1, (3,), np.float32), "b": spaces.Discrete(3)}),
                     spaces.Box(-1, 1, (2,), np.float32), lengths=(3,), truncate_every=0)
    env = CollectingWrapper(inner, path)
    run_episodes(env, n_eps)
    env.flush()
    return env


@pytest.mark.parametrize(
    "bad_obs, message",
    [
        ({"a": np.zeros(4, np.float32), "b": 1}, "observation['a']: expected shape (3,)"),
        ({"a": np.zeros(3, np.float64), "b": 1}, "observation['a']: expected dtype float32"),
        ({"a": np.zeros(3, np.float32)}, "missing ['b']"),
        ({"a": np.zeros(3, np.float32), "b": 1, "c": 2}, "unexpected ['c']"),
        ({"a": np.zeros(3, np.float32), "b": 5}, "outside Discrete(3)"),
        ({"a": np.zeros(3, np.float32), "b": 1.5}, "observation['b']: expected an integer"),
    ],
)
def test_bad_observation_raises_clear_error_and_keeps_dataset(tmp_path, bad_obs, message):
    env = _write_some(tmp_path / "ds")
    env.reset()
    env.step(np.zeros(2, np.float32))
    with pytest.raises(SpaceMismatchError) as exc:
        env.collector.record_step(np.zeros(2, np.float32), bad_obs, 0.0, False, False, {})
    assert message in str(exc.value)
    # the env keeps working and the dataset on disk stays valid; the episode the bad value hit is stored
    # as it was before it (truncated, marked), and the steps after it are not joined to it (issue 9.10)
    for _ in range(2):
        env.step(np.zeros(2, np.float32))
    env.close()
    ds = load_dataset(tmp_path / "ds")
    assert [len(e) for e in ds] == [3, 3, 1]
    assert ds[2].metadata["interrupted"] == "invalid_step" and ds[2].metadata["truncated"]


def test_bad_action_raises_at_that_step(tmp_path):
    env = CollectingWrapper(gym.make("Pendulum-v1"), tmp_path / "ds")
    env.reset(seed=0)
    env.step(np.array([0.5], np.float32))
    with pytest.raises(SpaceMismatchError, match=r"action: expected shape \(1,\)"):
        env.step(np.array([0.5, 0.1], np.float32))
    env.close()
    assert load_dataset(tmp_path / "ds").total_steps == 1


def test_nan_in_float_observation_is_data(tmp_path):
    inner = SpaceEnv(spaces.Box(-1, 1, (2,), np.float32), spaces.Discrete(2), lengths=(2,))
    with CollectingWrapper(inner, tmp_path / "ds") as env:
        env.reset(seed=0)
        env.collector.record_step(0, np.array([np.nan, 1], np.float32), 0.0, False, False, {})
    obs = load_dataset(tmp_path / "ds")[0].observations
    assert np.isnan(obs[1, 0]) and obs[1, 1] == 1


def test_dtype_policy_cast(tmp_path):
    inner = SpaceEnv(spaces.Box(-1, 1, (2,), np.float32), spaces.Discrete(2), lengths=(2,))
    with CollectingWrapper(inner, tmp_path / "ds", dtype_policy="cast") as env:
        env.reset(seed=0)
        env.collector.record_step(0, np.array([0.25, 1], np.float64), 0.0, False, False, {})
    obs = load_dataset(tmp_path / "ds")[0].observations
    assert obs.dtype == np.float32 and obs[1].tolist() == [0.25, 1.0]


def test_writer_failure_surfaces_in_user_thread(tmp_path):
    env = _write_some(tmp_path / "ds")
    shutil.rmtree(tmp_path / "ds" / "shards")  # the writer can no longer create its next shard
    with pytest.raises(WriterError, match="writer for .* failed"):
        for _ in range(50):
            run_episodes(env, 1)
            env.flush()


def test_corrupt_shard_gives_error_naming_the_file(tmp_path):
    env = _write_some(tmp_path / "ds")
    env.close()
    shard = next((tmp_path / "ds" / "shards").glob("*.h5"))
    data = bytearray(shard.read_bytes())
    shard.write_bytes(bytes(data[: len(data) // 3]))  # truncated file
    with pytest.raises(DatasetFormatError) as exc:
        load_dataset(tmp_path / "ds")
    assert shard.name in str(exc.value)


def test_corrupt_metadata_gives_error_naming_the_file(tmp_path):
    env = _write_some(tmp_path / "ds")
    env.close()
    (tmp_path / "ds" / "aquacollect.json").write_text("{not json")
    with pytest.raises(DatasetFormatError, match="aquacollect.json"):
        load_dataset(tmp_path / "ds")


def test_not_a_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="no dataset there"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("hello")
    with pytest.raises(FileExistsError, match="not a gym_aquacollect dataset"):
        CollectingWrapper(gym.make("CartPole-v1"), tmp_path / "junk")


def test_joining_a_dataset_with_other_spaces_is_refused(tmp_path):
    with CollectingWrapper(gym.make("CartPole-v1"), tmp_path / "ds") as env:
        run_episodes(env, 1)
    with pytest.raises(ValueError, match="different env"):
        CollectingWrapper(gym.make("Pendulum-v1"), tmp_path / "ds")
    # the same env joins (a second writer) and both writers' episodes are visible
    with CollectingWrapper(gym.make("CartPole-v1"), tmp_path / "ds") as env:
        run_episodes(env, 2)
    ds = load_dataset(tmp_path / "ds")
    assert len(ds) == 3 and ds.statistics()["writers"] == 2


def test_env_spec_rebuilds_wrapper_and_stores_inner_spec(tmp_path):
    env = CollectingWrapper(gym.make("CartPole-v1"), str(tmp_path / "ds"), compression=("gzip", 1))
    spec = env.spec
    assert spec.additional_wrappers[-1].name == "CollectingWrapper"
    assert spec.additional_wrappers[-1].kwargs["path"] == str(tmp_path / "ds")
    env.close()
    rebuilt = gym.make(spec)
    assert isinstance(rebuilt, CollectingWrapper)
    run_episodes(rebuilt, 1)
    rebuilt.close()
    ds = load_dataset(tmp_path / "ds")
    stored = ds.env_spec  # a gymnasium EnvSpec (issue 12)
    assert isinstance(stored, gym.envs.registration.EnvSpec)
    assert stored.id == "CartPole-v1"
    assert all(w.name != "CollectingWrapper" for w in stored.additional_wrappers)


def test_autoreset_inside_is_handled(tmp_path):
    inner = gym.wrappers.Autoreset(SpaceEnv(spaces.Box(-1, 1, (2,)), spaces.Discrete(2), lengths=(3, 2)))
    with CollectingWrapper(inner, tmp_path / "ds") as env:
        env.reset(seed=0)
        for _ in range(3 + 1 + 2 + 1 + 1):  # ep0 (3), reset step, ep1 (2), reset step, 1 step of ep2
            env.step(0)
    ds = load_dataset(tmp_path / "ds")
    assert [len(e) for e in ds] == [3, 2, 1]
    truth = inner.env.log
    np.testing.assert_array_equal(ds[1].observations[0], truth[1]["reset"][0])


def test_step_after_done_without_reset_is_dropped(tmp_path):
    inner = SpaceEnv(spaces.Box(-1, 1, (2,)), spaces.Discrete(2), lengths=(2,), truncate_every=0)
    with CollectingWrapper(inner, tmp_path / "ds") as env:
        env.reset(seed=0)
        env.step(0)
        env.step(0)  # terminated
        env.step(0)  # undefined in Gymnasium: not recorded
    ds = load_dataset(tmp_path / "ds")
    assert [len(e) for e in ds] == [2]


@pytest.mark.parametrize("compression", [None, "auto"])
def test_large_info_column_appearing_mid_shard(tmp_path, compression):
    """A large-row column (written chunk by chunk) that starts late in a shard reads back with zeros and
    a False mask before it appears."""

    def info_fn(ep, t, done):
        return {"cam": np.full((32, 32, 3), t + 10 * ep, np.uint8)} if t >= 3 else {}

    inner = SpaceEnv(spaces.Box(-1, 1, (2,)), spaces.Discrete(2), lengths=(5, 40), truncate_every=0, info_fn=info_fn)
    with CollectingWrapper(inner, tmp_path / "ds", compression=compression) as env:
        run_episodes(env, 4)
    ds = load_dataset(tmp_path / "ds")
    for k, ep in enumerate(ds):
        cam, mask = ep.infos["cam"], ep.infos["_cam"]
        assert mask.tolist() == [t >= 3 for t in range(len(ep) + 1)]
        for t in range(len(ep) + 1):
            assert (cam[t] == (t + 10 * k if t >= 3 else 0)).all()
