"""The seed document's snippets, with only their imports changed, run and record what they describe."""

from __future__ import annotations

import sys
import textwrap
import types

import gymnasium as gym
import numpy as np
import pytest

from gym_aquacollect import (
    BufferCollector,
    RLCollector,
    TrajectoryCollector,
    UnitConfig,
    env_info,
    load_dataset,
)
from gym_aquacollect.collectors import BaseCollector
from gym_aquacollect.collectors.units import GymnasiumWrapper
from gym_aquacollect.spaces import SpaceMismatchError


class LoggingGymnasiumWrapper(GymnasiumWrapper):
    """The seed env adapter, logging every value it returns (the ground truth)."""

    log: list[dict] = []

    def reset(self, **kw):
        obs, info = super().reset(**kw)
        type(self).log.append({"reset": obs["state"][0, 0].copy(), "steps": []})
        return obs, info

    def step(self, action):
        out = super().step(action)
        type(self).log[-1]["steps"].append(
            (int(np.asarray(action["action"]).reshape(())), out[0]["state"][0, 0].copy(),
             float(out[1]["reward"].reshape(())), bool(out[2].reshape(())), bool(out[3].reshape(()))))
        return out


QUICK_START = '''
import numpy as np
from gym_aquacollect.collectors import RLCollector
from seed_test_envs import GymnasiumWrapper

# Create environment
env = GymnasiumWrapper("CartPole-v1")
env_info = env.getEnvInfo()

# Create collector
collector = RLCollector(
    name="my_collector",
    save_path="./data",
    max_buffer_size=100000,
    enable_trajectory_buffer=True
)

# Initialize with environment info
collector.initialize_configs(env_info)
collector.start_collection()

# Collect data
observation, info = env.reset()
for step in range(1000):
    action = {'action': np.random.randint(0, 2, size=(1, 1, 1))}
    next_observation, reward, done, truncated, info = env.step(action)

    collector.collect_step(
        observation=observation,
        action=action,
        reward=reward,
        next_observation=next_observation,
        done=done,
        truncated=truncated,
        info=info
    )

    observation = next_observation
    if done or truncated:
        observation, info = env.reset()

# End collection and save
collector.end_collection()
'''


@pytest.fixture
def seed_envs(monkeypatch, tmp_path):
    mod = types.ModuleType("seed_test_envs")
    mod.GymnasiumWrapper = LoggingGymnasiumWrapper
    monkeypatch.setitem(sys.modules, "seed_test_envs", mod)
    monkeypatch.chdir(tmp_path)
    LoggingGymnasiumWrapper.log = []
    np.random.seed(0)
    return LoggingGymnasiumWrapper.log


def _assert_matches_log(ds, log):
    expected = [ep for ep in log if ep["steps"]]  # a reset followed by nothing is not stored
    assert len(ds) == len(expected)
    for ep, want in zip(ds, expected):
        steps = want["steps"]
        np.testing.assert_array_equal(ep.observations, np.stack([want["reset"]] + [s[1] for s in steps]))
        np.testing.assert_array_equal(ep.actions, [s[0] for s in steps])
        np.testing.assert_array_equal(ep.rewards, [s[2] for s in steps])
        np.testing.assert_array_equal(ep.terminations, [s[3] for s in steps])
        trunc = [s[4] for s in steps]
        if not (steps[-1][3] or steps[-1][4]):  # open at end_collection: stored as truncated
            assert ep.metadata["interrupted"] == "close"
            trunc[-1] = True
        np.testing.assert_array_equal(ep.truncations, trunc)


def test_quick_start_records_exactly_what_the_env_returned(seed_envs, tmp_path):
    ns: dict = {}
    exec(compile(QUICK_START, "seed-quick-start", "exec"), ns)
    collector = ns["collector"]
    ds = load_dataset(tmp_path / "data" / "my_collector")
    assert ds.total_steps == 1000
    assert isinstance(ds.action_space, gym.spaces.Discrete) and ds.observation_space.shape == (4,)
    _assert_matches_log(ds, seed_envs)
    # every episode but the last ended by termination (CartPole never truncates within 1000 random steps
    # unless an episode reaches 500 steps); the last one, open at end_collection, is stored truncated
    assert all(ep.terminations[-1] for ep in list(ds)[:-1])
    last = ds[len(ds) - 1]
    assert last.terminations[-1] or last.metadata.get("interrupted") == "close"
    stats = collector.get_dataset_statistics()
    assert stats["total_steps"] == 1000
    assert stats["total_episodes"] == len(ds)
    assert stats["avg_episode_length"] == pytest.approx(1000 / len(ds))
    assert stats["avg_episode_reward"] == pytest.approx(float(np.mean(ds.episode_returns)))
    assert ds[0].observations.dtype == np.float32 and ds[0].actions.dtype == np.int64


def test_trajectory_filtering_snippet_keeps_exactly_long_terminated_episodes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # ---- the seed's "Trajectory Collection with Filtering" (imports changed) ----
    from gym_aquacollect.collectors import TrajectoryCollector

    # Create collector with filtering
    trajectory_filter = {
        'min_reward': 100.0,
        'min_length': 10,
        'allowed_completion_types': ['done']
    }

    collector = TrajectoryCollector(
        name="filtered_trajectories",
        save_path="./trajectories",
        enable_trajectory_filtering=True,
        trajectory_filter_criteria=trajectory_filter
    )
    # ---- end of snippet; drive it with CartPole and a policy of varying quality ----
    env = gym.make("CartPole-v1")
    collector.initialize_configs(env_info(env))
    collector.start_collection()
    rng = np.random.default_rng(0)
    truth = []
    for ep in range(12):
        obs, info = env.reset(seed=ep)
        eps = [1.0, 0.05, 0.2][ep % 3]
        obs_log = [obs]
        while True:
            a = int(rng.integers(2)) if rng.random() < eps else int(obs[2] + obs[3] > 0)
            nxt, r, term, trunc, info = env.step(a)
            collector.collect_step(observation=obs, action=a, reward=r, next_observation=nxt, done=term,
                                   truncated=trunc, info=info)
            obs = nxt
            obs_log.append(obs)
            if term or trunc:
                break
        truth.append((ep, len(obs_log) - 1, term, np.stack(obs_log)))
    collector.end_collection()
    kept = [t for t in truth if t[2] and t[1] >= 100 and t[1] >= 10]
    assert 0 < len(kept) < len(truth)
    ds = load_dataset(tmp_path / "trajectories" / "filtered_trajectories")
    assert [len(ep) for ep in ds] == [t[1] for t in kept]
    for ep, t in zip(ds, kept):
        np.testing.assert_array_equal(ep.observations, t[3])
    st = collector.get_trajectory_statistics()
    assert st["total_trajectories"] == len(kept)
    assert st["trajectory_lengths"]["min"] == min(t[1] for t in kept)
    assert st["trajectory_rewards"]["max"] == max(t[1] for t in kept)
    assert st["rejected_trajectories"] == len(truth) - len(kept)
    assert st["rejection_reasons"]["completion_type"] == sum(1 for t in truth if not t[2])
    assert st["rejection_reasons"]["min_reward"] == sum(1 for t in truth if t[1] < 100)


BUFFER_SNIPPET_CHILD = textwrap.dedent("""
    import gymnasium as gym
    from gym_aquacollect import env_info, load_dataset
    # ---- the seed's "Buffer Management" (imports changed) ----
    from gym_aquacollect.collectors import BufferCollector

    # Create buffer collector with memory monitoring
    collector = BufferCollector(
        name="efficient_buffer",
        save_path="./buffers",
        max_buffer_size=1000000,
        enable_memory_monitoring=True,
        memory_limit_mb=2048,
        compression_enabled=True
    )

    # Enable async processing
    collector.enable_async_processing()
    # ---- end of snippet ----
    env = gym.make("CartPole-v1")
    collector.initialize_configs(env_info(env))
    obs, _ = env.reset(seed=0)
    for _ in range(3000):
        a = int(env.action_space.sample())
        nxt, r, term, trunc, info = env.step(a)
        collector.collect_step(observation=obs, action=a, reward=r, next_observation=nxt, done=term, truncated=trunc)
        obs = nxt
        if term or trunc:
            obs, _ = env.reset()
    assert len(collector) == 3000
    batch = collector.sample(256, seed=1)
    assert batch["obs"].shape == (256, 4) and batch["action"].shape == (256,)
    stats = collector.get_dataset_statistics()
    assert stats["buffer_size"] == 3000 and stats["memory_limit_mb"] == 2048
    collector.end_collection()
    ds = load_dataset("buffers/efficient_buffer")
    assert ds.total_steps == 3000
    assert ds.metadata.get("collector") == "BufferCollector"
    print("OK")
""")


def test_buffer_management_snippet(tmp_path):
    """The seed's snippet in a process of its own, as a user runs it: its ``memory_limit_mb=2048`` is a
    budget for the whole process, which the test runner's own (after hundreds of tests) may exceed."""
    import os
    import subprocess

    out = subprocess.run([sys.executable, "-c", BUFFER_SNIPPET_CHILD], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stderr[-3000:]


ISAAC = dict(
    observation_cfg={
        'proprioceptive': {'name': 'proprioceptive', 'dtype': 'float32', 'single_shape': (48,), 'size': 10000},
        'visual': {'name': 'visual', 'dtype': 'float32', 'single_shape': (84, 84, 3), 'size': 10000},
    },
    action_cfg={
        'joint_actions': {'name': 'joint_actions', 'dtype': 'float32', 'single_shape': (12,), 'size': 10000},
    },
)


@pytest.mark.parametrize("as_objects", [False, True])
def test_isaac_lab_unit_config_example(tmp_path, as_objects):
    isaac_config = ISAAC
    if as_objects:
        isaac_config = {k: {n: UnitConfig(**u) for n, u in v.items()} for k, v in ISAAC.items()}
    # ---- the seed's Isaac Lab example ----
    collector = RLCollector(
        name="isaac_lab_collector",
        save_path=str(tmp_path / "isaac_data"),
        max_buffer_size=200000,
        async_collection=True
    )
    # ----
    collector.initialize_configs(isaac_config)
    rng = np.random.default_rng(0)

    def obs():  # the seed's layout: (num_machines, num_envs, *single_shape)
        return {"proprioceptive": rng.standard_normal((1, 1, 48), dtype=np.float32),
                "visual": rng.random((1, 1, 84, 84, 3), dtype=np.float32)}

    o = obs()
    sent = [o]
    for t in range(30):
        act = {"joint_actions": rng.standard_normal((1, 1, 12), dtype=np.float32)}
        nxt = obs()
        collector.collect_step(observation=o, action=act, reward={"reward": np.array([[[0.5]]])},
                               next_observation=nxt, done=np.array([[t == 19]]), truncated=np.array([[False]]))
        sent.append((act, nxt))
        o = nxt
        if t == 19:
            o = obs()
            sent.append(o)
    collector.end_collection()
    ds = load_dataset(collector.dataset_path)
    assert [len(e) for e in ds] == [20, 10]
    assert set(ds.observation_space.spaces) == {"proprioceptive", "visual"}
    ep = ds[0]
    assert ep.observations["visual"].shape == (21, 84, 84, 3)
    np.testing.assert_array_equal(ep.observations["proprioceptive"][0], sent[0]["proprioceptive"][0, 0])
    np.testing.assert_array_equal(ep.actions["joint_actions"][3], sent[4][0]["joint_actions"][0, 0])
    np.testing.assert_array_equal(ep.observations["visual"][20], sent[20][1]["visual"][0, 0])
    assert ep.rewards.tolist() == [0.5] * 20 and ep.terminations[-1]


def test_vector_snippet_constructs_with_default_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    collector = BufferCollector(name="vector_collector", buffer_batch_size=1000, enable_memory_monitoring=True)
    env = gym.make("CartPole-v1")
    collector.initialize_configs(env_info(env))
    obs, _ = env.reset(seed=3)
    for _ in range(50):
        nxt, r, term, trunc, _ = env.step(0)
        collector.collect_step(observation=obs, action=0, reward=r, next_observation=nxt, done=term, truncated=trunc)
        obs = env.reset()[0] if term or trunc else nxt
    collector.end_collection()
    assert collector.dataset_path.parent.name == "aquacollect-data"
    assert load_dataset(tmp_path / collector.dataset_path).total_steps == 50


def test_seed_style_values_errors_name_the_unit(tmp_path):
    c = RLCollector(name="x", save_path=tmp_path)
    c.initialize_configs(ISAAC)
    good = {"proprioceptive": np.zeros((1, 1, 48), np.float32), "visual": np.zeros((1, 1, 84, 84, 3), np.float32)}
    with pytest.raises(SpaceMismatchError, match="joint_actions"):
        c.collect_step(observation=good, action={"joint_actions": np.zeros((1, 1, 11), np.float32)}, reward=0.0,
                       next_observation=good)
    with pytest.raises(ValueError, match="reward"):
        c.collect_step(observation=good, action={"joint_actions": np.zeros((1, 1, 12), np.float32)},
                       reward=np.zeros((1, 2, 1)), next_observation=good)
    c.end_collection()
    with pytest.raises(KeyError, match="observation_cfg"):
        RLCollector(name="y", save_path=tmp_path).initialize_configs({"action_cfg": ISAAC["action_cfg"]})
    with pytest.raises(KeyError, match="single_shape"):
        RLCollector(name="z", save_path=tmp_path).initialize_configs(
            {"observation_cfg": {"s": {"dtype": "float32"}}, "action_cfg": ISAAC["action_cfg"]})


def test_collectors_are_exported_at_top_level():
    import gym_aquacollect as ga
    from gym_aquacollect import collectors

    for name in ("BaseCollector", "RLCollector", "TrajectoryCollector", "BufferCollector", "UnitConfig"):
        assert getattr(ga, name) is getattr(collectors, name)
    assert issubclass(TrajectoryCollector, BaseCollector) and issubclass(BufferCollector, BaseCollector)
    u = UnitConfig(name="state", dtype=np.float32, single_shape=(4,), size=10000)
    assert (u.name, u.dtype, u.single_shape, u.size) == ("state", np.dtype(np.float32), (4,), 10000)
    assert textwrap.dedent(QUICK_START).count("import") == 3
