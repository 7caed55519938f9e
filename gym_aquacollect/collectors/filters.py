"""Episode filters for :class:`~gym_aquacollect.collectors.TrajectoryCollector`.

Contents:
    * :data:`CRITERIA` - the keys of ``trajectory_filter_criteria`` (the seed's keys plus ``predicate``).
    * :class:`TrajectoryFilter` - checks a finished episode against the criteria and says which failed.

Criteria (all optional; an episode is kept when it passes every one given):
    * ``min_reward`` / ``max_reward``: bounds on the episode return (sum of rewards), inclusive.
    * ``min_length`` / ``max_length``: bounds on the number of steps, inclusive.
    * ``allowed_completion_types``: a list of ``"done"`` (terminated) and/or ``"truncated"``; an
      episode still open when collection ends, or cut short by a reset, counts as truncated.
    * ``predicate``: ``predicate(trajectory) -> bool`` on the whole episode, a dict with
      ``observations`` (T+1 rows), ``actions``, ``rewards``, ``terminations``, ``truncations`` (T rows),
      ``length``, ``return`` and ``metadata``.

Example:
    >>> f = TrajectoryFilter({"min_reward": 100.0, "min_length": 10, "allowed_completion_types": ["done"]})
    >>> f.failures(length=150, ret=150.0, terminated=True, truncated=False)
    []
    >>> f.failures(length=5, ret=5.0, terminated=False, truncated=True)
    ['min_reward', 'min_length', 'completion_type']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["CRITERIA", "COMPLETION_TYPES", "TrajectoryFilter"]

CRITERIA = ("min_reward", "max_reward", "min_length", "max_length", "allowed_completion_types", "predicate")
COMPLETION_TYPES = ("done", "truncated")


class TrajectoryFilter:
    """Validated ``trajectory_filter_criteria``.

    Args:
        criteria: a dict with any of :data:`CRITERIA`; unknown keys raise ``KeyError``.
        predicate: a user predicate (alternative to ``criteria["predicate"]``).
    """

    def __init__(self, criteria: Mapping[str, Any] | None = None,
                 predicate: Callable[[dict[str, Any]], bool] | None = None) -> None:
        criteria = dict(criteria or {})
        unknown = sorted(set(criteria) - set(CRITERIA))
        if unknown:
            raise KeyError(f"trajectory_filter_criteria: unknown key(s) {unknown}; valid keys are {list(CRITERIA)}")
        self.min_reward = self._num(criteria, "min_reward")
        self.max_reward = self._num(criteria, "max_reward")
        self.min_length = self._num(criteria, "min_length")
        self.max_length = self._num(criteria, "max_length")
        for lo, hi in (("min_reward", "max_reward"), ("min_length", "max_length")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise ValueError(f"trajectory_filter_criteria: {lo}={a} is greater than {hi}={b}; nothing could pass")
        types = criteria.get("allowed_completion_types")
        if types is not None:
            if isinstance(types, str):
                types = [types]
            bad = [t for t in types if t not in COMPLETION_TYPES]
            if bad:
                raise ValueError(f"trajectory_filter_criteria['allowed_completion_types']: {bad} not understood; "
                                 f"use a list of {list(COMPLETION_TYPES)}")
            types = frozenset(types)
        self.allowed_completion_types: frozenset[str] | None = types
        if predicate is not None and criteria.get("predicate") is not None:
            raise ValueError("give the predicate either as predicate= or as trajectory_filter_criteria['predicate'], not both")
        self.predicate = predicate if predicate is not None else criteria.get("predicate")
        if self.predicate is not None and not callable(self.predicate):
            raise TypeError(f"trajectory filter predicate must be callable, got {type(self.predicate).__name__}")

    @staticmethod
    def _num(criteria: Mapping[str, Any], key: str) -> float | None:
        v = criteria.get(key)
        if v is None:
            return None
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"trajectory_filter_criteria[{key!r}] must be a number, got {v!r}") from None
        if math.isnan(v):
            raise ValueError(f"trajectory_filter_criteria[{key!r}] is NaN")
        return v

    @property
    def needs_data(self) -> bool:
        """True when the predicate needs the episode's arrays."""
        return self.predicate is not None

    def failures(self, length: int, ret: float, terminated: bool, truncated: bool,
                 trajectory: Callable[[], dict[str, Any]] | dict[str, Any] | None = None) -> list[str]:
        """The names of the criteria the episode fails (empty: keep it).

        ``trajectory`` (a dict or a zero-argument callable building it) is only used by the predicate,
        which is asked only when every other criterion passed.
        """
        out = []
        if self.min_reward is not None and not ret >= self.min_reward:
            out.append("min_reward")
        if self.max_reward is not None and not ret <= self.max_reward:
            out.append("max_reward")
        if self.min_length is not None and length < self.min_length:
            out.append("min_length")
        if self.max_length is not None and length > self.max_length:
            out.append("max_length")
        if self.allowed_completion_types is not None:
            kind = "done" if terminated else "truncated"
            if kind not in self.allowed_completion_types:
                out.append("completion_type")
        if not out and self.predicate is not None:
            traj = trajectory() if callable(trajectory) else trajectory
            if not bool(self.predicate(traj)):
                out.append("predicate")
        return out

    def failures_batch(self, lengths: np.ndarray, returns: np.ndarray, terminated: np.ndarray) -> dict[str, np.ndarray]:
        """Vectorised :meth:`failures` without the predicate: ``{criterion: bool array (E,)}`` of the
        episodes failing it (only the criteria given; ``terminated`` False counts as truncated).

        Example:
            >>> f = TrajectoryFilter({"min_length": 3, "allowed_completion_types": ["done"]})
            >>> {k: v.tolist() for k, v in f.failures_batch(np.array([2, 5]), np.zeros(2), np.array([True, False])).items()}
            {'min_length': [True, False], 'completion_type': [False, True]}
        """
        lengths, returns = np.asarray(lengths), np.asarray(returns, np.float64)
        terminated = np.asarray(terminated, bool)
        out: dict[str, np.ndarray] = {}
        if self.min_reward is not None:
            out["min_reward"] = ~(returns >= self.min_reward)
        if self.max_reward is not None:
            out["max_reward"] = ~(returns <= self.max_reward)
        if self.min_length is not None:
            out["min_length"] = lengths < self.min_length
        if self.max_length is not None:
            out["max_length"] = lengths > self.max_length
        if self.allowed_completion_types is not None:
            ok = np.zeros(len(lengths), bool)
            if "done" in self.allowed_completion_types:
                ok |= terminated
            if "truncated" in self.allowed_completion_types:
                ok |= ~terminated
            out["completion_type"] = ~ok
        return out

    def __repr__(self) -> str:
        items = {k: getattr(self, k) for k in CRITERIA if getattr(self, k, None) is not None}
        return f"TrajectoryFilter({items})"
