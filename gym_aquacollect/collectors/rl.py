"""RLCollector: every transition, streamed to disk in chunks.

Contents:
    * :class:`RLCollector` - the default sink of the wrappers; works for endless episodes because rows
      are handed to the writer thread in blocks, not per episode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gym_aquacollect.collectors.base import BaseCollector

__all__ = ["RLCollector"]


class RLCollector(BaseCollector):
    """Stream every step to disk (the seed document's RLCollector).

    Example:
        >>> import tempfile, gymnasium as gym, numpy as np
        >>> from gym_aquacollect import RLCollector, env_info, load_dataset
        >>> env = gym.make("CartPole-v1")
        >>> c = RLCollector(name="demo", save_path=tempfile.mkdtemp(), max_buffer_size=10_000)
        >>> c.initialize_configs(env_info(env)); c.start_collection()
        >>> obs, info = env.reset(seed=0)
        >>> for _ in range(20):
        ...     nxt, r, term, trunc, info = env.step(0)
        ...     c.collect_step(observation=obs, action=0, reward=r, next_observation=nxt,
        ...                    done=term, truncated=trunc, info=info)
        ...     obs = nxt
        ...     if term or trunc:
        ...         obs, info = env.reset()
        >>> c.end_collection()
        >>> load_dataset(c.dataset_path).total_steps
        20

    Args:
        name, save_path: the dataset goes to ``save_path/name``.
        max_buffer_size: rows per block handed to the writer (bounds memory held in the user's thread).
        enable_trajectory_buffer: accepted for the seed API; episodes are always kept contiguous.
        async_collection: accepted for the seed API; writing is always asynchronous.
        **kwargs: see :class:`BaseCollector`.
    """

    def __init__(
        self,
        name: str = "rl_collector",
        save_path: str | Path | None = None,
        max_buffer_size: int | None = None,
        enable_trajectory_buffer: bool = True,
        async_collection: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, save_path, **kwargs)
        self.max_buffer_size = max_buffer_size
        self.enable_trajectory_buffer = enable_trajectory_buffer
        self.async_collection = async_collection

    def initialize_configs(self, env_info: dict[str, Any]) -> None:
        super().initialize_configs(env_info)
        if self.max_buffer_size:
            self._rows = int(max(1, min(self._rows, self.max_buffer_size)))
