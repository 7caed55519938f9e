"""Pieces shared by the format converters (exporters and importers).

Contents:
    * :class:`MemoryEpisode` - an episode held in memory, with the same fields as the core ``Episode``.
    * :class:`MemoryDataset` - the ``Dataset`` API over a (possibly lazy) sequence of episodes; what the
      importers return for foreign formats (Minari, D4RL, robomimic / Isaac Lab, trajectory files).
    * Nested-value helpers: :func:`leaf_paths`, :func:`get_leaf`, :func:`take_rows`, :func:`row`,
      :func:`concat_nested`, :func:`nested_equal`, :func:`flatten_infos`, :func:`unflatten_infos`.
    * :func:`flatten_batch` / :func:`unflatten_batch` - ``gymnasium.spaces.flatten`` over many rows at once.
    * :func:`atomic_path` - write an export under a temporary name in the target directory, then rename, so
      that a failure never leaves a half-written file under the final name.
    * :func:`episodes_of`, :func:`env_spec_json` - read the dataset-like objects the exporters accept.

Nested values follow the core's rules: a Dict space gives a dict of arrays, a Tuple a tuple, Text a list of
``str``; the leading axis is time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from gym_aquacollect.data.exports import ExportMixin
from gym_aquacollect.schema.nested import (  # noqa: F401 - re-exported for the formats
    ExportError,
    concat_nested,
    flatten_batch,
    flatten_infos,
    get_leaf,
    leaf_paths,
    nested_equal,
    nested_len,
    row,
    set_leaf,
    take_rows,
    unflatten_batch,
    unflatten_infos,
)

__all__ = [
    "MemoryEpisode",
    "MemoryDataset",
    "LazyEpisodes",
    "leaf_paths",
    "get_leaf",
    "take_rows",
    "row",
    "concat_nested",
    "nested_equal",
    "flatten_infos",
    "unflatten_infos",
    "flatten_batch",
    "unflatten_batch",
    "atomic_path",
    "episodes_of",
    "env_spec_json",
    "episode_success",
    "ExportError",
]


# ------------------------------------------------------------------------------------------------
# In-memory episodes and datasets
# ------------------------------------------------------------------------------------------------
@dataclass
class MemoryEpisode:
    """One episode of ``T`` steps held in memory (same fields as the core ``Episode``).

    Example:
        >>> import numpy as np
        >>> ep = MemoryEpisode(0, np.zeros((3, 2)), np.zeros(2, np.int64), np.ones(2), np.array([False, True]),
        ...                    np.zeros(2, bool))
        >>> len(ep), ep.observations.shape
        (2, (3, 2))
    """

    id: int
    observations: Any
    actions: Any
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    infos: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.rewards))

    def __repr__(self) -> str:
        return f"MemoryEpisode(id={self.id}, steps={len(self)}, return={float(np.sum(self.rewards)):.4g})"


class LazyEpisodes(Sequence):
    """A read-only sequence that loads episode ``i`` with ``load(i)`` on access (no caching)."""

    def __init__(self, n: int, load: Callable[[int], MemoryEpisode]) -> None:
        self._n, self._load = int(n), load

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self._load(j) for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"episode index {i} out of range for {self._n} episodes")
        return self._load(i)


class MemoryDataset(ExportMixin):
    """The ``Dataset`` API over episodes that are not in gym_aquacollect's own storage.

    Importers return this for Minari, D4RL, robomimic / Isaac Lab and trajectory files, so the same code reads
    every source and every exporter accepts it.

    Args:
        episodes: a sequence of :class:`MemoryEpisode` (or a :class:`LazyEpisodes`).
        observation_space, action_space: the spaces of one step.
        env_spec: the recorded env's ``EnvSpec`` (or its JSON string), or None; kept as an ``EnvSpec``.
        metadata: dataset-level metadata (``source_format`` says where it came from).
        path: the file or directory it was read from.
        episode_lengths: the episode lengths when known without loading the episodes.

    Example:
        >>> import numpy as np
        >>> from gymnasium import spaces
        >>> ep = MemoryEpisode(0, np.zeros((3, 1), np.float32), np.zeros(2, np.int64), np.ones(2),
        ...                    np.array([False, True]), np.zeros(2, bool))
        >>> ds = MemoryDataset([ep], spaces.Box(-1, 1, (1,)), spaces.Discrete(2))
        >>> len(ds), ds.total_steps, ds.statistics()["avg_episode_reward"]
        (1, 2, 2.0)
    """

    def __init__(
        self,
        episodes: Sequence[MemoryEpisode],
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        env_spec: Any = None,
        metadata: dict | None = None,
        path: str | os.PathLike | None = None,
        episode_lengths: Sequence[int] | None = None,
    ) -> None:
        self._episodes = episodes
        self.observation_space = observation_space
        self.action_space = action_space
        from gym_aquacollect.data.env_spec import parse_env_spec

        #: the recorded env's ``gymnasium`` ``EnvSpec`` (plain data; see :meth:`recover_environment`), or None
        self.env_spec = parse_env_spec(env_spec, source=str(path) if path is not None else "the dataset")
        self.metadata = dict(metadata or {})
        self.path = Path(path) if path is not None else None
        self._lengths = None if episode_lengths is None else np.asarray(episode_lengths, dtype=np.int64)

    # -- the Dataset API -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._episodes)

    def __getitem__(self, i: int) -> MemoryEpisode:
        return self._episodes[i]

    def __iter__(self) -> Iterator[MemoryEpisode]:
        return self.iterate_episodes()

    def iterate_episodes(self, episode_indices: Iterable[int] | None = None) -> Iterator[MemoryEpisode]:
        idx = range(len(self)) if episode_indices is None else episode_indices
        for i in idx:
            yield self._episodes[i]

    @property
    def episode_lengths(self) -> np.ndarray:
        if self._lengths is None:
            self._lengths = np.asarray([len(ep) for ep in self.iterate_episodes()], dtype=np.int64)
        return self._lengths

    @property
    def total_episodes(self) -> int:
        return len(self)

    @property
    def total_steps(self) -> int:
        return int(self.episode_lengths.sum())

    def sample_episodes(self, n: int, seed: int | None = None) -> list[MemoryEpisode]:
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(self), size=n, replace=False)
        return [self._episodes[int(i)] for i in idx]

    def filter_episodes(self, predicate: Callable[[MemoryEpisode], bool]) -> MemoryDataset:
        kept = [ep for ep in self.iterate_episodes() if predicate(ep)]
        return MemoryDataset(kept, self.observation_space, self.action_space, env_spec=self.env_spec,
                             metadata=self.metadata, path=self.path)

    def recover_environment(self, *, trust_env_spec: bool = False, **make_kwargs: Any) -> Any:
        """Make the recorded env from the local registry (see :meth:`gym_aquacollect.Dataset.recover_environment`)."""
        from gym_aquacollect.data.env_spec import recover_environment

        return recover_environment(self.env_spec, trust_env_spec=trust_env_spec, **make_kwargs)

    def statistics(self) -> dict[str, Any]:
        """The same statistics as :meth:`gym_aquacollect.Dataset.statistics` (without the storage keys)."""
        from gym_aquacollect.schema.stats import episode_statistics

        eps = list(self.iterate_episodes())
        returns = np.asarray([float(np.sum(ep.rewards)) for ep in eps], dtype=np.float64)
        flags = np.asarray([(1 if len(ep.terminations) and ep.terminations[-1] else 0)
                            | (2 if len(ep.truncations) and ep.truncations[-1] else 0) for ep in eps], dtype=np.uint8)
        return episode_statistics(self.episode_lengths, returns, flags)

    def __repr__(self) -> str:
        src = self.metadata.get("source_format", "memory")
        return f"MemoryDataset({src}, episodes={len(self)}, path={str(self.path) if self.path else None!r})"


# ------------------------------------------------------------------------------------------------
# Reading dataset-like objects
# ------------------------------------------------------------------------------------------------
def episodes_of(dataset: Any) -> Iterator[Any]:
    """Iterate the episodes of anything with ``iterate_episodes()``, ``__getitem__``/``__len__``, or an iterable."""
    if hasattr(dataset, "iterate_episodes"):
        yield from dataset.iterate_episodes()
    elif hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        for i in range(len(dataset)):
            yield dataset[i]
    else:
        yield from dataset


def env_spec_json(dataset: Any) -> str | None:
    """The dataset's env spec as a JSON string (or None), accepting an ``EnvSpec`` or a JSON string."""
    spec = getattr(dataset, "env_spec", None)
    if spec is None:
        return None
    if isinstance(spec, str):
        return spec
    if hasattr(spec, "to_json"):
        try:
            return spec.to_json()
        except (TypeError, ValueError):
            return None
    if isinstance(spec, dict):
        return json.dumps(spec)
    return None


def episode_success(ep: Any) -> bool | None:
    """Whether the episode succeeded, when known: ``metadata["success"]``, else the last ``is_success`` /
    ``success`` info value, else None."""
    meta = getattr(ep, "metadata", None) or {}
    if meta.get("success") is not None:
        return bool(meta["success"])
    infos = getattr(ep, "infos", None) or {}
    for key in ("success", "is_success"):
        if key in infos and not isinstance(infos[key], dict):
            vals = np.asarray(infos[key])
            mask = infos.get("_" + key)
            if mask is not None:
                mask = np.asarray(mask, dtype=bool)
                if not mask[-1]:
                    continue
            if vals.ndim >= 1 and vals.shape[0] > 0 and vals.dtype.kind in "biuf":
                return bool(np.all(vals[-1]))
    return None


# ------------------------------------------------------------------------------------------------
# Atomic output
# ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, overwrite: bool = False, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success rename it to ``final``, on error delete it.

    Raises ``FileExistsError`` before writing anything when ``final`` exists and ``overwrite`` is False.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; choose another output path or pass overwrite=True")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        if final.exists():
            trash = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
            os.replace(tmp, final)
            (shutil.rmtree if trash.is_dir() else os.remove)(trash)
        else:
            os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise
