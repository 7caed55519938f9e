"""Collectors behind CollectingVectorWrapper: TrajectoryCollector decides every sub-env episode (criteria,
predicate, top-k), BufferCollector samples real transitions of every sub-env, schedules apply, and
collectors the batched path cannot honour are refused at construction."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from gym_aquacollect import CollectingVectorWrapper, load_dataset
from gym_aquacollect.collectors import BaseCollector, BufferCollector, RLCollector, TrajectoryCollector
from gym_aquacollect.testing import expected_length, make_counting_vector_env

LENGTHS = [[3], [1, 4], [5, 2], [2, 6]]
ENDS = ["terminate", "truncate", "both", "terminate"]
STEPS = 23


def _record(tmp_path, name, collector=None, mode="NextStep", steps=STEPS, **kw):
    venv = make_counting_vector_env(LENGTHS, autoreset_mode=mode, end=ENDS)
    with CollectingVectorWrapper(venv, None if collector else tmp_path / name, collector=collector,
                                 chunk_steps=4, **kw) as env:
        env.reset(seed=0)
        rng = np.random.default_rng(1)
        for _ in range(steps):
            env.step(rng.integers(0, 2, 4))
    return load_dataset(collector.dataset_path if collector else tmp_path / name)


def _ids(ep):
    return int(ep.observations[0, 0]), int(ep.observations[0, 1])


def _summary(ds):
    return {_ids(ep): ep for ep in ds}


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_trajectory_criteria_keep_exactly_the_matching_episodes(tmp_path, mode):
    ref = _summary(_record(tmp_path, "ref", mode=mode))
    crit = {"min_length": 2, "max_length": 5, "min_reward": 1.0, "allowed_completion_types": ["done"]}
    c = TrajectoryCollector(name="f", save_path=tmp_path, trajectory_filter_criteria=crit)
    got = _summary(_record(tmp_path, "f", collector=c, mode=mode))

    def passes(ep):
        return (2 <= len(ep) <= 5 and float(ep.rewards.sum()) >= 1.0 and bool(ep.terminations[-1])
                and not ep.metadata.get("interrupted"))

    want = {k for k, ep in ref.items() if passes(ep)}
    assert want and len(want) < len(ref)  # the filter matters here
    assert set(got) == want
    for k in want:  # whole, identical episodes
        np.testing.assert_array_equal(got[k].observations, ref[k].observations)
        np.testing.assert_array_equal(got[k].actions, ref[k].actions)
        assert got[k].metadata["env_index"] == k[0]
    st = c.get_trajectory_statistics()
    assert st["total_trajectories"] == len(want)
    assert st["rejected_trajectories"] == len(ref) - len(want)
    assert st["total_seen"] == len(ref)
    lengths = [len(ref[k]) for k in want]
    assert st["trajectory_lengths"]["min"] == min(lengths) and st["trajectory_lengths"]["max"] == max(lengths)
    assert st["rejection_reasons"]["completion_type"] == sum(1 for ep in ref.values() if not ep.terminations[-1]
                                                             or ep.metadata.get("interrupted"))
    ds_stats = c.get_dataset_statistics()
    assert ds_stats["total_episodes"] == len(want) and ds_stats["total_steps"] == sum(lengths)


def test_trajectory_predicate_and_top_k(tmp_path):
    ref = _summary(_record(tmp_path, "ref"))
    seen = []

    def pred(t):  # needs the episode's data: keep sub-envs 1 and 2 only
        seen.append(t["length"])
        assert t["observations"].shape == (t["length"] + 1, 3) and len(t["actions"]) == t["length"]
        return int(t["observations"][0, 0]) in (1, 2)

    c = TrajectoryCollector(name="p", save_path=tmp_path, predicate=pred, keep_top_k=3)
    got = _summary(_record(tmp_path, "p", collector=c))
    cand = sorted(((float(ep.rewards.sum()), -i), k) for i, (k, ep) in enumerate(
        sorted(ref.items(), key=lambda kv: kv[1].id)) if k[0] in (1, 2))
    want = {k for _, k in cand[-3:]}
    assert set(got) == want
    assert len(seen) == len(ref)  # asked once per finished episode
    st = c.get_trajectory_statistics()
    assert st["total_trajectories"] == 3
    assert st["rejection_reasons"]["predicate"] == sum(1 for k in ref if k[0] not in (1, 2))
    assert st["rejection_reasons"]["top_k"] == len(cand) - 3


def test_trajectory_collector_on_native_cartpole(tmp_path):
    def run(path, collector=None):
        env = CollectingVectorWrapper(gym.make_vec("CartPole-v1", num_envs=8), path, collector=collector)
        env.reset(seed=3)
        rng = np.random.default_rng(0)
        for _ in range(120):
            env.step(rng.integers(0, 2, 8))
        env.close()
        return load_dataset(collector.dataset_path if collector else path)

    ref = run(tmp_path / "ref")
    c = TrajectoryCollector(name="cp", save_path=tmp_path, trajectory_filter_criteria={"min_length": 20})
    got = run(None, c)
    want = [(ep.metadata["env_index"], ep.observations[0].tobytes()) for ep in ref if len(ep) >= 20]
    assert 0 < len(want) < len(ref)
    assert sorted((ep.metadata["env_index"], ep.observations[0].tobytes()) for ep in got) == sorted(want)
    assert c.get_dataset_statistics()["total_episodes"] == len(want)


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_buffer_samples_are_real_transitions_of_every_sub_env(tmp_path, mode):
    buf = BufferCollector(name="b", save_path=tmp_path)
    ds = _record(tmp_path, "b", collector=buf, mode=mode, steps=40)
    assert len(buf) == ds.total_steps  # every transition reached the ring (and the disk)
    b = buf.sample(2000, seed=0)
    obs, nxt = b["obs"], b["next_obs"]
    np.testing.assert_array_equal(nxt[:, :2], obs[:, :2])  # same sub-env, same episode: no cross-episode pair
    np.testing.assert_array_equal(nxt[:, 2], obs[:, 2] + 1)  # next_obs follows obs
    np.testing.assert_allclose(b["reward"], obs[:, 2] + 0.5 * b["action"])
    env_i, ep_id = obs[:, 0].astype(int), obs[:, 1].astype(int)
    length = np.array([expected_length(LENGTHS[i], e) for i, e in zip(env_i, ep_id)])
    last = nxt[:, 2] == length
    ends = np.array(ENDS)[env_i]
    np.testing.assert_array_equal(b["terminated"], last & (ends != "truncate"))
    np.testing.assert_array_equal(b["truncated"], last & (ends != "terminate"))
    assert last.any() and (~last).any()  # final observations (SAME_STEP: from infos["final_obs"]) are sampled
    assert set(env_i.tolist()) == {0, 1, 2, 3}
    assert buf.get_dataset_statistics()["total_episodes"] == len(ds)


def test_buffer_ring_keeps_the_newest_transitions(tmp_path):
    buf = BufferCollector(name="b", save_path=tmp_path, max_buffer_size=30)
    ds = _record(tmp_path, "b", collector=buf, steps=60)
    assert len(buf) == buf.capacity <= 30 and ds.total_steps > 100  # all of it is on disk
    b = buf.sample(500, seed=1)
    # samples come from the newest transitions only: per sub-env, its latest episodes
    newest = {i: max(int(e.observations[0, 1]) for e in ds if e.metadata["env_index"] == i) for i in range(4)}
    assert all(newest[int(o[0])] - int(o[1]) <= 8 for o in b["obs"])
    assert min(newest.values()) > 8  # so the check above excludes the old episodes


def test_buffer_collector_on_native_cartpole_samples_recorded_pairs(tmp_path):
    buf = BufferCollector(name="cp", save_path=tmp_path)
    env = CollectingVectorWrapper(gym.make_vec("CartPole-v1", num_envs=4), collector=buf)
    env.reset(seed=0)
    for _ in range(100):
        env.step(env.action_space.sample())
    env.close()
    ds = load_dataset(buf.dataset_path)
    pairs = {(e.observations[t].tobytes(), int(e.actions[t]), e.observations[t + 1].tobytes())
             for e in ds for t in range(len(e))}
    b = buf.sample(300, seed=0)
    assert all((o.tobytes(), int(a), n.tobytes()) in pairs for o, a, n in zip(b["obs"], b["action"], b["next_obs"]))


def test_schedule_keeps_only_scheduled_episodes(tmp_path):
    ref = _record(tmp_path, "ref")
    c = RLCollector(name="s", save_path=tmp_path, schedule=lambda k: k % 2 == 0)
    got = _record(tmp_path, "s", collector=c)
    assert 0 < len(got) < len(ref)
    st = c.get_dataset_statistics()
    assert st["total_episodes"] == len(got) and st["skipped_episodes"] == len(ref) - len(got)
    # every stored episode is whole (contiguous steps 0..T)
    for ep in got:
        np.testing.assert_array_equal(ep.observations[:, 2], np.arange(len(ep) + 1))


def test_unsupported_collectors_are_refused_at_construction(tmp_path):
    venv = make_counting_vector_env(LENGTHS)
    with pytest.raises(TypeError, match="step_callbacks"):
        CollectingVectorWrapper(venv, collector=RLCollector(name="x", save_path=tmp_path,
                                                            step_callbacks=[lambda c, s: None]))

    class KeepsBlocks(BaseCollector):
        def _on_block(self, block):
            pass

    with pytest.raises(TypeError, match=r"KeepsBlocks overrides \['_on_block'\].*batched_mode"):
        CollectingVectorWrapper(venv, collector=KeepsBlocks(name="y", save_path=tmp_path))
    venv.close()
