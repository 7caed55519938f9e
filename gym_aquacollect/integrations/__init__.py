"""Integrations with training libraries.

Contents:
    * :mod:`gym_aquacollect.integrations.sb3` - :class:`~gym_aquacollect.integrations.sb3.CollectingVecEnv`, a Stable-Baselines3 ``VecEnvWrapper``.
"""
