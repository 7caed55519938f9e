"""A deterministic PettingZoo ``ParallelEnv`` whose agents leave mid-episode.

Contents:
    * :class:`CountingParallelEnv` - agent ``k`` lives ``agent_lifetimes[k]`` steps (then its
      ``terminated`` is True and it leaves ``env.agents``); the episode is truncated for everyone still
      present after ``max_steps``. Each agent's observation is ``(agent index, episode id, step index)``.

Needs ``pettingzoo`` (the ``pettingzoo`` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo.utils.env import ParallelEnv

__all__ = ["CountingParallelEnv"]


class CountingParallelEnv(ParallelEnv):
    """A PettingZoo parallel env for recorder tests.

    Args:
        agent_lifetimes: steps each agent lives before it terminates (``0`` = until truncation).
        max_steps: the episode is truncated for all remaining agents at this step.

    Rewards: agent ``k`` gets ``step index + k + 0.5 * action``.

    Example:
        >>> env = CountingParallelEnv(agent_lifetimes=(1, 0), max_steps=3)
        >>> obs, infos = env.reset()
        >>> sorted(obs)
        ['a0', 'a1']
        >>> _, _, term, trunc, _ = env.step({"a0": 0, "a1": 1})
        >>> term, env.agents
        ({'a0': True, 'a1': False}, ['a1'])
    """

    metadata = {"render_modes": [], "name": "counting_parallel_v0"}

    def __init__(self, agent_lifetimes: Sequence[int] = (2, 0, 4), max_steps: int = 6) -> None:
        self.possible_agents = [f"a{k}" for k in range(len(agent_lifetimes))]
        self.lifetimes = dict(zip(self.possible_agents, (int(x) for x in agent_lifetimes)))
        self.max_steps = int(max_steps)
        self.observation_spaces = {a: spaces.Box(0, np.inf, (3,), np.float32) for a in self.possible_agents}
        self.action_spaces = {a: spaces.Discrete(2) for a in self.possible_agents}
        self.agents: list[str] = []
        self.episode_id = -1
        self.t = 0

    def observation_space(self, agent: str) -> spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]

    def _obs(self, agent: str) -> np.ndarray:
        return np.array([self.possible_agents.index(agent), self.episode_id, self.t], dtype=np.float32)

    def reset(self, seed: int | None = None, options: dict | None = None):
        self.episode_id += 1
        self.t = 0
        self.agents = list(self.possible_agents)
        return {a: self._obs(a) for a in self.agents}, {a: {"step": 0} for a in self.agents}

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("CountingParallelEnv.step() with no agents left; call reset()")
        missing = set(self.agents) - set(actions)
        if missing:
            raise KeyError(f"CountingParallelEnv.step: no action for live agents {sorted(missing)}")
        rewards = {
            a: float(self.t + self.possible_agents.index(a)) + 0.5 * float(actions[a]) for a in self.agents
        }
        self.t += 1
        term = {a: 0 < self.lifetimes[a] <= self.t for a in self.agents}
        trunc = {a: (self.t >= self.max_steps) and not term[a] for a in self.agents}
        obs = {a: self._obs(a) for a in self.agents}
        infos = {a: {"step": self.t} for a in self.agents}
        self.agents = [a for a in self.agents if not (term[a] or trunc[a])]
        return obs, rewards, term, trunc, infos

    def state(self) -> np.ndarray:
        return np.array([self.episode_id, self.t, len(self.agents)], dtype=np.float32)
