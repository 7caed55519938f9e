"""Record schedules: which episodes a collector records (envlogger's episode schedules).

A schedule is any callable ``schedule(episode_index: int) -> bool`` passed as a collector's
``schedule=`` argument; it is asked once per episode, at its reset (episode indices count every
episode, recorded or not, from 0). Episodes it declines are counted (``skipped_episodes`` in
:meth:`~gym_aquacollect.collectors.BaseCollector.get_dataset_statistics`) but not stored.

Contents:
    * :func:`every_n_episodes` - every Nth episode (envlogger's ``n_episode_periodic``).
    * :func:`bernoulli` - each episode independently with probability ``p`` (reproducible with a seed).
    * :func:`episode_indices` - exactly the listed episode indices.
    * :func:`time_window` - episodes that start inside a wall-clock window.
    * :func:`all_of` / :func:`any_of` - combine schedules.

Example:
    >>> sched = every_n_episodes(3)
    >>> [i for i in range(10) if sched(i)]
    [0, 3, 6, 9]
    >>> both = all_of(every_n_episodes(2), episode_indices([0, 1, 2, 3, 4]))
    >>> [i for i in range(10) if both(i)]
    [0, 2, 4]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime

import numpy as np

__all__ = ["Schedule", "every_n_episodes", "bernoulli", "episode_indices", "time_window", "all_of", "any_of"]

#: The type of a schedule.
Schedule = Callable[[int], bool]


def every_n_episodes(n: int, offset: int = 0) -> Schedule:
    """Record episodes ``offset, offset + n, offset + 2n, ...``."""
    if int(n) < 1:
        raise ValueError(f"every_n_episodes: n must be >= 1, got {n}")
    if int(offset) < 0:
        raise ValueError(f"every_n_episodes: offset must be >= 0, got {offset}")
    n, offset = int(n), int(offset)

    def schedule(episode_index: int) -> bool:
        return episode_index >= offset and (episode_index - offset) % n == 0

    schedule.__qualname__ = f"every_n_episodes({n}, offset={offset})"
    return schedule


def bernoulli(p: float, seed: int | None = None) -> Schedule:
    """Record each episode independently with probability ``p``.

    With a ``seed`` the decision for episode ``i`` depends only on ``(seed, i)``, so two runs with the
    same seed record the same episodes whatever order the schedule is asked in.
    """
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"bernoulli: p must be in [0, 1], got {p}")
    rng = np.random.default_rng(seed)

    def schedule(episode_index: int) -> bool:
        if seed is not None:
            return bool(np.random.default_rng((seed, episode_index)).random() < p)
        return bool(rng.random() < p)

    schedule.__qualname__ = f"bernoulli({p}, seed={seed})"
    return schedule


def episode_indices(indices: Iterable[int]) -> Schedule:
    """Record exactly the episodes whose index is in ``indices``."""
    wanted = frozenset(int(i) for i in indices)
    if any(i < 0 for i in wanted):
        raise ValueError(f"episode_indices: indices must be >= 0, got {sorted(wanted)[:5]}")

    def schedule(episode_index: int) -> bool:
        return episode_index in wanted

    schedule.__qualname__ = f"episode_indices({sorted(wanted)[:8]}{'...' if len(wanted) > 8 else ''})"
    return schedule


def _timestamp(t: float | datetime | None) -> float | None:
    if t is None:
        return None
    if isinstance(t, datetime):
        return t.timestamp()
    return float(t)


def time_window(start: float | datetime | None = None, stop: float | datetime | None = None, *,
                relative: bool = True, clock: Callable[[], float] = time.time) -> Schedule:
    """Record episodes that start while ``start <= now < stop``.

    Args:
        start, stop: with ``relative=True`` (default) seconds after the schedule is created; otherwise
            Unix timestamps or ``datetime`` objects. None: unbounded on that side.
        relative: how to read numeric ``start``/``stop`` (datetimes are always absolute).
        clock: the time source (``time.time``).
    """
    t0 = clock()

    def resolve(t: float | datetime | None) -> float | None:
        ts = _timestamp(t)
        if ts is None or isinstance(t, datetime) or not relative:
            return ts
        return t0 + ts

    lo, hi = resolve(start), resolve(stop)
    if lo is not None and hi is not None and hi <= lo:
        raise ValueError(f"time_window: stop ({stop}) must be after start ({start})")

    def schedule(episode_index: int) -> bool:
        now = clock()
        return (lo is None or now >= lo) and (hi is None or now < hi)

    schedule.__qualname__ = f"time_window({start}, {stop}, relative={relative})"
    return schedule


def all_of(*schedules: Schedule) -> Schedule:
    """Record an episode when every schedule says so (all are asked, so stateful ones stay in step)."""

    def schedule(episode_index: int) -> bool:
        return all([bool(s(episode_index)) for s in schedules])

    return schedule


def any_of(*schedules: Schedule) -> Schedule:
    """Record an episode when any schedule says so (all are asked)."""

    def schedule(episode_index: int) -> bool:
        return any([bool(s(episode_index)) for s in schedules])

    return schedule
