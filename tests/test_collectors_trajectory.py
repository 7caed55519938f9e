"""TrajectoryCollector: filters keep exactly the expected episodes; top-k; statistics of rejections."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from gym_aquacollect import CollectingWrapper, TrajectoryCollector, load_dataset
from gym_aquacollect.collectors.filters import TrajectoryFilter

# (length, reward per step, terminated?) per episode: returns are length * reward
EPISODES = [(5, 1.0, True), (30, 4.0, True), (12, 10.0, False), (50, 2.0, True), (8, 20.0, True),
            (40, -1.0, False), (25, 5.0, True), (1, 150.0, True), (60, 2.5, False), (15, 7.0, True)]


class ScriptedEnv(gym.Env):
    """Episode k lasts EPISODES[k][0] steps of reward EPISODES[k][1], then terminates or truncates;
    observations are (episode, t)."""

    observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, episodes=EPISODES):
        self.episodes = episodes
        self.k = -1

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.k += 1
        self.t = 0
        return np.array([self.k, 0], np.float32), {"phase": "reset"}

    def step(self, action):
        self.t += 1
        n, r, term = self.episodes[self.k]
        done = self.t >= n
        info = {"t": self.t} if self.t % 2 else {"t": self.t, "late_key": 1.5}
        return np.array([self.k, self.t], np.float32), r, done and term, done and not term, info


def record(collector, episodes=EPISODES, steps_after=0):
    with CollectingWrapper(ScriptedEnv(list(episodes) + [(10**9, 1.0, True)]), collector=collector) as env:
        for k in range(len(episodes)):
            env.reset(seed=k)
            while True:
                _, _, term, trunc, _ = env.step(1)
                if term or trunc:
                    break
        if steps_after:
            env.reset(seed=len(episodes))
            for _ in range(steps_after):
                env.step(0)
    return load_dataset(collector.dataset_path)


def expected(pred):
    return [k for k, (n, r, term) in enumerate(EPISODES) if pred(n, n * r, term)]


CASES = [
    ({"min_reward": 100.0}, lambda n, ret, term: ret >= 100),
    ({"max_reward": 100.0}, lambda n, ret, term: ret <= 100),
    ({"min_length": 10, "max_length": 40}, lambda n, ret, term: 10 <= n <= 40),
    ({"allowed_completion_types": ["done"]}, lambda n, ret, term: term),
    ({"allowed_completion_types": ["truncated"]}, lambda n, ret, term: not term),
    ({"min_reward": 100.0, "min_length": 10, "allowed_completion_types": ["done"]},
     lambda n, ret, term: ret >= 100 and n >= 10 and term),
    ({"min_reward": 50, "max_reward": 150, "max_length": 30}, lambda n, ret, term: 50 <= ret <= 150 and n <= 30),
]


@pytest.mark.parametrize("criteria,pred", CASES)
def test_filters_keep_exactly_the_expected_episodes(tmp_path, criteria, pred):
    c = TrajectoryCollector(name="t", save_path=tmp_path, trajectory_filter_criteria=criteria)
    ds = record(c)
    want = expected(pred)
    assert [ep.metadata["seed"] for ep in ds] == want
    for ep in ds:
        k = ep.metadata["seed"]
        n, r, term = EPISODES[k]
        assert len(ep) == n and ep.rewards.sum() == pytest.approx(n * r)
        np.testing.assert_array_equal(ep.observations, [[k, t] for t in range(n + 1)])
        assert bool(ep.terminations[-1]) == term and bool(ep.truncations[-1]) == (not term)
        # an info key that appears on some steps only keeps its presence mask through the copy
        assert ep.infos["t"][1:].tolist() == list(range(1, n + 1))
    st = c.get_trajectory_statistics()
    assert st["total_trajectories"] == len(want)
    assert st["rejected_trajectories"] == len(EPISODES) - len(want)
    if want:
        lengths = [EPISODES[k][0] for k in want]
        returns = [EPISODES[k][0] * EPISODES[k][1] for k in want]
        assert st["trajectory_lengths"] == pytest.approx(
            {"mean": np.mean(lengths), "std": np.std(lengths), "min": min(lengths), "max": max(lengths)})
        assert st["trajectory_rewards"]["mean"] == pytest.approx(np.mean(returns))
    assert c.get_dataset_statistics()["total_episodes"] == len(want)


def test_rejection_reasons_count_every_failed_criterion(tmp_path):
    crit = {"min_reward": 100.0, "min_length": 10, "allowed_completion_types": ["done"]}
    c = TrajectoryCollector(name="t", save_path=tmp_path, trajectory_filter_criteria=crit)
    record(c)
    reasons = c.get_trajectory_statistics()["rejection_reasons"]
    assert reasons["min_reward"] == sum(1 for n, r, _ in EPISODES if n * r < 100)
    assert reasons["min_length"] == sum(1 for n, _, _ in EPISODES if n < 10)
    assert reasons["completion_type"] == sum(1 for *_, term in EPISODES if not term)


def test_predicate_sees_the_whole_trajectory(tmp_path):
    seen = []

    def pred(traj):
        seen.append(traj["length"])
        assert traj["observations"].shape == (traj["length"] + 1, 2)
        assert traj["actions"].shape == (traj["length"],)
        return bool(traj["observations"][-1, 1] % 2 == 0)  # even length

    c = TrajectoryCollector(name="t", save_path=tmp_path, predicate=pred)
    ds = record(c)
    assert [ep.metadata["seed"] for ep in ds] == expected(lambda n, ret, term: n % 2 == 0)
    assert seen == [n for n, _, _ in EPISODES]
    assert c.get_trajectory_statistics()["rejection_reasons"] == {"predicate": sum(n % 2 for n, _, _ in EPISODES)}


def test_top_k_by_return_written_in_finish_order(tmp_path):
    c = TrajectoryCollector(name="t", save_path=tmp_path, keep_top_k=3,
                            trajectory_filter_criteria={"allowed_completion_types": ["done"]})
    ds = record(c)
    done = [k for k, e in enumerate(EPISODES) if e[2]]
    best = sorted(sorted(done, key=lambda k: -EPISODES[k][0] * EPISODES[k][1])[:3])
    assert [ep.metadata["seed"] for ep in ds] == best
    st = c.get_trajectory_statistics()
    assert st["rejection_reasons"]["top_k"] == len(done) - 3
    assert [t["return"] for t in c.top_trajectories(2)] == sorted(
        [EPISODES[k][0] * EPISODES[k][1] for k in best], reverse=True)[:2]


def test_open_episode_at_close_is_judged_as_truncated(tmp_path):
    c = TrajectoryCollector(name="t", save_path=tmp_path, trajectory_filter_criteria={"min_length": 20})
    ds = record(c, steps_after=25)
    assert ds[len(ds) - 1].metadata["interrupted"] == "close" and len(ds[len(ds) - 1]) == 25
    c2 = TrajectoryCollector(name="t2", save_path=tmp_path,
                             trajectory_filter_criteria={"allowed_completion_types": ["done"]})
    ds2 = record(c2, steps_after=25)
    assert all(ep.terminations[-1] for ep in ds2)


def test_filtering_disabled_keeps_everything(tmp_path):
    c = TrajectoryCollector(name="t", save_path=tmp_path, enable_trajectory_filtering=False,
                            trajectory_filter_criteria={"min_reward": 1e9})
    assert len(record(c)) == len(EPISODES)


def test_long_episodes_across_blocks_and_flush(tmp_path):
    """Episodes longer than a block are handed over in several pieces and still stored whole."""
    eps = [(3000, 1.0, True), (10, 1.0, True), (2500, 1.0, False)]
    c = TrajectoryCollector(name="t", save_path=tmp_path, block_bytes=4096,
                            trajectory_filter_criteria={"min_length": 100})
    ds = record(c, eps)
    assert [len(e) for e in ds] == [3000, 2500]
    np.testing.assert_array_equal(ds[1].observations[:, 1], np.arange(2501))


def test_invalid_criteria_are_named():
    with pytest.raises(KeyError, match="min_rewrd"):
        TrajectoryFilter({"min_rewrd": 3})
    with pytest.raises(ValueError, match="finished"):
        TrajectoryFilter({"allowed_completion_types": ["finished"]})
    with pytest.raises(ValueError, match="min_length"):
        TrajectoryFilter({"min_length": 10, "max_length": 5})
