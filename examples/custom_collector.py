"""A third-party collector: keep episodes in memory instead of writing them to disk.

A custom collector subclasses :class:`gym_aquacollect.collectors.BaseCollector` and overrides a few hooks;
recording itself (validation, copying each value, episode bookkeeping) stays the base class's:

* ``on_block(block)`` (public hook; the old name ``_on_block`` still works) - where a :class:`~gym_aquacollect.storage.writer.Block` of rows goes. The
  default hands it to the writer thread. ``block.obs`` / ``block.step`` are dicts of column arrays
  (``observations``, ``actions``, ``rewards``, ``terminations``, ``truncations``, ``infos/...``,
  ``extras/...``); ``block.pieces`` say which rows belong to which episode (by key), ``block.ends`` lists
  the episodes that finished. The arrays are views into buffers the collector reuses: copy what you keep,
  then call ``block.on_written()`` if it is set.
* ``on_episode_end(end)`` - bookkeeping for a finished episode (``end.length``, ``end.ret``,
  ``end.flags``, ``end.meta``); call ``super().on_episode_end(end)`` so the end travels with its block.
* ``open_writer()`` / ``finalize()`` - open / close the sink (here: none; the old names ``_open_writer`` /
  ``_finalize`` still work).
* ``handoff()`` (not a hook: call it) - hand the rows recorded so far to ``on_block`` now.
* ``get_dataset_statistics()`` - add your own figures to the seed's keys.

Run: ``python examples/custom_collector.py``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gym_aquacollect import CollectingWrapper
from gym_aquacollect.collectors import BaseCollector
from gym_aquacollect.storage.writer import Block


class InMemoryCollector(BaseCollector):
    """Collect whole episodes into a list of dicts of NumPy arrays (nothing touches the disk).

    Example:
        >>> env = CollectingWrapper(gym.make("CartPole-v1"), collector=InMemoryCollector())
        >>> _ = env.reset(seed=0)
        >>> for _ in range(40):
        ...     *_, term, trunc, _ = env.step(0)
        ...     if term or trunc:
        ...         _ = env.reset()
        >>> env.close()
        >>> eps = env.collector.episodes
        >>> eps[0]["observations"].shape[0] == len(eps[0]["rewards"]) + 1
        True
    """

    def __init__(self, name: str = "in_memory", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.episodes: list[dict[str, Any]] = []
        self._parts: dict[int, list[tuple[dict, dict]]] = {}

    def open_writer(self) -> None:  # no dataset directory, no writer thread
        self.writer = None

    def on_block(self, block: Block) -> None:
        for p in block.pieces:
            obs = {k: v[p.obs_start:p.obs_start + p.obs_n].copy() for k, v in block.obs.items()}
            step = {k: v[p.step_start:p.step_start + p.step_n].copy() for k, v in block.step.items()}
            self._parts.setdefault(p.key, []).append((obs, step))
        if block.on_written is not None:
            block.on_written()
        for end in block.ends:
            parts = self._parts.pop(end.key, [])
            self.episodes.append({
                "observations": np.concatenate([o["observations"] for o, _ in parts]),
                "actions": np.concatenate([s["actions"] for _, s in parts]),
                "rewards": np.concatenate([s["rewards"] for _, s in parts]),
                "terminated": bool(end.flags & 1),
                "metadata": end.meta,
            })

    def flush(self) -> None:
        self.handoff()

    def finalize(self) -> None:
        pass

    def get_dataset_statistics(self) -> dict[str, Any]:
        stats = super().get_dataset_statistics()
        stats["episodes_in_memory"] = len(self.episodes)
        return stats


if __name__ == "__main__":
    with CollectingWrapper(gym.make("CartPole-v1"), collector=InMemoryCollector()) as env:
        obs, info = env.reset(seed=0)
        for _ in range(500):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            if terminated or truncated:
                obs, info = env.reset()
    stats = env.collector.get_dataset_statistics()
    print({k: stats[k] for k in ("total_steps", "total_episodes", "avg_episode_length", "episodes_in_memory")})
