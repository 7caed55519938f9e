"""Multi-agent recording: PettingZoo parallel envs (agents leave mid-episode) and the Isaac Lab
DirectMARLEnv stand-in (a sub-env resets only when all agents are done), checked against ground truth."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from _peers import require

from gym_aquacollect import CollectingMultiAgentWrapper, CollectingVectorWrapper, load_dataset

require("pettingzoo")
torch = require("torch")

from gym_aquacollect.testing import CountingParallelEnv  # noqa: E402
from gym_aquacollect.testing.fake_isaaclab import FakeMARLEnvCfg, FakeSceneCfg  # noqa: E402
from gym_aquacollect.wrappers.multiagent import CollectingIsaacLabMARLWrapper  # noqa: E402

LIFETIMES = (2, 0, 4)  # a0 terminates after 2 steps, a1 runs until truncation, a2 terminates after 4
MAX_STEPS = 6


def test_pettingzoo_agents_leaving_mid_episode(tmp_path):
    env = CollectingMultiAgentWrapper(CountingParallelEnv(LIFETIMES, MAX_STEPS), tmp_path / "d")
    rng = np.random.default_rng(0)
    truth = []  # per episode: {agent: [(t, action, reward, term, trunc)]}
    for episode in range(3):
        env.reset(seed=episode if episode == 0 else None)
        steps: dict[str, list] = {a: [] for a in env.possible_agents}
        t = 0
        while env.agents:
            acts = {a: int(rng.integers(0, 2)) for a in env.agents}
            _, rew, term, trunc, _ = env.step(acts)
            for a in acts:
                steps[a].append((t, acts[a], rew[a], term[a], trunc[a]))
            t += 1
        truth.append(steps)
    env.reset()
    env.step({a: 0 for a in env.agents})  # an open episode at close: stored truncated
    env.close()

    ds = load_dataset(tmp_path / "d")
    assert len(ds) == 4 and ds.agents == ["a0", "a1", "a2"]
    assert isinstance(ds.observation_space, gym.spaces.Dict)
    for e, (ep, steps) in enumerate(zip(ds, truth)):
        assert len(ep) == MAX_STEPS and ep.metadata["truncated"] and not ep.metadata["terminated"]
        assert ep.metadata["env_index"] == 0 and "interrupted" not in ep.metadata
        # the shared time axis: every agent's obs row t is (agent, episode, t) while it is present
        total = np.zeros(MAX_STEPS)
        for k, a in enumerate(ds.agents):
            ag = ep.agent(a)
            truth_a = steps[a]
            assert ag.steps.tolist() == [s[0] for s in truth_a]
            assert ag.actions.tolist() == [s[1] for s in truth_a]
            np.testing.assert_allclose(ag.rewards, [s[2] for s in truth_a])
            assert ag.terminations.tolist() == [s[3] for s in truth_a]
            assert ag.truncations.tolist() == [s[4] for s in truth_a]
            expected_obs = [[k, e, t] for t in range(len(truth_a) + 1)]
            assert ag.observations.tolist() == expected_obs
            lived = LIFETIMES[k] or MAX_STEPS
            active = ep.extras["agents"][a]["active"]
            assert active.tolist() == [t < lived for t in range(MAX_STEPS)]
            # absent rows are zeros, present rows aligned in time
            np.testing.assert_array_equal(ep.observations[a][lived + 1:], 0)
            assert ep.observations[a][: lived + 1, 2].tolist() == list(range(lived + 1))
            total[ag.steps] += ag.rewards
            # infos are per agent, with a presence mask
            assert ep.infos[a]["step"][: lived + 1].tolist() == list(range(lived + 1))
        np.testing.assert_allclose(ep.rewards, total)  # episode reward = sum over agents
        assert ep.metadata["return"] == pytest.approx(total.sum())
    last = ds[3]
    assert len(last) == 1 and last.metadata["interrupted"] == "close"
    assert ds[0].metadata["seed"] == 0


def _marl_run(tmp_path, steps=11, chunk_steps=4, teacher=None, **kw):
    cfg = FakeMARLEnvCfg(scene=FakeSceneCfg(num_envs=3), compute_final_obs=True,
                         agent_terminate_schedule={"cart": [1, 2, 0], "pendulum": [3, 2, 0]}, **kw)
    inner = gym.make("Isaac-Fake-MARL-v0", cfg=cfg)
    env = CollectingVectorWrapper(inner, tmp_path / "d", chunk_steps=chunk_steps, teacher=teacher)
    assert isinstance(env, CollectingIsaacLabMARLWrapper)
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        out = env.step({a: torch.rand((3, 1), generator=gen) for a in ("cart", "pendulum")})
        assert out[2] is inner.unwrapped.terminated_dict  # the env's own objects
    env.close()
    return inner.unwrapped, load_dataset(tmp_path / "d")


def test_isaaclab_marl_episodes_match_ground_truth(tmp_path):
    u, ds = _marl_run(tmp_path)
    truth = {(ep.env_index, ep.episode_id): ep for eps in u.ground_truth_episodes() for ep in eps}
    assert ds.agents == ["cart", "pendulum"]
    assert len(ds) == len(truth)
    for ep in ds:
        i = ep.metadata["env_index"]
        eid = int(ep.observations["cart"][0, 1])
        gt = truth[(i, eid)]
        assert len(ep) == len(gt.actions)
        for k, a in enumerate(ds.agents):
            obs = ep.observations[a]
            assert (obs[:, 0] == i).all() and (obs[:, 1] == eid).all() and (obs[:, 3] == k).all()
            assert obs[:, 2].tolist() == list(range(len(ep) + 1))  # includes the true final obs
            np.testing.assert_allclose(obs, np.stack([o[a].numpy() for o in gt.observations]))
            np.testing.assert_allclose(ep.actions[a], np.stack([x[a].numpy() for x in gt.actions]))
            ag = ep.agent(a)
            assert len(ag) == len(ep)  # Isaac Lab agents never leave
            np.testing.assert_allclose(ag.rewards, [float(r[a]) for r in gt.rewards], rtol=1e-6)
            assert ag.terminations.tolist() == [bool(t[a]) for t in gt.terminated]
        np.testing.assert_allclose(ep.rewards, [sum(float(v) for v in r.values()) for r in gt.rewards], rtol=1e-6)
        if not ep.metadata.get("interrupted"):
            assert ep.metadata["terminated"] and ep.terminations[-1]
    # sub-env 0: cart terminates alone at step 1 and keeps acting; the episode ends when pendulum does (3)
    ep0 = [ep for ep in ds if ep.metadata["env_index"] == 0 and not ep.metadata.get("interrupted")]
    assert [len(ep) for ep in ep0] == [3] * len(ep0)
    assert ep0[0].agent("cart").terminations.tolist() == [True, True, True]
    assert ep0[0].agent("pendulum").terminations.tolist() == [False, False, True]
    assert ep0[0].terminations.tolist() == [False, False, True]
    # sub-env 2 never terminates: one open episode, stored truncated at close
    (ep2,) = [ep for ep in ds if ep.metadata["env_index"] == 2]
    assert len(ep2) == 11 and ep2.metadata["interrupted"] == "close"


def test_isaaclab_marl_without_final_obs_says_so(tmp_path):
    cfg = FakeMARLEnvCfg(scene=FakeSceneCfg(num_envs=2), agent_terminate_schedule={"cart": [2, 2], "pendulum": [2, 2]})
    env = CollectingMultiAgentWrapper(gym.make("Isaac-Fake-MARL-v0", cfg=cfg), tmp_path / "d")
    assert isinstance(env, CollectingIsaacLabMARLWrapper)
    env.reset()
    for _ in range(2):
        env.step({a: torch.zeros(2, 1) for a in ("cart", "pendulum")})
    env.close()
    ds = load_dataset(tmp_path / "d")
    assert len(ds) == 2
    for ep in ds:
        assert ep.metadata["final_observation"] == "missing"
        np.testing.assert_array_equal(ep.observations["cart"][-1], 0)  # never the post-reset obs


def test_pettingzoo_rejects_non_parallel_env():
    with pytest.raises(TypeError, match="ParallelEnv"):
        CollectingMultiAgentWrapper(gym.make("CartPole-v1"))
