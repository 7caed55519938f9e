"""CollectingVecEnv under real Stable-Baselines3: PPO.learn over DummyVecEnv / SubprocVecEnv, VecNormalize order."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

sb3 = pytest.importorskip("stable_baselines3")
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.monitor import Monitor  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize  # noqa: E402

from gym_aquacollect import load_dataset  # noqa: E402
from gym_aquacollect.integrations.sb3 import CollectingVecEnv  # noqa: E402

N = 4


def _monitored(max_episode_steps=None):
    def make():
        return Monitor(gym.make("CartPole-v1", max_episode_steps=max_episode_steps))

    return make


def _is_cartpole_terminal(obs: np.ndarray) -> bool:
    x, theta = float(obs[0]), float(obs[2])
    return abs(x) > 2.4 or abs(theta) > 12 * 2 * np.pi / 360


@pytest.mark.parametrize("vec_cls", [DummyVecEnv, SubprocVecEnv])
def test_ppo_learn_dataset_matches_monitor(tmp_path, vec_cls):
    kw = {"start_method": "fork"} if vec_cls is SubprocVecEnv else {}
    # short time limit so that both terminated and time-limit-truncated episodes occur
    inner = vec_cls([_monitored(max_episode_steps=40)] * N, **kw)
    venv = CollectingVecEnv(inner, tmp_path / "ds", metadata={"algo": "ppo"})
    model = PPO("MlpPolicy", venv, n_steps=128, batch_size=128, n_epochs=1, seed=0, verbose=0, device="cpu")
    model.learn(total_timesteps=N * 128 * 3)
    monitor_returns = venv.env_method("get_episode_rewards")
    monitor_lengths = venv.env_method("get_episode_lengths")
    venv.close()

    ds = load_dataset(tmp_path / "ds")
    stats = ds.statistics()
    # the episodes still running when learn() ended: sub-envs whose steps are not all in Monitor's episodes
    running = sum(sum(ls) < 128 * 3 for ls in monitor_lengths)
    assert stats["interrupted_episodes"] == running and stats["interrupted_by"] == ({"close": running} if running else {})
    assert stats["total_steps"] == N * 128 * 3
    complete = [ep for ep in ds if not ep.metadata.get("interrupted")]
    assert len(complete) == sum(len(r) for r in monitor_returns) > 10
    for i in range(N):
        mine = [ep for ep in complete if ep.metadata["env_index"] == i]
        assert [float(ep.rewards.sum()) for ep in mine] == pytest.approx(monitor_returns[i])
        assert [len(ep) for ep in mine] == monitor_lengths[i]
        # the final row of an episode carries Monitor's episode summary (its final-step info)
        for ep in mine:
            assert ep.infos["episode"]["r"][-1] == pytest.approx(float(ep.rewards.sum()), abs=1e-5)
    n_term = n_trunc = 0
    for ep in complete:
        if ep.terminations[-1]:
            n_term += 1
            assert _is_cartpole_terminal(ep.observations[-1]), "a terminated episode must end on its true final obs"
            assert not ep.truncations[-1]
        else:
            n_trunc += 1
            assert ep.truncations[-1] and len(ep) == 40  # TimeLimit.truncated -> truncated
            assert not _is_cartpole_terminal(ep.observations[-1])
        assert not _is_cartpole_terminal(ep.observations[0]) and np.all(np.abs(ep.observations[0]) <= 0.05)
    assert n_term and n_trunc
    # the dataset's complete-episode figures are Monitor's
    flat = [r for rs in monitor_returns for r in rs]
    assert stats["avg_episode_reward"] == pytest.approx(np.mean(flat))
    assert stats["min_episode_length"] == min(min(ls) for ls in monitor_lengths if ls)
    assert ds.metadata["metadata"] == {"algo": "ppo"}
    assert sorted(ep.metadata["seed"] for ep in ds if ep.metadata["seed"] is not None) == list(range(N))  # PPO(seed=0)


def test_recorded_actions_and_seeds(tmp_path):
    venv = CollectingVecEnv(DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2), tmp_path / "ds")
    venv.seed(7)
    obs0 = venv.reset()
    actions = []
    for t in range(30):
        a = np.array([t % 2, (t + 1) % 2])
        actions.append(a)
        venv.step(a)
    venv.close()
    ds = load_dataset(tmp_path / "ds")
    by_env = {ep.metadata["env_index"]: ep for ep in ds if ep.metadata.get("seed") is not None}
    for i in (0, 1):
        ep = by_env[i]
        assert ep.metadata["seed"] == 7 + i
        ref, _ = gym.make("CartPole-v1").reset(seed=7 + i)
        np.testing.assert_array_equal(ep.observations[0], ref)
        np.testing.assert_array_equal(ep.observations[0], obs0[i])
        np.testing.assert_array_equal(ep.actions, np.array(actions)[: len(ep), i])


def _raw_first_obs(seed):
    return gym.make("CartPole-v1").reset(seed=seed)[0]


def test_vecnormalize_order_raw_below_normalized_above(tmp_path):
    # VecNormalize(CollectingVecEnv(venv)): raw observations and rewards are recorded
    below = VecNormalize(CollectingVecEnv(DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2), tmp_path / "raw"))
    below.seed(3)
    seen = below.reset()
    for _ in range(60):
        below.step(np.array([0, 1]))
    below.close()
    ds = load_dataset(tmp_path / "raw")
    ep0 = next(ep for ep in ds if ep.metadata["env_index"] == 0)
    np.testing.assert_array_equal(ep0.observations[0], _raw_first_obs(3))
    assert not np.allclose(seen[0], _raw_first_obs(3))  # the agent saw normalized values
    assert set(np.unique(np.concatenate([ep.rewards for ep in ds]))) == {1.0}

    # CollectingVecEnv(VecNormalize(venv)): what the agent sees is recorded
    above = CollectingVecEnv(VecNormalize(DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2)), tmp_path / "norm")
    above.seed(3)
    seen = above.reset()
    for _ in range(60):
        above.step(np.array([0, 1]))
    above.close()
    ds = load_dataset(tmp_path / "norm")
    ep0 = next(ep for ep in ds if ep.metadata["env_index"] == 0)
    np.testing.assert_allclose(ep0.observations[0], seen[0])
    assert not np.allclose(ep0.observations[0], _raw_first_obs(3))
    assert not set(np.unique(np.concatenate([ep.rewards for ep in ds]))) <= {1.0}


def test_refuses_non_sb3_env(tmp_path):
    with pytest.raises(TypeError, match="Stable-Baselines3 VecEnv"):
        CollectingVecEnv(gym.make_vec("CartPole-v1", num_envs=2), tmp_path / "x")
