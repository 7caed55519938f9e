"""What every collector shares: same data, schedules, callbacks, save/load, exports, custom collectors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from gym_aquacollect import BufferCollector, CollectingWrapper, RLCollector, TrajectoryCollector, load_dataset
from gym_aquacollect.collectors import schedules

COLLECTORS = {
    "rl": lambda p, **kw: RLCollector(name="c", save_path=p, **kw),
    "trajectory": lambda p, **kw: TrajectoryCollector(name="c", save_path=p, **kw),
    "buffer": lambda p, **kw: BufferCollector(name="c", save_path=p, max_buffer_size=150, buffer_batch_size=16, **kw),
}


def run(collector, n_episodes=10, extra_steps=7):
    """CartPole episodes reset with seed=i (so metadata['seed'] is the episode index); returns the truth."""
    env = CollectingWrapper(gym.make("CartPole-v1"), collector=collector)
    env.action_space.seed(0)
    truth = []
    for i in range(n_episodes + 1):
        obs, _ = env.reset(seed=i)
        rows, acts = [obs], []
        while True:
            a = int(env.action_space.sample())
            obs, r, term, trunc, _ = env.step(a)
            rows.append(obs)
            acts.append(a)
            if term or trunc or (i == n_episodes and len(acts) == extra_steps):
                break
        truth.append((np.stack(rows), np.asarray(acts)))
    env.close()
    return truth


@pytest.mark.parametrize("kind", COLLECTORS)
def test_every_collector_stores_the_same_episodes(tmp_path, kind):
    c = COLLECTORS[kind](tmp_path)
    truth = run(c)
    ds = load_dataset(c.dataset_path)
    assert len(ds) == len(truth)
    for ep, (obs, acts) in zip(ds, truth):
        np.testing.assert_array_equal(ep.observations, obs)
        np.testing.assert_array_equal(ep.actions, acts)
    assert ds[len(ds) - 1].metadata["interrupted"] == "close"
    stats = c.get_dataset_statistics()
    for k in ("total_steps", "total_episodes", "avg_episode_length", "avg_episode_reward"):
        assert k in stats
    assert stats["total_steps"] == ds.total_steps and stats["total_episodes"] == len(ds)
    assert stats["avg_episode_reward"] == pytest.approx(float(np.mean(ds.episode_returns)))


@pytest.mark.parametrize("kind", COLLECTORS)
def test_callbacks_add_fields_and_metadata(tmp_path, kind):
    def step_cb(collector, step):
        return {"obs_sum": float(np.sum(step["observation"])), "t": step["t"]}

    def episode_cb(collector, summary):
        return {"long": summary["length"] > 20, "idx": summary["episode_index"]}

    c = COLLECTORS[kind](tmp_path, step_callbacks=[step_cb], episode_callbacks=[episode_cb])
    truth = run(c, n_episodes=4)
    ds = load_dataset(c.dataset_path)
    for i, (ep, (obs, _)) in enumerate(zip(ds, truth)):
        np.testing.assert_allclose(ep.extras["obs_sum"], obs[1:].sum(axis=1), rtol=1e-6)
        assert ep.extras["t"].tolist() == list(range(len(ep)))
        assert ep.metadata["long"] == (len(ep) > 20) and ep.metadata["idx"] == i


@pytest.mark.parametrize("kind", COLLECTORS)
@pytest.mark.parametrize("sched,want", [
    (schedules.every_n_episodes(3), [0, 3, 6, 9]),
    (schedules.every_n_episodes(4, offset=1), [1, 5, 9]),
    (schedules.episode_indices([2, 3, 7, 42]), [2, 3, 7]),
])
def test_schedules_choose_the_recorded_episodes(tmp_path, kind, sched, want):
    c = COLLECTORS[kind](tmp_path, schedule=sched)
    truth = run(c)
    ds = load_dataset(c.dataset_path)
    assert [ep.metadata["seed"] for ep in ds] == want
    for ep in ds:
        np.testing.assert_array_equal(ep.observations, truth[ep.metadata["seed"]][0])
    # unrecorded episodes are counted when they end (episode 10 is still open at close)
    assert c.get_dataset_statistics()["skipped_episodes"] == len(truth) - 1 - len(want)


def test_bernoulli_schedule_is_reproducible_and_near_p():
    a, b = schedules.bernoulli(0.3, seed=5), schedules.bernoulli(0.3, seed=5)
    picks = [i for i in range(2000) if a(i)]
    assert picks == [i for i in range(2000) if b(i)]
    assert picks == [i for i in reversed(range(2000)) if b(i)][::-1]  # order of asking does not matter
    assert 500 < len(picks) < 700
    assert not any(schedules.bernoulli(0.0)(i) for i in range(100))
    with pytest.raises(ValueError, match="p must be"):
        schedules.bernoulli(1.5)


def test_time_window_schedule():
    now = [100.0]
    sched = schedules.time_window(10, 20, clock=lambda: now[0])
    seen = []
    for t in (100.0, 109.9, 110.0, 115.0, 119.99, 120.0, 500.0):
        now[0] = t
        seen.append(sched(0))
    assert seen == [False, False, True, True, True, False, False]
    absolute = schedules.time_window(stop=50.0, relative=False, clock=lambda: now[0])
    assert not absolute(0)
    with pytest.raises(ValueError, match="stop"):
        schedules.time_window(5, 5)


def test_save_and_load(tmp_path):
    c = RLCollector(name="c", save_path=tmp_path)
    env = CollectingWrapper(gym.make("CartPole-v1"), collector=c)
    env.reset(seed=0)
    for _ in range(30):
        *_, term, trunc, _ = env.step(0)
        if term or trunc:
            env.reset(seed=1)
    path = c.save()  # durable while still collecting
    assert path == c.dataset_path
    finished = c.get_dataset_statistics()["total_episodes"]
    assert load_dataset(path).total_episodes == finished and c.load().total_episodes == finished
    env.close()
    assert c.load().total_steps == 30


def test_exports_delegate_to_the_dataset(tmp_path):
    """The collector's exporters write what is on disk: here only the episodes the filter kept."""
    c = TrajectoryCollector(name="c", save_path=tmp_path / "d", trajectory_filter_criteria={"min_length": 12})
    truth = run(c, n_episodes=8)
    kept = [t for t in truth if len(t[1]) >= 12]
    assert 0 < len(kept) < len(truth)
    out = c.export_trajectories(tmp_path / "t.npz", format="npz")
    with np.load(out, allow_pickle=False) as f:
        for i, (obs, acts) in enumerate(kept):
            np.testing.assert_array_equal(f[f"episodes/{i}/observations/_"], obs)
            np.testing.assert_array_equal(f[f"episodes/{i}/actions/_"], acts)
        assert f"episodes/{len(kept)}/rewards" not in f.files


def test_custom_collector_example(tmp_path):
    path = Path(__file__).resolve().parents[1] / "examples" / "custom_collector.py"
    spec = importlib.util.spec_from_file_location("custom_collector_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.InMemoryCollector()
    truth = run(c, n_episodes=3)
    assert len(c.episodes) == len(truth)
    for ep, (obs, acts) in zip(c.episodes, truth):
        np.testing.assert_array_equal(ep["observations"], obs)
        np.testing.assert_array_equal(ep["actions"], acts)
    assert c.get_dataset_statistics()["episodes_in_memory"] == len(truth)
