"""Small deterministic envs for the tests (not mocks: real gymnasium.Env subclasses)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class SpaceEnv(gym.Env):
    """Returns seeded samples of any observation space; episodes last ``lengths[k]`` steps.

    Keeps a ground-truth log: ``self.log`` is a list of episodes, each a dict with the reset obs and
    every (action, obs, reward, terminated, truncated, info) as returned (deep-copied).
    """

    metadata = {"render_modes": []}

    def __init__(self, observation_space, action_space, lengths=(5, 3, 7), truncate_every=2, info_fn=None):
        self.observation_space = observation_space
        self.action_space = action_space
        self.lengths = list(lengths)
        self.truncate_every = truncate_every
        self.info_fn = info_fn
        self.episode = -1
        self.log: list[dict] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(1 << 30)))
        self.episode += 1
        self.t = 0
        obs = self.observation_space.sample()
        info = self.info_fn(self.episode, 0, False) if self.info_fn else {}
        self.log.append({"reset": (_copy(obs), _copy(info)), "steps": [], "seed": seed, "options": options})
        return obs, info

    def step(self, action):
        self.t += 1
        obs = self.observation_space.sample()
        n = self.lengths[self.episode % len(self.lengths)]
        done = self.t >= n
        truncated = done and self.truncate_every and self.episode % self.truncate_every == 1
        terminated = done and not truncated
        reward = float(self.t) + 0.5 * self.episode
        info = self.info_fn(self.episode, self.t, done) if self.info_fn else {}
        self.log[-1]["steps"].append((_copy(action), _copy(obs), reward, terminated, truncated, _copy(info)))
        return obs, reward, terminated, bool(truncated), info


class MutatingEnv(gym.Env):
    """Returns the *same* observation array every step, overwritten in place (like envs with buffers)."""

    observation_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, length=10):
        self.buf = np.zeros(3, np.float32)
        self.length = length

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.buf[:] = 0
        return self.buf, {}

    def step(self, action):
        self.t += 1
        self.buf[:] = [self.t, self.t * 2, action]
        return self.buf, 1.0, self.t >= self.length, False, {}


def _copy(x):
    if isinstance(x, dict):
        return {k: _copy(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_copy(v) for v in x)
    if isinstance(x, list):
        return [_copy(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.copy()
    return x


def run_episodes(env, n_episodes, seed=0, actions=None):
    """Drive ``env`` (possibly wrapped) through ``n_episodes`` full episodes with sampled actions."""
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    done_eps = 0
    while done_eps < n_episodes:
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        if term or trunc:
            done_eps += 1
            if done_eps < n_episodes:
                obs, info = env.reset()
    return env
