"""Issue 9, items 8-9: seeds in episode metadata are true; a second run keeps its own metadata."""

from __future__ import annotations

import socket

import gymnasium as gym
import numpy as np

from gym_aquacollect import CollectingVectorWrapper, CollectingWrapper, load_dataset


def _record(path, metadata, n_steps=60, seed=0):
    env = CollectingWrapper(gym.make("CartPole-v1"), path, metadata=metadata)
    env.reset(seed=seed)
    for _ in range(n_steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    env.close()
    return env.collector.writer.writer_id


def test_a_second_run_keeps_its_own_metadata_with_its_episodes(tmp_path):
    a = _record(tmp_path / "ds", {"policy": "random", "run": "A"})
    b = _record(tmp_path / "ds", {"policy": "expert", "run": "B"}, seed=1)
    ds = load_dataset(tmp_path / "ds")
    runs = {}
    for ep in ds:
        run = ep.metadata["run"]
        runs.setdefault(run["writer_id"], set()).add(run["metadata"]["run"])
        assert run["host"] == socket.gethostname() and run["started"]
    assert runs == {a: {"A"}, b: {"B"}}
    # the first run's episodes are not labelled with the second run's metadata, nor vice versa
    assert sum(ep.metadata["run"]["metadata"]["policy"] == "expert" for ep in ds) == \
        sum(1 for ep in ds if ep.metadata["run"]["writer_id"] == b) > 0


def test_sync_vector_env_seeds_reproduce_each_episode(tmp_path):
    env = CollectingVectorWrapper(gym.make_vec("CartPole-v1", num_envs=3, vectorization_mode="sync"),
                                  tmp_path / "ds")
    env.reset(seed=10)
    for _ in range(5):
        env.step(np.zeros(3, np.int64))
    env.close()
    ds = load_dataset(tmp_path / "ds")
    assert len(ds) == 3
    for ep in ds:
        seed = ep.metadata["seed"]
        assert seed == 10 + ep.metadata["env_index"]
        obs, _ = gym.make("CartPole-v1").reset(seed=seed)
        np.testing.assert_array_equal(ep.observations[0], obs)  # the stored seed reproduces it


def test_native_vector_env_stores_no_false_seed(tmp_path):
    """make_vec's native CartPole shares one RNG: seed + index reproduces nothing, so it is not stored."""
    env = CollectingVectorWrapper(gym.make_vec("CartPole-v1", num_envs=3), tmp_path / "ds")
    env.reset(seed=10)
    for _ in range(5):
        env.step(np.zeros(3, np.int64))
    env.close()
    ds = load_dataset(tmp_path / "ds")
    for ep in ds:
        assert ep.metadata["seed"] is None and ep.metadata["vector_seed"] == 10
        obs, _ = gym.make("CartPole-v1").reset(seed=10 + ep.metadata["env_index"])
        if ep.metadata["env_index"]:
            assert not np.array_equal(ep.observations[0], obs)  # what today's metadata would claim


def test_isaac_batch_seed_is_not_a_per_episode_seed(tmp_path):
    import torch

    from gym_aquacollect.testing.fake_isaaclab import FakeEnvCfg, FakeSceneCfg

    cfg = FakeEnvCfg(scene=FakeSceneCfg(num_envs=2))
    env = CollectingVectorWrapper(gym.make("Isaac-Fake-v0", cfg=cfg), tmp_path / "ds")
    env.reset(seed=5)
    for _ in range(3):
        env.step(torch.zeros(2, 2))
    env.close()
    for ep in load_dataset(tmp_path / "ds"):
        assert ep.metadata["seed"] is None and ep.metadata["vector_seed"] == 5
