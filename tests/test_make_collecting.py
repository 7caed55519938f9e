"""make_collecting(env, path) picks the recording wrapper for every kind of env, and what it records loads back."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from _peers import require

from gym_aquacollect import (
    CollectingMultiAgentWrapper,
    CollectingVectorWrapper,
    CollectingWrapper,
    load_dataset,
    make_collecting,
)
from gym_aquacollect.testing import CountingParallelEnv


def test_single_env(tmp_path):
    env = make_collecting(gym.make("CartPole-v1"), tmp_path / "d")
    assert type(env) is CollectingWrapper
    env.reset(seed=0)
    for _ in range(7):
        env.step(0)
    env.close()
    assert load_dataset(tmp_path / "d").total_steps == 7


def test_vector_env(tmp_path):
    env = make_collecting(gym.make_vec("CartPole-v1", num_envs=3), tmp_path / "d", chunk_steps=4)
    assert type(env) is CollectingVectorWrapper
    env.reset(seed=0)
    for _ in range(5):
        env.step(np.zeros(3, dtype=np.int64))
    env.close()
    assert load_dataset(tmp_path / "d").total_steps == 15


def test_pettingzoo_parallel_env(tmp_path):
    env = make_collecting(CountingParallelEnv((2, 0, 4), 6), tmp_path / "d")
    assert type(env) is CollectingMultiAgentWrapper
    env.reset(seed=0)
    while env.agents:
        env.step({a: 0 for a in env.agents})
    env.close()
    ds = load_dataset(tmp_path / "d")
    assert ds.total_episodes == 1 and ds.total_steps == 6


def test_isaac_lab_tasks(tmp_path):
    require("torch")
    from gym_aquacollect.testing.fake_isaaclab import FakeEnvCfg, FakeMARLEnvCfg, FakeSceneCfg
    from gym_aquacollect.wrappers import CollectingIsaacLabMARLWrapper, CollectingIsaacLabWrapper

    inner = gym.make("Isaac-Fake-v0", cfg=FakeEnvCfg(scene=FakeSceneCfg(num_envs=2)))
    env = make_collecting(inner, tmp_path / "a", chunk_steps=2)
    assert type(env) is CollectingIsaacLabWrapper
    env.close()
    inner = gym.make("Isaac-Fake-MARL-v0", cfg=FakeMARLEnvCfg(scene=FakeSceneCfg(num_envs=2)))
    env = make_collecting(inner, tmp_path / "b", chunk_steps=2)
    assert type(env) is CollectingIsaacLabMARLWrapper
    env.close()


def test_not_an_env_is_a_clear_error(tmp_path):
    with pytest.raises(TypeError, match="cannot record int: expected a gymnasium.Env"):
        make_collecting(3, tmp_path / "d")
    assert not (tmp_path / "d").exists()
