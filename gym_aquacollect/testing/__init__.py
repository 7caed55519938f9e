"""Deterministic environments and oracles for testing recorders.

Contents:
    * :mod:`~gym_aquacollect.testing.counting` - :class:`CountingEnv` (obs = sub-env, episode id, step
      index), :func:`make_counting_vector_env`, :func:`check_counting_episode`.
    * :mod:`~gym_aquacollect.testing.fake_isaaclab` - :class:`FakeIsaacLabEnv`,
      :class:`FakeIsaacLabMARLEnv` and their configs (need torch; imported on first use).
    * :mod:`~gym_aquacollect.testing.pettingzoo_env` - :class:`CountingParallelEnv` (needs pettingzoo;
      imported on first use).
"""

from __future__ import annotations

import importlib
from typing import Any

from gym_aquacollect.testing.counting import (
    END_MODES,
    CountingEnv,
    check_counting_episode,
    expected_length,
    make_counting_vector_env,
)

__all__ = [
    "END_MODES",
    "CountingEnv",
    "check_counting_episode",
    "expected_length",
    "make_counting_vector_env",
    "FakeEnvCfg",
    "FakeSceneCfg",
    "FakeSimCfg",
    "FakeMARLEnvCfg",
    "FakeIsaacLabEnv",
    "FakeIsaacLabMARLEnv",
    "CountingParallelEnv",
]

_LAZY = {
    "FakeEnvCfg": "fake_isaaclab",
    "FakeSceneCfg": "fake_isaaclab",
    "FakeSimCfg": "fake_isaaclab",
    "FakeMARLEnvCfg": "fake_isaaclab",
    "FakeIsaacLabEnv": "fake_isaaclab",
    "FakeIsaacLabMARLEnv": "fake_isaaclab",
    "CountingParallelEnv": "pettingzoo_env",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
