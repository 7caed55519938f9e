"""Fidelity of the test stand-ins themselves (isaaclab.md §8.8 items 1-6, counting envs, PettingZoo env).

If these fail, every recorder test built on them is meaningless, so they check the stand-ins against the
behaviour of the real things they imitate (Isaac Lab's step contract, Gymnasium's vector autoreset).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from _peers import require

from gym_aquacollect.testing import CountingEnv, check_counting_episode, make_counting_vector_env
from gym_aquacollect.testing.fake_isaaclab import (
    FakeEnvCfg,
    FakeIsaacLabEnv,
    FakeIsaacLabMARLEnv,
    FakeMARLEnvCfg,
    FakeSceneCfg,
)


@pytest.fixture
def torch():
    """The fake Isaac Lab envs step on torch tensors: only their tests need torch."""
    return require("torch")


def _cfg(n=4, **kw) -> FakeEnvCfg:
    return FakeEnvCfg(scene=FakeSceneCfg(num_envs=n), **kw)


# -- §8.8 items 1-4: creation, wrappers, spec -----------------------------------------------------------
def test_gym_make_returns_order_enforcing_without_attribute_forwarding(torch):
    env = gym.make("Isaac-Fake-v0", cfg=_cfg(3))
    assert isinstance(env, gym.wrappers.OrderEnforcing)
    assert isinstance(env.unwrapped, FakeIsaacLabEnv)
    with pytest.raises(AttributeError):
        _ = env.num_envs
    assert env.unwrapped.num_envs == 3 and env.get_wrapper_attr("num_envs") == 3
    assert env.unwrapped.is_vector_env is True
    assert isinstance(env.unwrapped.device, str)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(torch.zeros(3, 2))
    with pytest.raises(TypeError):
        gym.vector.VectorWrapper(env)
    with pytest.raises(TypeError):
        env.spec.to_json()  # cfg.reward_fn is a function, like an Isaac Lab term func
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    assert "autoreset_mode" not in FakeIsaacLabEnv.metadata  # class-level dict left untouched
    env.close()


def test_reset_is_keyword_only_and_spaces_match_workflow(torch):
    env = FakeIsaacLabEnv(_cfg(2, critic_dim=4, workflow="direct", version="2.3"))
    with pytest.raises(TypeError):
        env.reset(None, 0)  # seed is keyword-only
    obs, extras = env.reset(seed=3)
    assert set(obs) == {"policy", "critic"} and obs["critic"].shape == (2, 4)
    assert env.observation_space.shape == (2, env.cfg.obs_dim)  # direct: policy only
    assert env.state_space.shape == (2, 4)
    assert "autoreset_mode" not in env.metadata  # 2.3 does not declare it
    manager = FakeIsaacLabEnv(_cfg(2, critic_dim=4))
    assert set(manager.observation_space.spaces) == {"policy", "critic"}


# -- §8.8 item 5: aliasing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("workflow", ["manager", "direct"])
def test_returned_buffers_are_the_same_objects_every_step(workflow, torch):
    env = FakeIsaacLabEnv(_cfg(4, workflow=workflow, terminate_schedule=[1, 2, 3, 0]))
    env.reset()
    out1 = env.step(torch.zeros(4, 2))
    term_values = out1[2].clone()
    out2 = env.step(torch.ones(4, 2))
    assert out1[1] is out2[1] and out1[2] is out2[2] and out1[3] is out2[3] and out1[4] is out2[4]
    assert out1[2] is env.reset_terminated
    # overwritten in place: the first step's terminated values are gone from the object
    assert term_values.tolist() == [True, False, False, False]
    assert out1[2].tolist() == [True, True, False, False]


def test_fresh_reward_direct_returns_new_tensors(torch):
    env = FakeIsaacLabEnv(_cfg(2, workflow="direct", fresh_reward=True))
    env.reset()
    r1 = env.step(torch.zeros(2, 2))[1]
    r2 = env.step(torch.zeros(2, 2))[1]
    assert r1 is not r2 and r1.dtype == torch.float32


# -- §8.8 item 6: same-step autoreset ----------------------------------------------------------------------
def test_same_step_autoreset_and_ids(torch):
    # sub-env 0 ends on every step (also the first after a reset), 1 and 2 end together on step 2,
    # 3 only times out; max_episode_length = ceil(0.25 / (2/120)) = 15 (manager: 15 steps).
    env = FakeIsaacLabEnv(_cfg(4, terminate_schedule=[1, 2, 2, 0]))
    assert env.max_episode_length == 15
    obs, _ = env.reset()
    a = torch.zeros(4, 2)
    obs, rew, term, trunc, extras = env.step(a)
    assert term.tolist() == [True, False, False, False]
    assert obs["policy"][0, :3].tolist() == [0, 1, 0]  # next episode, step 0
    obs, rew, term, trunc, extras = env.step(a)
    assert term.tolist() == [True, True, True, False]
    assert obs["policy"][:3, 1].tolist() == [2, 1, 1] and obs["policy"][:3, 2].tolist() == [0, 0, 0]
    assert obs["policy"][3, :3].tolist() == [3, 0, 2]


def test_terminated_and_truncated_on_the_same_step(torch):
    env = FakeIsaacLabEnv(_cfg(2, terminate_schedule=[15, 3], compute_final_obs=True))
    env.reset()
    for _ in range(15):
        obs, rew, term, trunc, extras = env.step(torch.zeros(2, 2))
    assert term[0] and trunc[0], "episode 0 of sub-env 0 ends terminated and timed out at step 15"
    final = extras["final_obs"]["policy"]
    assert final[0, :3].tolist() == [0, 0, 15]
    gt = env.ground_truth_episodes()[0][0]
    assert len(gt) == 15 and gt.terminated[-1] and gt.truncated[-1]
    assert torch.equal(gt.observations[-1]["policy"], final[0])


def test_final_obs_is_stale_on_later_steps_and_ground_truth_matches(torch):
    env = FakeIsaacLabEnv(_cfg(3, terminate_schedule=[[2, 3], [4], [0]], compute_final_obs=True))
    env.reset()
    finals = []
    for _ in range(6):
        obs, rew, term, trunc, extras = env.step(torch.full((3, 2), 0.5))
        finals.append(extras.get("final_obs"))
    # step 2 (index 1) ends sub-env 0; step 3 has no reset, so the same dict object is still there.
    assert finals[0] is None and finals[1] is not None and finals[2] is finals[1]
    eps = env.ground_truth_episodes()
    assert [len(e) for e in eps[0]] == [2, 3, 1]  # last one still running
    assert [e.done for e in eps[0]] == [True, True, False]
    assert [len(e) for e in eps[1]] == [4, 2] and eps[2][0].done is False
    for env_eps in eps:
        for e in env_eps:
            pol = torch.stack([o["policy"] for o in e.observations])
            assert (pol[:, 1] == e.episode_id).all()
            assert pol[:, 2].tolist() == list(range(len(pol)))
    log = env.ground_truth_log
    assert len(log[0]) == 6 and log[0][1].final_obs is not None and log[0][0].final_obs is None


def test_reset_without_final_obs_never_sets_key_and_logs_are_new_dicts(torch):
    env = FakeIsaacLabEnv(_cfg(2, terminate_schedule=[1, 0]))
    _, extras = env.reset()
    log0 = extras["log"]
    extras2 = env.step(torch.zeros(2, 2))[4]
    assert extras2 is extras and "final_obs" not in extras
    assert extras["log"] is not log0


def test_probabilistic_schedule_is_seeded_and_dict_policy_and_image(torch):
    cfg = dict(terminate_schedule=0.3, seed=7, concatenate_policy=False, image_obs=(4, 5))
    runs = []
    for _ in range(2):
        env = FakeIsaacLabEnv(_cfg(8, **cfg))
        obs, _ = env.reset()
        assert set(obs["policy"]) == {"ids", "state", "image"}
        assert obs["policy"]["image"].dtype == torch.uint8 and obs["policy"]["image"].shape == (8, 4, 5, 3)
        runs.append(torch.stack([env.step(torch.zeros(8, 2))[2].clone() for _ in range(10)]))
    assert torch.equal(runs[0], runs[1]) and runs[0].any()


def test_inference_mode_step_works(torch):
    env = FakeIsaacLabEnv(_cfg(2, terminate_schedule=[2, 0]))
    env.reset()
    with torch.inference_mode():
        env.step(torch.zeros(2, 2))
    env.step(torch.zeros(2, 2))


# -- MARL ---------------------------------------------------------------------------------------------------
def test_marl_subenv_resets_only_when_all_agents_done(torch):
    cfg = FakeMARLEnvCfg(
        scene=FakeSceneCfg(num_envs=3),
        agent_terminate_schedule={"cart": [1, 2, 0], "pendulum": [3, 2, 0]},
        compute_final_obs=True,
    )
    env = gym.make("Isaac-Fake-MARL-v0", cfg=cfg)
    u = env.unwrapped
    assert isinstance(u, FakeIsaacLabMARLEnv)
    assert not hasattr(u, "is_vector_env") and not hasattr(u, "single_observation_space")
    assert u.observation_space("cart").shape == (6,) and u.state_space.shape == (11,)
    obs, extras = env.reset()
    assert set(obs) == {"cart", "pendulum"} and set(extras) == {"cart", "pendulum"}
    act = {"cart": torch.zeros(3, 1), "pendulum": torch.zeros(3, 1)}
    obs, rew, term, trunc, extras = env.step(act)
    assert term["cart"].tolist() == [True, False, False] and u.reset_buf.tolist() == [False] * 3
    assert obs["cart"][0, :4].tolist() == [0, 0, 1, 0]  # the terminated agent keeps acting
    obs, rew, term, trunc, extras = env.step(act)
    assert u.reset_buf.tolist() == [False, True, False]
    assert obs["pendulum"][1, :4].tolist() == [1, 1, 0, 1]
    assert extras["pendulum"]["final_obs"][1, :4].tolist() == [1, 0, 2, 1]
    obs, rew, term, trunc, extras = env.step(act)
    assert u.reset_buf.tolist() == [True, False, False]
    assert u.state().shape == (3, 11)
    eps = u.ground_truth_episodes()
    assert [len(e) for e in eps[0]] == [3] and [len(e) for e in eps[1]] == [2, 1]


# -- counting envs --------------------------------------------------------------------------------------------
def test_counting_env_and_episode_checker():
    env = CountingEnv(env_index=1, episode_lengths=[3], end="both", episode_info=True)
    obs, _ = env.reset()
    rows, acts, rews, terms, truncs = [obs], [], [], [], []
    for a in (1, 0, 1):
        obs, r, te, tr, info = env.step(a)
        rows.append(obs), acts.append(a), rews.append(r), terms.append(te), truncs.append(tr)
    assert info["episode"] == {"l": 3, "r": 0.5 + 1 + 2.5}

    class Ep:
        observations, actions, rewards, terminations, truncations = (
            np.array(rows), np.array(acts), np.array(rews), np.array(terms), np.array(truncs),
        )

    assert check_counting_episode(Ep, [3], "both") == (1, 0)
    Ep.observations = np.array(rows)[[0, 1, 3, 3]]  # a gap: must fail
    with pytest.raises(AssertionError):
        check_counting_episode(Ep, [3], "both")


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_counting_vector_env_modes_behave_like_gymnasium(vectorization):
    same = make_counting_vector_env([[1], [2]], vectorization=vectorization, autoreset_mode="SameStep")
    same.reset()
    obs, rew, term, trunc, infos = same.step(np.array([0, 1]))
    assert term.tolist() == [True, False]
    assert obs[0].tolist() == [0, 1, 0] and infos["final_obs"][0].tolist() == [0, 0, 1]
    assert infos["_final_obs"].tolist() == [True, False]
    same.close()
    nxt = make_counting_vector_env([[1], [2]], vectorization=vectorization)
    nxt.reset()
    obs, *_ = nxt.step(np.array([0, 0]))
    assert obs[0].tolist() == [0, 0, 1]
    obs, rew, term, trunc, infos = nxt.step(np.array([1, 1]))
    assert obs[0].tolist() == [0, 1, 0] and rew[0] == 0.0 and not term[0]  # the reset step
    nxt.close()


def test_pettingzoo_env_passes_parallel_api_test():
    require("pettingzoo")
    from pettingzoo.test import parallel_api_test

    from gym_aquacollect.testing.pettingzoo_env import CountingParallelEnv

    parallel_api_test(CountingParallelEnv(), num_cycles=20)
    env = CountingParallelEnv(agent_lifetimes=(2, 0, 4), max_steps=6)
    env.reset()
    seen = []
    while env.agents:
        _, _, term, trunc, _ = env.step({a: 0 for a in env.agents})
        seen.append(sorted(term))
    assert seen[0] == ["a0", "a1", "a2"] and seen[2] == ["a1", "a2"] and seen[-1] == ["a1"] and len(seen) == 6
