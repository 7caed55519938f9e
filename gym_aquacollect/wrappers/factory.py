"""One factory that picks the recording wrapper for any env.

Contents:
    * :func:`wrapper_class` - the wrapper class for ``env``: a Gymnasium ``VectorEnv`` ->
      :class:`~gym_aquacollect.wrappers.vector.CollectingVectorWrapper`; an Isaac Lab-style batched task
      (``env.unwrapped.is_vector_env``) -> :class:`~gym_aquacollect.wrappers.isaaclab.CollectingIsaacLabWrapper`;
      an Isaac Lab ``DirectMARLEnv`` -> :class:`~gym_aquacollect.wrappers.multiagent.CollectingIsaacLabMARLWrapper`;
      a PettingZoo parallel env -> :class:`~gym_aquacollect.wrappers.multiagent.CollectingMultiAgentWrapper`;
      a ``gymnasium.Env`` -> :class:`~gym_aquacollect.wrappers.single.CollectingWrapper`.
    * :func:`make_collecting` - ``wrapper_class(env)(env, path, **kwargs)``.

``CollectingVectorWrapper(isaac_env)`` and ``CollectingMultiAgentWrapper(isaac_marl_env)`` still return the Isaac Lab
wrapper (the API promises it); they ask :func:`wrapper_class` too, so the rules live here only.

Example:
    >>> import tempfile, gymnasium as gym
    >>> from gym_aquacollect.wrappers import make_collecting
    >>> env = make_collecting(gym.make("CartPole-v1"), tempfile.mkdtemp() + "/a")
    >>> type(env).__name__
    'CollectingWrapper'
    >>> env.close()
    >>> venv = make_collecting(gym.make_vec("CartPole-v1", num_envs=2), tempfile.mkdtemp() + "/b")
    >>> type(venv).__name__
    'CollectingVectorWrapper'
    >>> venv.close()
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
from gymnasium.vector import VectorEnv

from gym_aquacollect.wrappers.isaaclab import CollectingIsaacLabWrapper
from gym_aquacollect.wrappers.multiagent import (
    CollectingIsaacLabMARLWrapper,
    CollectingMultiAgentWrapper,
    _is_isaac_marl,
)
from gym_aquacollect.wrappers.single import CollectingWrapper
from gym_aquacollect.wrappers.vector import CollectingVectorWrapper

__all__ = ["make_collecting", "wrapper_class"]


def wrapper_class(env: Any) -> type:
    """The recording wrapper class for ``env`` (see the module docstring); ``TypeError`` for anything else."""
    if isinstance(env, VectorEnv):
        return CollectingVectorWrapper
    u = getattr(env, "unwrapped", env)
    if _is_isaac_marl(env):
        return CollectingIsaacLabMARLWrapper
    if hasattr(u, "possible_agents") and not hasattr(u, "num_envs"):
        return CollectingMultiAgentWrapper
    if getattr(u, "is_vector_env", False):
        return CollectingIsaacLabWrapper
    if isinstance(env, gym.Env):
        return CollectingWrapper
    raise TypeError(
        f"cannot record {type(env).__name__}: expected a gymnasium.Env, a gymnasium.vector.VectorEnv, an Isaac Lab "
        "task (env.unwrapped.is_vector_env / DirectMARLEnv) or a PettingZoo parallel env (possible_agents)")


def make_collecting(env: Any, path: str | os.PathLike | None = None, **kwargs: Any) -> Any:
    """Wrap ``env`` in the recording wrapper that fits it (``kwargs`` go to that wrapper)."""
    return wrapper_class(env)(env, path, **kwargs)
