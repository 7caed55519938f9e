"""Record the raw Isaac Lab task while skrl trains on it (the insertion point of skrl's train.py).

In Isaac Lab's ``scripts/reinforcement_learning/skrl/train.py`` the chain is ``gym.make`` ->
(``RecordVideo``) -> ``SkrlVecEnvWrapper``; ``CollectingVectorWrapper`` goes right after ``gym.make``.
Here the task is the CPU stand-in ``Isaac-Fake-v0`` so the script runs without Isaac Sim; replace the
``gym.make`` line with your task. skrl's trainer does what the loop at the end does (reset once, step).
"""

import gymnasium as gym
import torch
from skrl.envs.wrappers.torch import wrap_env

from gym_aquacollect import CollectingVectorWrapper
from gym_aquacollect.testing.fake_isaaclab import FakeEnvCfg

PATH = "data/isaac-skrl"
env = gym.make("Isaac-Fake-v0", cfg=FakeEnvCfg())  # train.py: gym.make(args.task, cfg=env_cfg, ...)
env = CollectingVectorWrapper(env, path=PATH)       # records the raw task
env = wrap_env(env, wrapper="isaaclab")              # skrl's wrapper stays last (SkrlVecEnvWrapper does this)
obs, info = env.reset()
for _ in range(100):                                 # trainer.train() steps the env like this
    obs, reward, terminated, truncated, info = env.step(torch.rand(env.num_envs, 2) * 2 - 1)
env.close()                                          # stores open episodes, finalizes the dataset
