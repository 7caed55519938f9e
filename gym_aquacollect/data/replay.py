"""Play recorded episodes back through the Gymnasium API, and re-execute recorded actions in a real env.

Contents:
    * :class:`ReplayEnv` - a ``gymnasium.Env`` whose ``reset``/``step`` return the recorded transitions; registered
      as ``"AquaCollect/Replay-v0"`` (``gym.make("gym_aquacollect:AquaCollect/Replay-v0", dataset=path)``).
    * :class:`ActionMismatchError` - raised by ``ReplayEnv(check_actions="raise")`` for a different action.
    * :func:`replay_actions` - a determinism check: reset a real env with each episode's recorded seed and
      options, step the recorded actions and report where observations, rewards or flags diverge.
    * :class:`ReplayReport`, :class:`Divergence` - what :func:`replay_actions` returns.

Example:
    >>> import numpy as np
    >>> from gymnasium import spaces
    >>> from gym_aquacollect.formats import MemoryDataset, MemoryEpisode
    >>> ep = MemoryEpisode(0, np.array([[0.], [1.], [2.]], np.float32), np.array([1, 0]), np.array([1., 2.]),
    ...                    np.array([False, True]), np.zeros(2, bool))
    >>> env = ReplayEnv(MemoryDataset([ep], spaces.Box(-5, 5, (1,)), spaces.Discrete(2)))
    >>> obs, info = env.reset()
    >>> obs.tolist(), env.recorded_action
    ([0.0], 1)
    >>> env.step(1)[:4]
    (array([1.], dtype=float32), 1.0, False, False)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from gym_aquacollect.data.memory import nested_equal, row
from gym_aquacollect.logs import logger

__all__ = ["ReplayEnv", "ActionMismatchError", "replay_actions", "ReplayReport", "Divergence", "open_dataset"]


class ActionMismatchError(ValueError):
    """The action passed to :meth:`ReplayEnv.step` differs from the recorded one."""


def open_dataset(source: Any, **kwargs: Any) -> Any:
    """A dataset object from a path / Minari id (via ``load_dataset``) or a dataset-like object as is."""
    if isinstance(source, (str, os.PathLike)):
        from gym_aquacollect.data.dataset import load_dataset

        return load_dataset(source, **kwargs)
    return source


def _info_row(infos: dict, t: int) -> dict:
    out: dict[str, Any] = {}
    for k, v in infos.items():
        if isinstance(k, str) and k.startswith("_") and k[1:] in infos:
            continue  # a presence mask: applied below, not returned
        mask = infos.get(f"_{k}")
        if mask is not None and not isinstance(mask, dict) and not bool(np.asarray(mask)[t]):
            continue
        out[k] = _info_row(v, t) if isinstance(v, dict) else row(v, t)
    return out


def _as_python(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    return x


class ReplayEnv(gym.Env):
    """Replays a recorded dataset as an environment.

    The first :meth:`reset` plays episode 0, each later one the next episode (wrapping around after the last,
    unless ``loop=False``). ``reset(seed=...)`` rewinds to episode 0 (so a seeded reset is deterministic, as
    :func:`gymnasium.utils.env_checker.check_env` requires); ``reset(options={"episode": i})`` plays episode ``i``.
    :meth:`step` returns the recorded next observation, reward, flags and info whatever the action, unless
    ``check_actions`` asks to compare the action with the recorded one.

    Args:
        dataset: a dataset path (anything ``load_dataset`` opens) or a dataset object.
        check_actions: ``False`` (default), ``"warn"`` or ``"raise"`` (``True`` means ``"raise"``).
        atol: tolerance for comparing float actions.
        loop: start again at episode 0 after the last one; otherwise :meth:`reset` raises.
        render_mode: unused (no rendering), accepted for ``gym.make``.

    Example:
        >>> import gymnasium as gym
        >>> import gym_aquacollect  # registers AquaCollect/Replay-v0
        >>> "AquaCollect/Replay-v0" in gym.registry
        True
    """

    metadata = {"render_modes": []}

    def __init__(self, dataset: Any, *, check_actions: bool | str = False, atol: float = 1e-6, loop: bool = True,
                 render_mode: str | None = None, **load_kwargs: Any) -> None:
        self.dataset = open_dataset(dataset, **load_kwargs)
        if len(self.dataset) == 0:
            raise ValueError(f"cannot replay {dataset!r}: it has no episodes")
        self.observation_space = self.dataset.observation_space
        self.action_space = self.dataset.action_space
        if check_actions is True:
            check_actions = "raise"
        if check_actions not in (False, None, "warn", "raise"):
            raise ValueError(f"check_actions must be False, 'warn' or 'raise', got {check_actions!r}")
        self.check_actions = check_actions or False
        self.atol = float(atol)
        self.loop = loop
        self.render_mode = render_mode
        self._next = 0
        self._ep: Any = None
        self._t = 0
        self.episode_index: int | None = None

    # -- Gymnasium API -----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._next = 0
        if options and "episode" in options:
            self._next = int(options["episode"])
        if self._next >= len(self.dataset):
            if not self.loop:
                raise IndexError(f"all {len(self.dataset)} recorded episodes have been played (loop=False)")
            self._next = 0
        self.episode_index = self._next
        self._ep = self.dataset[self._next]
        self._next += 1
        self._t = 0
        return row(self._ep.observations, 0), _info_row(self._ep.infos or {}, 0)

    def step(self, action: Any):
        ep = self._ep
        if ep is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        t = self._t
        if t >= len(ep):
            raise gym.error.ResetNeeded(
                f"recorded episode {ep.id} ended after {len(ep)} steps; call reset() to play the next one")
        if self.check_actions:
            expected = row(ep.actions, t)
            if not nested_equal(_np(action), _np(expected), atol=self.atol):
                msg = (f"episode {ep.id} step {t}: action {action!r} differs from the recorded action {expected!r}")
                if self.check_actions == "raise":
                    raise ActionMismatchError(msg)
                logger.warning(msg)
        self._t = t + 1
        return (row(ep.observations, t + 1), float(ep.rewards[t]), bool(ep.terminations[t]),
                bool(ep.truncations[t]), _info_row(ep.infos or {}, t + 1))

    # -- extras ------------------------------------------------------------------------------------
    @property
    def recorded_action(self) -> Any:
        """The action recorded at the current step (what the next :meth:`step` expects)."""
        if self._ep is None or self._t >= len(self._ep):
            return None
        return _as_python(row(self._ep.actions, self._t))

    @property
    def current_episode(self) -> Any:
        return self._ep


def _np(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _np(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_np(v) for v in x)
    if isinstance(x, str):
        return [x]
    return np.asarray(x)


# ------------------------------------------------------------------------------------------------
# Re-executing recorded actions
# ------------------------------------------------------------------------------------------------
@dataclass
class Divergence:
    """The first place where a re-executed episode differs from the recording."""

    episode_id: int
    step: int  # 0 = the reset observation, t = the transition of the t-th step
    field: str
    expected: Any
    actual: Any
    max_abs_diff: float | None = None

    def __str__(self) -> str:
        extra = f" (max |diff| {self.max_abs_diff:.3g})" if self.max_abs_diff is not None else ""
        return f"episode {self.episode_id} step {self.step}: {self.field} differs{extra}"


@dataclass
class ReplayReport:
    """Result of :func:`replay_actions`."""

    episodes_checked: int = 0
    steps_checked: int = 0
    divergences: list[Divergence] = field(default_factory=list)
    unseeded_episodes: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.divergences

    def __str__(self) -> str:
        head = (f"replayed {self.episodes_checked} episodes / {self.steps_checked} steps: "
                + ("deterministic" if self.ok else f"{len(self.divergences)} diverged"))
        lines = [head] + [f"  {d}" for d in self.divergences[:20]]
        if self.unseeded_episodes:
            lines.append(f"  {len(self.unseeded_episodes)} episodes had no recorded seed and were reset in order "
                         "without one (reproducible only if the env's RNG stream matches the recording)")
        return "\n".join(lines)


def _diff(a: Any, b: Any) -> float | None:
    try:
        x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        return float(np.max(np.abs(x - y))) if x.shape == y.shape and x.size else None
    except (TypeError, ValueError):
        return None


def replay_actions(dataset: Any, env: gym.Env | str | Callable[[], gym.Env], *,
                   episodes: Iterable[int] | None = None, atol: float = 1e-6, rtol: float = 0.0) -> ReplayReport:
    """Re-execute every recorded episode's actions in ``env`` and report divergence.

    Each episode is reset with its recorded ``seed`` and ``options``; episodes without a seed (Gymnasium only
    seeds the first reset) are reset without one, in recorded order, which reproduces the recording when the
    same env instance recorded them one after another (not for a vector env's interleaved sub-env episodes).

    Args:
        dataset: a dataset or a path ``load_dataset`` opens.
        env: an env, an env id for ``gym.make``, or a zero-argument factory.
        episodes: which episode indices to check (default all, in order).
        atol, rtol: tolerances for observations and rewards.
    """
    ds = open_dataset(dataset)
    own = False
    if isinstance(env, str):
        env, own = gym.make(env), True
    elif not isinstance(env, gym.Env) and callable(env):
        env, own = env(), True
    report = ReplayReport()
    try:
        for i in (range(len(ds)) if episodes is None else episodes):
            ep = ds[i]
            meta = ep.metadata or {}
            seed = meta.get("seed")
            if seed is None:
                report.unseeded_episodes.append(int(ep.id))
            obs, _ = env.reset(seed=None if seed is None else int(seed), options=meta.get("options") or None)
            report.episodes_checked += 1
            exp0 = row(ep.observations, 0)
            if not nested_equal(_np(obs), _np(exp0), atol=atol):
                report.divergences.append(Divergence(int(ep.id), 0, "observation", exp0, obs, _diff(exp0, obs)))
                continue
            for t in range(len(ep)):
                obs, r, term, trunc, _ = env.step(_as_python(row(ep.actions, t)))
                report.steps_checked += 1
                exp = row(ep.observations, t + 1)
                d = None
                if not nested_equal(_np(obs), _np(exp), atol=atol + rtol * float(np.max(np.abs(_flt(exp))) or 0)):
                    d = Divergence(int(ep.id), t + 1, "observation", exp, obs, _diff(exp, obs))
                elif not np.isclose(float(r), float(ep.rewards[t]), atol=atol, rtol=rtol):
                    d = Divergence(int(ep.id), t + 1, "reward", float(ep.rewards[t]), float(r),
                                   abs(float(r) - float(ep.rewards[t])))
                elif bool(term) != bool(ep.terminations[t]):
                    d = Divergence(int(ep.id), t + 1, "terminated", bool(ep.terminations[t]), bool(term))
                elif bool(trunc) != bool(ep.truncations[t]) and t < len(ep) - 1:
                    # the recorder marks an episode closed mid-way as truncated at its last step
                    d = Divergence(int(ep.id), t + 1, "truncated", bool(ep.truncations[t]), bool(trunc))
                if d is not None:
                    report.divergences.append(d)
                    break
    finally:
        if own:
            env.close()
    return report


def _flt(x: Any) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float64)
        return a if a.size else np.zeros(1)
    except (TypeError, ValueError):
        return np.zeros(1)
