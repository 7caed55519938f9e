"""CollectingVectorWrapper over Gymnasium vector envs: every recorded episode is checked against the
counting env's encoding (sub-env, episode id, step index), in each autoreset mode, sync and async."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, VectorWrapper

from gym_aquacollect import load_dataset
from gym_aquacollect.testing import check_counting_episode, make_counting_vector_env
from gym_aquacollect.wrappers.vector import CollectingVectorWrapper

LENGTHS = [[3], [1, 4], [5, 2], [2]]


def _check_all(ds, lengths, end="terminate"):
    seen: dict[int, list[int]] = {}
    for ep in ds:
        i = ep.metadata["env_index"]
        complete = not ep.metadata.get("interrupted")
        env_ix, ep_id = check_counting_episode(ep, lengths[i], end, env_index=i, complete=complete)
        seen.setdefault(env_ix, []).append(ep_id)
    for i, ids in seen.items():  # every sub-env's episodes, none missing, in order
        assert ids == list(range(len(ids))), f"sub-env {i}: episode ids {ids}"
    return seen


def _expected_lengths(lengths: list[int], steps: int, next_step: bool) -> list[int]:
    """The episode lengths one sub-env produces in ``steps`` vector steps: episode ``e`` lasts
    ``lengths[e % len(lengths)]`` steps; under NEXT_STEP the step after each end is the reset step (no
    transition); the episode still open after the last step is stored at close (if it has any step)."""
    out, t, e = [], 0, 0
    while t < steps:
        n = lengths[e % len(lengths)]
        out.append(min(n, steps - t))
        t += n + (1 if next_step else 0)
        e += 1
    return out


@pytest.mark.parametrize("vectorization", ["sync", "async"])
@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_autoreset_modes_record_contiguous_complete_episodes(tmp_path, vectorization, mode):
    venv = make_counting_vector_env(LENGTHS, vectorization=vectorization, autoreset_mode=mode, episode_info=True,
                                    end=["terminate", "truncate", "both", "terminate"])
    rng = np.random.default_rng(0)
    with CollectingVectorWrapper(venv, tmp_path / "d", chunk_steps=7) as env:
        env.reset(seed=0)
        for _ in range(40):
            env.step(rng.integers(0, 2, 4))
    ds = load_dataset(tmp_path / "d")
    ends = ["terminate", "truncate", "both", "terminate"]
    ids: dict[int, list[int]] = {i: [] for i in range(4)}
    for ep in ds:
        i = ep.metadata["env_index"]
        env_ix, ep_id = check_counting_episode(ep, LENGTHS[i], ends[i], env_index=i,
                                               complete=not ep.metadata.get("interrupted"))
        ids[env_ix].append(ep_id)
        infos = ep.infos
        # info["episode"] exists only on the last row (the final step's info, also in SAME_STEP)
        if ep.metadata.get("interrupted"):
            assert "episode" not in infos or not np.asarray(infos["episode"]["_l"]).any()
        else:
            mask = np.asarray(infos["episode"]["_l"])
            assert mask.tolist() == [False] * len(ep) + [True]
            assert int(infos["episode"]["l"][-1]) == len(ep)
        assert np.asarray(infos["step"]).tolist() == list(range(len(ep) + 1))
    # none missing: per sub-env, exactly the episodes (ids 0, 1, ...) and lengths 40 steps produce
    for i in range(4):
        got = [len(ep) for ep in ds if ep.metadata["env_index"] == i]
        assert ids[i] == list(range(len(got))), f"sub-env {i}: episode ids {ids[i]}"
        assert got == _expected_lengths(LENGTHS[i], 40, mode == "NextStep"), f"sub-env {i}: lengths {got}"
    total = sum(len(ep) for ep in ds)
    if mode == "NextStep":  # the reset steps are not transitions
        assert total < 4 * 40
    else:
        assert total == 4 * 40


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_disabled_mode_with_reset_mask(tmp_path, vectorization):
    venv = make_counting_vector_env(LENGTHS, vectorization=vectorization, autoreset_mode=AutoresetMode.DISABLED)
    env = CollectingVectorWrapper(venv, tmp_path / "d", chunk_steps=5)
    env.reset(seed=1)
    for _ in range(30):
        _, _, term, trunc, _ = env.step(np.ones(4, dtype=np.int64))
        done = term | trunc
        if done.any():
            options = {"reset_mask": done.copy()}
            env.reset(options=options)
            assert "reset_mask" not in options  # the env popped it; we read it before
    env.close()
    ds = load_dataset(tmp_path / "d")
    _check_all(ds, LENGTHS)
    assert sum(len(ep) for ep in ds) == 4 * 30


def test_returns_inner_objects_and_dict_obs(tmp_path):
    class Spy(VectorWrapper):
        def step(self, actions):
            self.last = self.env.step(actions)
            return self.last

        def reset(self, **kw):
            self.last = self.env.reset(**kw)
            return self.last

    spy = Spy(make_counting_vector_env([[2], [3]], dict_obs=True, autoreset_mode="SameStep"))
    env = CollectingVectorWrapper(spy, tmp_path / "d")
    out = env.reset(seed=0)
    assert out is spy.last and isinstance(out[0], dict)
    for _ in range(7):
        out = env.step(np.zeros(2, dtype=np.int64))
        assert out is spy.last and all(a is b for a, b in zip(out, spy.last))
    env.close()
    ds = load_dataset(tmp_path / "d")
    assert len(ds) == 7  # env 0: 3 finished + 1 open; env 1: 2 finished + 1 open
    for ep in ds:
        assert set(ep.observations) == {"ids", "pos"}
        assert ep.observations["ids"].dtype == np.int64
        check_counting_episode(ep, [2] if ep.metadata["env_index"] == 0 else [3],
                               complete=not ep.metadata.get("interrupted"))


def test_full_reset_interrupts_open_episodes_and_zero_step_episodes_are_dropped(tmp_path):
    venv = make_counting_vector_env([[10], [10]])
    env = CollectingVectorWrapper(venv, tmp_path / "d")
    env.reset(seed=0)
    env.step(np.zeros(2, dtype=np.int64))
    env.reset()  # interrupts two 1-step episodes
    env.reset()  # zero-step episodes: not stored
    env.step(np.zeros(2, dtype=np.int64))
    env.step(np.zeros(2, dtype=np.int64))
    env.close()
    ds = load_dataset(tmp_path / "d")
    assert [len(ep) for ep in ds] == [1, 1, 2, 2]
    assert [ep.metadata["interrupted"] for ep in ds] == ["reset", "reset", "close", "close"]
    assert [int(ep.observations[0, 1]) for ep in ds] == [0, 0, 2, 2]
    assert all(ep.metadata["truncated"] and not ep.metadata["terminated"] for ep in ds)


def test_native_cartpole_vector_env(tmp_path):
    import gymnasium as gym

    venv = gym.make_vec("CartPole-v1", num_envs=3)
    env = CollectingVectorWrapper(venv, tmp_path / "cp")
    assert isinstance(env, CollectingVectorWrapper)
    obs, _ = env.reset(seed=0)
    first = obs.copy()
    for _ in range(100):
        env.step(env.action_space.sample())
    env.close()
    ds = load_dataset(tmp_path / "cp")
    assert ds.total_steps <= 300
    by_env = {}
    for ep in ds:
        by_env.setdefault(ep.metadata["env_index"], []).append(ep)
    for i, eps in by_env.items():
        np.testing.assert_array_equal(eps[0].observations[0], first[i])
        # the native env shares one RNG: gym.make(id).reset(seed=i) would not reproduce it (issue 9.8)
        assert eps[0].metadata["seed"] is None and eps[0].metadata["vector_seed"] == 0


def test_non_vector_env_is_rejected():
    import gymnasium as gym

    with pytest.raises(TypeError, match="CollectingWrapper"):
        CollectingVectorWrapper(gym.make("CartPole-v1"))


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_teacher_actions_are_recorded_beside_executed_actions(tmp_path, mode):
    def teacher(obs):  # batched obs (sub-env, episode id, step) -> batched action
        return (obs[:, 2].astype(np.int64) + obs[:, 0].astype(np.int64)) % 2

    venv = make_counting_vector_env(LENGTHS, autoreset_mode=mode)
    with CollectingVectorWrapper(venv, tmp_path / "d", teacher=teacher, chunk_steps=6) as env:
        env.reset(seed=0)
        for _ in range(25):
            env.step(np.zeros(4, dtype=np.int64))
    ds = load_dataset(tmp_path / "d")
    for ep in ds:
        ta = ep.extras["teacher_actions"]
        assert ta.dtype == np.int64 and len(ta) == len(ep)
        # evaluated on the observation each action was taken at
        np.testing.assert_array_equal(ta, teacher(ep.observations[:-1]))
        assert (ep.actions == 0).all()


def test_info_key_missing_from_one_shard_reads_as_absent(tmp_path):
    """Episodes of a shard that never saw an info key still read (zeros, mask False) next to shards that did."""
    venv = make_counting_vector_env([[3], [3]], episode_info=True)
    env = CollectingVectorWrapper(venv, tmp_path / "d")
    env.reset(seed=0)
    env.step(np.zeros(2, dtype=np.int64))  # no "episode" key yet (it comes on the last step)
    env.reset()  # interrupts the 1-step episodes: they end in the first shard
    env.flush()
    for _ in range(3):
        env.step(np.zeros(2, dtype=np.int64))
    env.close()
    ds = load_dataset(tmp_path / "d")
    assert ds.statistics()["shards"] == 2
    first, later = ds[0], ds[2]
    assert len(first) == 1 and "episode" not in first.infos
    np.testing.assert_array_equal(first.column("obs", "infos/episode/_l"), [False, False])
    np.testing.assert_array_equal(first.column("obs", "infos/episode/l"), [0, 0])
    assert later.infos["episode"]["l"][-1] == 3
