"""Helpers for the format tests: real Gymnasium envs, recorded step by step into episodes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gym_aquacollect.formats._common import MemoryDataset, MemoryEpisode, concat_nested


class NestedImageEnv(gym.Env):
    """A small env with every structured leaf: Dict(pos Box, t Tuple(Discrete, Text), img uint8 32x32x3)."""

    metadata = {"render_modes": []}

    def __init__(self, horizon: int = 6, channels: int = 3):
        self.observation_space = spaces.Dict({
            "pos": spaces.Box(-10, 10, (3,), np.float32),
            "t": spaces.Tuple((spaces.Discrete(5), spaces.Text(8, charset="abcdef"))),
            "img": spaces.Box(0, 255, (32, 32, channels) if channels != 0 else (32, 32), np.uint8),
        })
        self.action_space = spaces.Dict({"move": spaces.Box(-1, 1, (2,), np.float32), "grip": spaces.Discrete(2)})
        self.horizon = horizon
        self._k = 0

    def _obs(self):
        k = self._k
        y, x = np.mgrid[0:32, 0:32]
        base = ((x * 6 + y * 3 + k * 10) % 256).astype(np.uint8)  # smooth gradient: JPEG-friendly
        shape = self.observation_space["img"].shape
        img = base if len(shape) == 2 else np.repeat(base[..., None], shape[2], axis=2)
        word = "abcdef"[: 1 + k % 6]
        return {"pos": self.np_random.uniform(-1, 1, 3).astype(np.float32), "t": (k % 5, word), "img": img}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._k = 0
        self._h = self.horizon + int(self.np_random.integers(0, 3))
        return self._obs(), {"k": np.int64(0), "nested": {"x": np.float32(0)}}

    def step(self, action):
        self._k += 1
        term = self._k >= self._h and self._k % 2 == 0
        trunc = self._k >= self._h and not term
        info = {"k": np.int64(self._k), "nested": {"x": np.float32(self._k / 2)}}
        if self._k % 3 == 0:
            info["sometimes"] = np.float64(self._k)
        return self._obs(), float(action["grip"]) + 0.5, term, trunc, info


def _stack_infos(infos: list[dict]) -> dict:
    keys: list[str] = []
    for i in infos:
        for k in i:
            if k not in keys:
                keys.append(k)
    out = {}
    for k in keys:
        present = [k in i for i in infos]
        vals = [i[k] for i in infos if k in i]
        if isinstance(vals[0], dict):
            out[k] = _stack_infos([i.get(k, {}) for i in infos]) if all(present) else None
            continue
        fill = np.zeros_like(np.asarray(vals[0]))
        out[k] = np.stack([np.asarray(i[k]) if k in i else fill for i in infos])
        if not all(present):
            out["_" + k] = np.asarray(present)
    return {k: v for k, v in out.items() if v is not None}


def _stack(space, values):
    if isinstance(space, spaces.Dict):
        return {k: _stack(s, [v[k] for v in values]) for k, s in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_stack(s, [v[i] for v in values]) for i, s in enumerate(space.spaces))
    if isinstance(space, spaces.Text):
        return [str(v) for v in values]
    dtype = np.int64 if isinstance(space, spaces.Discrete) else space.dtype
    return np.stack([np.asarray(v, dtype=dtype) for v in values])


def record(env: gym.Env, n_episodes: int, *, seed: int = 0, policy=None, max_steps: int | None = None,
           teacher=None) -> MemoryDataset:
    """Run ``env`` for ``n_episodes`` (first reset seeded) and keep everything, as the recorder would."""
    env.action_space.seed(seed)
    eps = []
    for e in range(n_episodes):
        s = seed if e == 0 else None
        obs, info = env.reset(seed=s)
        Os, A, R, TE, TR, Is, TA = [obs], [], [], [], [], [info], []
        while True:
            a = policy(obs) if policy else env.action_space.sample()
            if teacher is not None:
                TA.append(teacher(obs))
            obs, r, te, tr, info = env.step(a)
            Os.append(obs), A.append(a), R.append(r), TE.append(te), TR.append(tr), Is.append(info)
            if te or tr or (max_steps and len(A) >= max_steps):
                break
        if not (TE[-1] or TR[-1]):
            TR[-1] = True
        extras = {"teacher_actions": np.stack(TA)} if TA else {}
        meta = {"seed": s, "options": None, "terminated": bool(TE[-1]), "truncated": bool(TR[-1])}
        eps.append(MemoryEpisode(e, _stack(env.observation_space, Os), _stack(env.action_space, A),
                                 np.asarray(R, np.float64), np.asarray(TE, bool), np.asarray(TR, bool),
                                 infos=_stack_infos(Is), metadata=meta, extras=extras))
    spec = None
    if env.spec is not None:
        try:
            spec = env.spec.to_json()
        except (TypeError, ValueError):
            spec = None
    return MemoryDataset(eps, env.observation_space, env.action_space, env_spec=spec)


def record_real(env: gym.Env, path, n_episodes: int, *, seed: int = 0, teacher=None, policy=None):
    """Record ``n_episodes`` with the real ``CollectingWrapper`` and open the result with ``load_dataset``."""
    from gym_aquacollect import CollectingWrapper, load_dataset

    with CollectingWrapper(env, path, teacher=teacher) as w:
        w.action_space.seed(seed)
        for e in range(n_episodes):
            obs, _ = w.reset(seed=seed if e == 0 else None)
            while True:
                obs, _, term, trunc, _ = w.step(policy(obs) if policy else w.action_space.sample())
                if term or trunc:
                    break
    return load_dataset(path)


def _tmp(tmp_path, name):
    import tempfile
    from pathlib import Path

    return Path(tmp_path or tempfile.mkdtemp()) / name


def cartpole(n: int = 4, seed: int = 0, tmp_path=None):
    """CartPole-v1 recorded with CollectingWrapper (a real gym_aquacollect dataset)."""
    return record_real(gym.make("CartPole-v1"), _tmp(tmp_path, f"cartpole{n}_{seed}"), n, seed=seed)


def nested(n: int = 3, seed: int = 0, channels: int = 3, tmp_path=None):
    """NestedImageEnv recorded with CollectingWrapper (Dict/Tuple/Text/image observations, Dict actions)."""
    return record_real(NestedImageEnv(channels=channels), _tmp(tmp_path, f"nested{n}_{seed}_{channels}"), n, seed=seed)


def pendulum(n: int = 4, seed: int = 3, tmp_path=None, teacher=None):
    """Pendulum-v1 (Box obs and actions, 7-step episodes) recorded with CollectingWrapper."""
    env = gym.make("Pendulum-v1", max_episode_steps=7)
    return record_real(env, _tmp(tmp_path, f"pendulum{n}_{seed}_{teacher is not None}"), n, seed=seed, teacher=teacher)


__all__ = ["NestedImageEnv", "record", "record_real", "cartpole", "nested", "pendulum", "concat_nested"]
