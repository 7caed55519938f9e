"""Where CollectingVectorWrapper goes in an Isaac Lab train.py for skrl and rsl_rl: right after gym.make,
under the library's wrapper. Tested with the real skrl 2.1.1 wrapper, the real Isaac Lab 3.0
``RslRlVecEnvWrapper`` and rsl_rl 5.5.1's ``OnPolicyRunner``, over the Isaac Lab stand-in env."""

from __future__ import annotations

import runpy
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gym_aquacollect import CollectingVectorWrapper, load_dataset  # noqa: E402
from gym_aquacollect.testing.fake_isaaclab import FakeEnvCfg, FakeSceneCfg  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _check_against_ground_truth(fake, ds):
    """Every complete recorded episode is exactly the raw task's episode (obs, actions, rewards, flags)."""
    truth = {(gt.env_index, gt.episode_id): gt for env_eps in fake.ground_truth_episodes() for gt in env_eps}
    n = 0
    for ep in ds:
        if ep.metadata.get("interrupted"):
            continue
        obs = ep.observations["policy"] if isinstance(ep.observations, dict) else ep.observations
        gt = truth[(ep.metadata["env_index"], int(obs[0, 1]))]
        assert len(ep) == len(gt)
        np.testing.assert_array_equal(obs[:-1], torch.stack([o["policy"] for o in gt.observations[:-1]]).numpy())
        np.testing.assert_array_equal(ep.actions, torch.stack(gt.actions).numpy())
        np.testing.assert_allclose(ep.rewards, torch.stack(gt.rewards).numpy(), rtol=1e-6)
        assert bool(ep.terminations[-1]) == bool(gt.terminated[-1]) and bool(ep.truncations[-1]) == bool(gt.truncated[-1])
        n += 1
    return n


def test_skrl_wrapper_over_collecting_wrapper(tmp_path):
    from skrl.envs.wrappers.torch import wrap_env

    cfg = FakeEnvCfg(scene=FakeSceneCfg(num_envs=4), terminate_schedule=[[3], [5, 7], [0], [4]])
    raw = gym.make("Isaac-Fake-v0", cfg=cfg)
    env = CollectingVectorWrapper(raw, tmp_path / "skrl")  # right after gym.make: the raw task
    env = wrap_env(env, wrapper="isaaclab")                 # skrl's wrapper on top, last in the chain
    assert type(env).__name__ == "IsaacLabWrapper" and env.num_envs == 4
    obs, _ = env.reset()
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):  # what skrl's trainers do: one reset, then step
        actions = torch.rand((4, 2), generator=gen) * 2 - 1
        obs, rew, term, trunc, info = env.step(actions)
        assert rew.shape == (4, 1) and term.shape == (4, 1)  # skrl's view is unchanged by the recorder
    env.close()
    ds = load_dataset(tmp_path / "skrl")
    assert _check_against_ground_truth(raw.unwrapped, ds) >= 15
    assert ds.statistics()["total_steps"] == 4 * 40


def _rsl_cfg():
    return {"num_steps_per_env": 8, "save_interval": 1000, "obs_groups": {"actor": ["policy"], "critic": ["policy"]},
            "algorithm": {"class_name": "PPO", "num_learning_epochs": 1, "num_mini_batches": 1},
            "actor": {"class_name": "MLPModel", "hidden_dims": [16],
                      "distribution_cfg": {"class_name": "GaussianDistribution"}},
            "critic": {"class_name": "MLPModel", "hidden_dims": [16]}, "run_name": "", "logger": "tensorboard"}


def test_rsl_rl_runner_over_collecting_wrapper(tmp_path, monkeypatch):
    import isaaclab_rl.rsl_rl.vecenv_wrapper as vw
    from isaaclab_rl.rsl_rl import RslRlVecEnvWrapper
    from rsl_rl.runners import OnPolicyRunner

    # Isaac Lab's wrapper accepts only real ManagerBasedRLEnv / DirectRLEnv instances (importing those needs
    # warp-lang and Isaac Sim); the stand-in is neither, so only this type check is bypassed
    monkeypatch.setattr(vw, "check_env_type", lambda env, **kw: None)
    cfg = FakeEnvCfg(scene=FakeSceneCfg(num_envs=4), terminate_schedule=[[3], [5, 7], [0], [4]])
    raw = gym.make("Isaac-Fake-v0", cfg=cfg)
    env = CollectingVectorWrapper(raw, tmp_path / "rsl")
    env = RslRlVecEnvWrapper(env)  # calls env.reset() itself
    runner = OnPolicyRunner(env, _rsl_cfg(), log_dir=None, device="cpu")
    runner.learn(num_learning_iterations=3)
    env.close()
    ds = load_dataset(tmp_path / "rsl")
    assert ds.statistics()["total_steps"] == 3 * 8 * 4
    assert _check_against_ground_truth(raw.unwrapped, ds) >= 10


def test_rsl_rl_recorder_above_the_wrapper_is_refused(tmp_path):
    """The other order (recorder outside rsl_rl's wrapper) is not a gymnasium env: a clear error."""
    import isaaclab_rl.rsl_rl.vecenv_wrapper as vw

    old = vw.check_env_type
    vw.check_env_type = lambda env, **kw: None
    try:
        wrapped = vw.RslRlVecEnvWrapper(gym.make("Isaac-Fake-v0", cfg=FakeEnvCfg(scene=FakeSceneCfg(num_envs=2))))
        with pytest.raises(TypeError, match="gymnasium.Env"):
            CollectingVectorWrapper(wrapped, tmp_path / "x")
    finally:
        vw.check_env_type = old


@pytest.mark.parametrize("script", ["isaac_skrl.py", "isaac_rsl_rl.py"])
def test_examples_run(script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    ds = load_dataset(ns["PATH"])
    assert ds.total_steps > 0 and ds.statistics()["complete_episodes"] > 0
