"""Episode statistics: the summary dict of a dataset or collector (seed document's keys first).

Example:
    >>> import numpy as np
    >>> s = episode_statistics(np.array([3, 5]), np.array([1.0, 3.0]), np.array([1, 2], np.uint8))
    >>> s["total_steps"], s["avg_episode_reward"], s["terminated_episodes"], s["truncated_episodes"]
    (8, 2.0, 1, 1)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gym_aquacollect.schema.flags import TERM as _TERM
from gym_aquacollect.schema.flags import TRUNC as _TRUNC

__all__ = ["episode_statistics"]


def episode_statistics(lengths: np.ndarray, returns: np.ndarray, flags: np.ndarray) -> dict[str, Any]:
    """The statistics dict (the seed document's keys first) for episodes with these lengths/returns."""
    n = int(len(lengths))

    def desc(a: np.ndarray) -> dict[str, float]:
        if not len(a):
            return {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0}
        return {"mean": float(np.mean(a)), "std": float(np.std(a)), "min": float(np.min(a)), "max": float(np.max(a))}

    ls, rs = desc(lengths), desc(returns)
    return {
        "total_steps": int(np.sum(lengths)) if n else 0,
        "total_episodes": n,
        "avg_episode_length": ls["mean"],
        "avg_episode_reward": rs["mean"],
        "std_episode_length": ls["std"],
        "min_episode_length": int(ls["min"]),
        "max_episode_length": int(ls["max"]),
        "std_episode_reward": rs["std"],
        "min_episode_reward": rs["min"],
        "max_episode_reward": rs["max"],
        "terminated_episodes": int(np.count_nonzero(flags & _TERM)) if n else 0,
        "truncated_episodes": int(np.count_nonzero(flags & _TRUNC)) if n else 0,
    }
