"""ReplayEnv (check_env, gym.make in a fresh interpreter), replay_actions, registration."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from gym_aquacollect import ReplayEnv, replay_actions
from gym_aquacollect.replay import ActionMismatchError
from tests._formats_util import cartpole, nested


def test_replay_env_plays_episodes_in_order(tmp_path):
    src = cartpole(3, tmp_path=tmp_path)
    env = ReplayEnv(src)
    for i in list(range(3)) + [0]:  # wraps around after the last episode
        ep = src[i]
        obs, info = env.reset()
        np.testing.assert_array_equal(obs, ep.observations[0])
        for t in range(len(ep)):
            assert env.recorded_action == int(ep.actions[t])
            obs, r, term, trunc, info = env.step(env.action_space.sample())
            np.testing.assert_array_equal(obs, ep.observations[t + 1])
            assert r == ep.rewards[t] and term == ep.terminations[t] and trunc == ep.truncations[t]
        with pytest.raises(gym.error.ResetNeeded):
            env.step(0)
    obs, _ = env.reset(options={"episode": 2})
    np.testing.assert_array_equal(obs, src[2].observations[0])
    obs, _ = env.reset(seed=7)  # a seed rewinds to episode 0
    np.testing.assert_array_equal(obs, src[0].observations[0])


def test_replay_env_infos_respect_masks(tmp_path):
    src = nested(1, tmp_path=tmp_path)
    env = ReplayEnv(src)
    _, info = env.reset()
    assert "sometimes" not in info and info["nested"]["x"] == 0
    seen = []
    for _ in range(len(src[0])):
        *_, info = env.step(env.action_space.sample())
        seen.append("sometimes" in info)
        assert not any(k.startswith("_") for k in info)
    assert seen == list(src[0].infos["_sometimes"][1:])


@pytest.mark.parametrize("which", ["cartpole", "nested"])
def test_check_env_passes(tmp_path, which):
    src = cartpole(3, tmp_path=tmp_path) if which == "cartpole" else nested(2, tmp_path=tmp_path)
    check_env(ReplayEnv(src), skip_render_check=True)
    check_env(gym.make("gym_aquacollect:AquaCollect/Replay-v0", dataset=src.path).unwrapped, skip_render_check=True)


def test_check_actions(tmp_path):
    src = cartpole(1, tmp_path=tmp_path)
    env = ReplayEnv(src, check_actions="raise")
    env.reset()
    good = int(src[0].actions[0])
    env.step(good)
    with pytest.raises(ActionMismatchError, match="step 1"):
        env.step(1 - int(src[0].actions[1]))


def test_gym_make_in_a_fresh_interpreter(tmp_path):
    src = cartpole(2, tmp_path=tmp_path)
    code = (
        "import gymnasium as gym, numpy as np\n"
        f"env = gym.make('gym_aquacollect:AquaCollect/Replay-v0', dataset={str(src.path)!r})\n"
        "obs, _ = env.reset(); n = 0\n"
        "while True:\n"
        "    obs, r, te, tr, _ = env.step(env.action_space.sample()); n += 1\n"
        "    if te or tr: break\n"
        "print(n, obs.tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tmp_path),
                         env={"PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[1]), "PATH": ""})
    assert out.returncode == 0, out.stderr
    n, last = out.stdout.strip().split(" ", 1)
    assert int(n) == len(src[0])
    np.testing.assert_allclose(eval(last), src[0].observations[-1])


def test_replay_actions_reports_determinism_and_divergence(tmp_path):
    src = cartpole(4, tmp_path=tmp_path)
    report = replay_actions(src, "CartPole-v1")
    assert report.ok, str(report)
    assert report.episodes_checked == 4 and report.steps_checked == src.total_steps
    assert report.unseeded_episodes == [1, 2, 3]  # reset in order without a seed, reproduced all the same
    # a different env (gravity changed) diverges, and the report says where
    env = gym.make("CartPole-v1")
    env.unwrapped.gravity = 12.0
    bad = replay_actions(src, env)
    assert not bad.ok
    d = bad.divergences[0]
    assert d.episode_id == 0 and d.field == "observation" and d.step == 1 and d.max_abs_diff > 0
    assert "episode 0 step 1: observation differs" in str(bad)


def test_registration_entry_point_group_declared():
    from importlib import metadata

    import gym_aquacollect.registration as reg

    assert "AquaCollect/Replay-v0" in gym.registry
    assert reg.ENV_IDS == ("AquaCollect/Replay-v0",)
    text = open(__import__("pathlib").Path(__file__).parents[1] / "pyproject.toml").read()
    assert '"gym_aquacollect.registration:register_envs"' in text
    assert 'entry-points."gym_aquacollect.backends"' in text
    # installed metadata declares the Gymnasium entry point that registers the replay env
    eps = [e for e in metadata.entry_points(group="gymnasium.envs") if e.value.startswith("gym_aquacollect")]
    assert [e.value for e in eps] == ["gym_aquacollect.registration:register_envs"]
