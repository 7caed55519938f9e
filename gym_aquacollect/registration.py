"""Gymnasium registration of gym_aquacollect's environments.

Contents:
    * :data:`ENV_IDS` - the ids registered.
    * :func:`register_envs` - register them (idempotent). ``import gym_aquacollect`` calls it, so
      ``gym.make("gym_aquacollect:AquaCollect/Replay-v0", dataset=path)`` works in a fresh interpreter
      (Gymnasium imports the module named before ``:``). It is also the ``gymnasium.envs`` entry point
      declared in ``pyproject.toml``, which only Gymnasium 0.29 reads (1.x ignores that group).

Example:
    >>> import gymnasium as gym
    >>> register_envs()
    >>> gym.spec("AquaCollect/Replay-v0").entry_point
    'gym_aquacollect.replay:ReplayEnv'
"""

from __future__ import annotations

import gymnasium as gym

__all__ = ["register_envs", "ENV_IDS"]

ENV_IDS = ("AquaCollect/Replay-v0",)


def register_envs() -> None:
    """Register ``AquaCollect/Replay-v0`` unless it is registered already."""
    if "AquaCollect/Replay-v0" not in gym.registry:
        gym.register(
            id="AquaCollect/Replay-v0",
            entry_point="gym_aquacollect.replay:ReplayEnv",
            nondeterministic=False,
        )
