"""CollectingVectorWrapper over the Isaac Lab stand-in: recorded episodes equal the env's ground truth."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from _peers import require

from gym_aquacollect import CollectingVectorWrapper, load_dataset

torch = require("torch")

from gym_aquacollect.testing.fake_isaaclab import FakeEnvCfg, FakeSceneCfg  # noqa: E402
from gym_aquacollect.wrappers.isaaclab import CollectingIsaacLabWrapper  # noqa: E402


def _run(tmp_path, steps=23, inference=False, **cfg_kw):
    cfg = FakeEnvCfg(scene=FakeSceneCfg(num_envs=4), **cfg_kw)
    inner = gym.make("Isaac-Fake-v0", cfg=cfg)
    env = CollectingVectorWrapper(inner, tmp_path / "d", chunk_steps=5)
    assert isinstance(env, CollectingIsaacLabWrapper)
    out = env.reset(seed=0)
    assert out[0] is inner.unwrapped.obs_buf
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        a = torch.rand((4, cfg.action_dim), generator=gen) * 2 - 1
        if inference:
            with torch.inference_mode():
                out = env.step(a)
        else:
            out = env.step(a)
        assert out[2] is inner.unwrapped.reset_terminated and out[4] is inner.unwrapped.extras
    env.close()
    return inner.unwrapped, load_dataset(tmp_path / "d")


def _by_key(ds):
    return {(ep.metadata["env_index"], int(ep.observations["policy"][0, 1])): ep for ep in ds}


@pytest.mark.parametrize("workflow", ["manager", "direct"])
def test_recorded_episodes_match_ground_truth_with_final_obs(tmp_path, workflow):
    # sub-env 0 ends every step, 1 and 2 together, 3 by time-out only (15/14 steps), 3rd episode of 2 is
    # terminated and timed out on the same step
    horizon = 15 if workflow == "manager" else 14  # max_episode_length 15; direct times out one step early
    fake, ds = _run(tmp_path, workflow=workflow, terminate_schedule=[[1], [2, 5], [2, horizon], [0]],
                    compute_final_obs=True, critic_dim=3, fresh_reward=True)
    got = _by_key(ds)
    n_truth = 0
    for env_eps in fake.ground_truth_episodes():
        for gt in env_eps:
            ep = got.pop((gt.env_index, gt.episode_id))
            n_truth += 1
            assert len(ep) == len(gt)
            pol = torch.stack([o["policy"] for o in gt.observations]).numpy()
            np.testing.assert_array_equal(ep.observations["policy"], pol)
            np.testing.assert_array_equal(ep.observations["critic"],
                                          torch.stack([o["critic"] for o in gt.observations]).numpy())
            np.testing.assert_array_equal(ep.actions, torch.stack(gt.actions).numpy())
            np.testing.assert_allclose(ep.rewards, torch.stack(gt.rewards).numpy())
            assert ep.terminations.tolist() == [bool(x) for x in gt.terminated]
            if gt.done:
                assert ep.truncations.tolist() == [bool(x) for x in gt.truncated]
                assert "final_observation" not in ep.metadata
            else:
                assert ep.metadata["interrupted"] == "close"
    assert not got and n_truth == len(ds)
    assert any(ep.terminations[-1] and ep.truncations[-1] for ep in ds)


def test_without_final_obs_the_episode_says_so_and_nothing_is_invented(tmp_path):
    fake, ds = _run(tmp_path, terminate_schedule=[[3], [4], [0], [0]], version="2.3", inference=True)
    for ep in ds:
        pol = ep.observations["policy"]
        if ep.metadata.get("interrupted"):
            assert "final_observation" not in ep.metadata
            assert pol[:, 2].tolist() == list(range(len(ep) + 1))
            continue
        assert ep.metadata["final_observation"] == "missing"
        assert pol[:-1, 2].tolist() == list(range(len(ep)))
        assert not pol[-1].any(), "the missing final obs must not be the next episode's first obs"
    assert {len(ep) for ep in ds if ep.metadata["env_index"] == 0 and not ep.metadata.get("interrupted")} == {3}


def test_recorded_values_survive_in_place_overwrites_and_downstream_mutation(tmp_path):
    cfg = FakeEnvCfg(scene=FakeSceneCfg(num_envs=2), terminate_schedule=[2, 3], compute_final_obs=True)
    inner = gym.make("Isaac-Fake-v0", cfg=cfg)
    env = CollectingVectorWrapper(inner, tmp_path / "d")
    obs, _ = env.reset()
    for _ in range(6):
        obs, rew, term, trunc, extras = env.step(torch.ones(2, 2))
        obs["policy"] = torch.clamp(obs["policy"], -0.5, 0.5)  # like rl_games' _process_obs
        rew.fill_(-99.0)
        term.fill_(False)
    env.close()
    ds = load_dataset(tmp_path / "d")
    gt = inner.unwrapped.ground_truth_episodes()
    assert [len(e) for e in gt[0]][:3] == [2, 2, 2]
    ep = next(e for e in ds if e.metadata["env_index"] == 0)
    assert ep.terminations.tolist() == [False, True] and (ep.rewards > -99).all()
    assert ep.observations["policy"][-1, 2] == 2  # unclamped step index


def test_teacher_sees_privileged_critic_group(tmp_path):
    def teacher(obs):  # uses the privileged "critic" group
        return obs["critic"][:, :2] * 2.0

    cfg = FakeEnvCfg(scene=FakeSceneCfg(num_envs=3), terminate_schedule=[2, 3, 4], critic_dim=4, action_dim=2,
                     compute_final_obs=True)
    env = CollectingVectorWrapper(gym.make("Isaac-Fake-v0", cfg=cfg), tmp_path / "d", chunk_steps=4,
                                  teacher=teacher)
    env.reset(seed=0)
    for _ in range(9):
        env.step(torch.ones(3, 2))
    env.close()
    ds = load_dataset(tmp_path / "d")
    assert len(ds) >= 6
    for ep in ds:
        ta = ep.extras["teacher_actions"]
        np.testing.assert_allclose(ta, ep.observations["critic"][:-1, :2] * 2.0)
        np.testing.assert_allclose(ep.actions, 1.0)
