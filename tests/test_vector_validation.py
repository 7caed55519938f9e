"""A batched value that does not match its space raises at the step where it happens (naming the key,
expected and actual shape/dtype), for Gymnasium vector envs and Isaac Lab-style envs, and the dataset
on disk stays valid: the open episodes are stored as they were, recording resumes after reset()."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from _peers import require
from gymnasium.vector import VectorWrapper

from gym_aquacollect import CollectingVectorWrapper, load_dataset
from gym_aquacollect.spaces import SpaceMismatchError
from gym_aquacollect.testing import check_counting_episode, make_counting_vector_env

LENGTHS = [[4], [3], [5], [2]]


class Corrupt(VectorWrapper):
    """Replaces the observation returned by step number ``at`` with ``fn(obs)``."""

    def __init__(self, env, at, fn):
        super().__init__(env)
        self.at, self.fn, self.t = at, fn, 0

    def step(self, actions):
        obs, *rest = self.env.step(actions)
        self.t += 1
        return (self.fn(obs) if self.t == self.at else obs, *rest)


def _run_corrupted(tmp_path, fn, match, dict_obs=False, actions=None, **kw):
    venv = Corrupt(make_counting_vector_env(LENGTHS, dict_obs=dict_obs), at=3, fn=fn)
    env = CollectingVectorWrapper(venv, tmp_path / "d", chunk_steps=4, **kw)
    env.reset(seed=0)
    good = np.zeros(4, dtype=np.int64)
    env.step(good)
    env.step(good)
    with pytest.raises(SpaceMismatchError, match=match):
        env.step(good if actions is None else actions)
    env.step(good)  # not recorded: awaiting reset
    env.reset()
    for _ in range(3):
        env.step(good)
    env.close()
    ds = load_dataset(tmp_path / "d")
    for ep in ds:
        i = ep.metadata["env_index"]
        check_counting_episode(ep, LENGTHS[i], env_index=i, complete=not ep.metadata.get("interrupted"))
    cut = [ep for ep in ds if ep.metadata.get("interrupted") == "invalid_step"]
    # steps 1-2 are stored; the episodes open at the bad step are stored truncated with their 2 steps
    assert sorted((ep.metadata["env_index"], len(ep)) for ep in cut) == [(0, 2), (1, 2), (2, 2)]
    assert all(ep.metadata["truncated"] for ep in cut)
    # nothing from the bad step or the one after it; after reset() 3 steps each, less sub-env 3's
    # NEXT_STEP reset step (its episodes last 2 steps)
    assert sum(len(ep) for ep in ds) == 2 * 4 + (3 * 4 - 1)
    assert [ep.metadata["env_index"] for ep in ds if not ep.metadata.get("interrupted")] == [3, 3, 1]


def test_broadcastable_wrong_shape_raises_and_dataset_stays_valid(tmp_path):
    _run_corrupted(tmp_path, lambda o: o[:1], r"batched observation: expected shape \(4, 3\) dtype float32.*"
                   r"got shape \(1, 3\)")


def test_wrong_dtype_raises(tmp_path):
    _run_corrupted(tmp_path, lambda o: o.astype(np.complex64), r"expected shape \(4, 3\) dtype float32.*complex64")


def test_wrong_dtype_raises_under_strict_policy(tmp_path):
    _run_corrupted(tmp_path, lambda o: o.astype(np.float64), r"dtype float32.*got shape \(4, 3\) dtype float64",
                   dtype_policy="strict")


def test_float_actions_for_a_discrete_space_raise(tmp_path):
    _run_corrupted(tmp_path, lambda o: o, r"batched action: expected shape \(4,\) dtype int64.*float64",
                   actions=np.zeros(4))


def test_missing_dict_key_raises(tmp_path):
    _run_corrupted(tmp_path, lambda o: {"ids": o["ids"]}, r"key set does not match.*missing \['pos'\]",
                   dict_obs=True)


def test_dict_leaf_with_wrong_shape_names_the_key(tmp_path):
    _run_corrupted(tmp_path, lambda o: {"ids": o["ids"], "pos": o["pos"][:, :1]},
                   r"batched observation\['pos'\]: expected shape \(4, 2\).*got shape \(4, 1\)", dict_obs=True)


def test_same_step_final_obs_of_wrong_shape_raises(tmp_path):
    class BadFinal(VectorWrapper):
        def step(self, actions):
            obs, rew, term, trunc, infos = self.env.step(actions)
            if "final_obs" in infos:
                fo = infos["final_obs"].copy()
                for i in np.flatnonzero(infos["_final_obs"]):
                    fo[i] = fo[i][:2]
                infos = {**infos, "final_obs": fo}
            return obs, rew, term, trunc, infos

    env = CollectingVectorWrapper(BadFinal(make_counting_vector_env(LENGTHS, autoreset_mode="SameStep")),
                                  tmp_path / "d")
    env.reset(seed=0)
    env.step(np.zeros(4, dtype=np.int64))
    with pytest.raises(SpaceMismatchError, match=r"infos\['final_obs'\]\[3\]: expected shape \(3,\).*got shape \(2,\)"):
        env.step(np.zeros(4, dtype=np.int64))  # sub-env 3 ends on its 2nd step
    env.close()
    ds = load_dataset(tmp_path / "d")
    assert sorted(len(ep) for ep in ds) == [1, 1, 1, 1]
    assert {ep.metadata["interrupted"] for ep in ds} == {"invalid_step"}


def test_reward_vector_of_wrong_shape_raises(tmp_path):
    class BadReward(VectorWrapper):
        def step(self, actions):
            obs, rew, *rest = self.env.step(actions)
            return (obs, rew[:1], *rest)

    env = CollectingVectorWrapper(BadReward(make_counting_vector_env(LENGTHS)), tmp_path / "d")
    env.reset(seed=0)
    with pytest.raises(SpaceMismatchError, match=r"batched rewards: expected shape \(4,\).*got shape \(1,\)"):
        env.step(np.zeros(4, dtype=np.int64))
    env.close()
    assert len(load_dataset(tmp_path / "d")) == 0


# -- Isaac Lab path ------------------------------------------------------------------------------------
def _isaac(tmp_path, fn, match, **kw):
    torch = require("torch")
    from gym_aquacollect.testing.fake_isaaclab import FakeEnvCfg, FakeSceneCfg

    class CorruptIsaac(gym.Wrapper):
        t = 0

        def step(self, action):
            obs, *rest = self.env.step(action)
            self.t += 1
            return (fn(obs) if self.t == 3 else obs, *rest)

    cfg = FakeEnvCfg(scene=FakeSceneCfg(num_envs=4), terminate_schedule=[[10]] * 4, critic_dim=3)
    env = CollectingVectorWrapper(CorruptIsaac(gym.make("Isaac-Fake-v0", cfg=cfg)), tmp_path / "d",
                                  chunk_steps=4, **kw)
    env.reset(seed=0)
    a = torch.zeros(4, cfg.action_dim)
    env.step(a)
    env.step(a)
    with pytest.raises(SpaceMismatchError, match=match):
        env.step(a)
    env.step(a)
    env.reset()
    env.step(a)
    env.close()
    ds = load_dataset(tmp_path / "d")
    assert sorted((ep.metadata.get("interrupted"), len(ep)) for ep in ds) == [("close", 1)] * 4 + [("invalid_step", 2)] * 4


def test_isaac_broadcastable_obs_raises(tmp_path):
    _isaac(tmp_path, lambda o: {**o, "policy": o["policy"][:1].clone()},
           r"batched observation\['policy'\]: expected shape \(4, \d+\) dtype float32.*got shape \(1, \d+\)")


def test_isaac_missing_group_raises(tmp_path):
    _isaac(tmp_path, lambda o: {"policy": o["policy"]}, r"missing \['critic'\]")


def test_isaac_wrong_dtype_raises_under_strict_policy(tmp_path):
    _isaac(tmp_path, lambda o: {**o, "critic": o["critic"].double()},
           r"batched observation\['critic'\]: expected shape \(4, 3\) dtype float32.*dtype float64",
           dtype_policy="strict")
