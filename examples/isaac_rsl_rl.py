"""Record the raw Isaac Lab task while rsl_rl trains on it (the insertion point of rsl_rl's train.py).

In Isaac Lab's ``scripts/reinforcement_learning/rsl_rl/train.py`` the chain is ``gym.make`` ->
(``RecordVideo``) -> ``RslRlVecEnvWrapper`` -> ``OnPolicyRunner``; ``CollectingVectorWrapper`` goes right
after ``gym.make``. Here the task is the CPU stand-in ``Isaac-Fake-v0`` so the script runs without Isaac
Sim; because ``RslRlVecEnvWrapper`` accepts only real Isaac Lab env classes, its type check is bypassed
for the stand-in (drop that line with a real task).
"""

import gymnasium as gym
import isaaclab_rl.rsl_rl.vecenv_wrapper as vw
from isaaclab_rl.rsl_rl import RslRlVecEnvWrapper
from rsl_rl.runners import OnPolicyRunner

from gym_aquacollect import CollectingVectorWrapper
from gym_aquacollect.testing.fake_isaaclab import FakeEnvCfg

vw.check_env_type = lambda env, **kw: None  # only for the stand-in env

PATH = "data/isaac-rsl-rl"
env = gym.make("Isaac-Fake-v0", cfg=FakeEnvCfg())  # train.py: gym.make(args_cli.task, cfg=env_cfg, ...)
env = CollectingVectorWrapper(env, path=PATH)       # records the raw task
env = RslRlVecEnvWrapper(env)                        # rsl_rl's wrapper stays last
agent_cfg = {"num_steps_per_env": 16, "save_interval": 1000, "obs_groups": {"actor": ["policy"], "critic": ["policy"]},
             "algorithm": {"class_name": "PPO"}, "run_name": "", "logger": "tensorboard",
             "actor": {"class_name": "MLPModel", "hidden_dims": [32], "distribution_cfg": {"class_name": "GaussianDistribution"}},
             "critic": {"class_name": "MLPModel", "hidden_dims": [32]}}
OnPolicyRunner(env, agent_cfg, log_dir=None, device="cpu").learn(num_learning_iterations=5)
env.close()                                          # stores open episodes, finalizes the dataset
