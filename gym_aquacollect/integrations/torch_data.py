"""PyTorch views of a dataset for DataLoaders with worker processes.

Contents:
    * :class:`TorchDataset` - a map-style ``torch.utils.data.Dataset`` of transitions (``obs``, ``action``,
      ``reward``, ``next_obs``, ``terminated``, ``truncated``: the keys of ``BufferCollector.sample``) or of
      whole episodes.

h5py file handles do not survive ``fork`` and cannot be pickled. A :class:`TorchDataset` holds a
:class:`~gym_aquacollect.Dataset`, which reopens its shard files in each process that uses it (forked
DataLoader workers notice the new pid; spawned ones unpickle a handle-free copy), so every worker reads
through its own HDF5 handles and ``num_workers > 0`` is safe with either start method.

Example:
    >>> import tempfile, gymnasium as gym
    >>> from gym_aquacollect import CollectingWrapper, load_dataset
    >>> path = tempfile.mkdtemp() + "/ds"
    >>> with CollectingWrapper(gym.make("CartPole-v1"), path) as env:
    ...     _ = env.reset(seed=0)
    ...     for _ in range(40):
    ...         *_, term, trunc, _ = env.step(0)
    ...         if term or trunc:
    ...             _ = env.reset()
    >>> tds = load_dataset(path).as_torch_dataset()
    >>> len(tds), sorted(tds[0])[:3], tuple(tds[0]["obs"].shape)
    (40, ['action', 'episode_id', 'next_obs'], (4,))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gym_aquacollect.data.dataset import Dataset

__all__ = ["TorchDataset", "to_tensors"]


def to_tensors(x: Any) -> Any:
    """Numeric arrays (nested in dicts / tuples) become torch tensors; strings stay as they are."""
    import torch

    if isinstance(x, dict):
        return {k: to_tensors(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(to_tensors(v) for v in x)
    if getattr(x, "lazy_frames", False):  # a video-coded column (storage.codecs.LazyFrames): decode it
        x = np.asarray(x)
    if isinstance(x, np.ndarray):
        if x.dtype.kind == "O":
            return x.tolist()
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, (np.generic, bool, int, float)):
        return torch.as_tensor(np.asarray(x))
    return x


class TorchDataset:
    """A map-style ``torch.utils.data.Dataset`` over a :class:`~gym_aquacollect.Dataset`.

    Args:
        dataset: the dataset (or a path to one).
        unit: ``"transitions"`` (one item per step: ``obs``, ``action``, ``reward``, ``next_obs``,
            ``terminated``, ``truncated``, ``episode_id``, ``t``; ``reward`` is float32 as in
            :meth:`Dataset.sample`) or ``"episodes"`` (one item per
            episode: ``observations`` (T+1), ``actions``, ``rewards``, ``terminations``, ``truncations``,
            ``episode_id``).
        as_tensors: return torch tensors (True) or numpy arrays.

    Example:
        >>> import torch, tempfile, gymnasium as gym
        >>> from gym_aquacollect import CollectingWrapper
        >>> path = tempfile.mkdtemp() + "/ds"
        >>> with CollectingWrapper(gym.make("CartPole-v1"), path) as env:
        ...     _ = env.reset(seed=0)
        ...     for _ in range(64):
        ...         *_, term, trunc, _ = env.step(1)
        ...         if term or trunc:
        ...             _ = env.reset()
        >>> loader = torch.utils.data.DataLoader(TorchDataset(path), batch_size=16, num_workers=2)
        >>> [tuple(b["obs"].shape) for b in loader][:2]
        [(16, 4), (16, 4)]
    """

    def __init__(self, dataset: Dataset | str, unit: str = "transitions", *, as_tensors: bool = True) -> None:
        if unit not in ("transitions", "episodes"):
            raise ValueError(f"unit must be 'transitions' or 'episodes', got {unit!r}")
        if not isinstance(dataset, Dataset):
            from gym_aquacollect.data.dataset import load_dataset

            dataset = load_dataset(dataset)
        self.dataset = dataset
        self.unit = unit
        self.as_tensors = as_tensors
        self._starts = np.concatenate([[0], np.cumsum(dataset.episode_lengths)]).astype(np.int64)
        if unit == "transitions":  # items come from the dataset's transition store, decoded once (before
            dataset.transition_store().load()  # DataLoader workers fork, so they share it)

    def __len__(self) -> int:
        return int(self._starts[-1]) if self.unit == "transitions" else len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"item {i} out of range: this view has {n} {self.unit}")
        i = int(i) % n
        item = self._transition(i) if self.unit == "transitions" else self._episode(i)
        return to_tensors(item) if self.as_tensors else item

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """What DataLoader's fetcher calls for a whole batch: one gather per column, then split."""
        if self.unit != "transitions":
            return [self[i] for i in indices]
        n = len(self)
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) and not ((idx >= -n) & (idx < n)).all():
            raise IndexError(f"an item of {indices[:8]}... is out of range: this view has {n} transitions")
        items = self._transitions(idx % n if len(idx) else idx)
        return [to_tensors(x) for x in items] if self.as_tensors else items

    def _transition(self, i: int) -> dict[str, Any]:
        return self._transitions(np.asarray([i], dtype=np.int64))[0]

    def _transitions(self, idx: np.ndarray) -> list[dict[str, Any]]:
        batch = self.dataset.transition_store().batch(idx)
        e = np.searchsorted(self._starts, idx, side="right") - 1
        t = idx - self._starts[e]
        return [dict({k: _index(v, j) for k, v in batch.items()}, episode_id=int(e[j]), t=int(t[j]))
                for j in range(len(idx))]

    def _episode(self, i: int) -> dict[str, Any]:
        ep = self.dataset[i]
        return {"observations": ep.observations, "actions": ep.actions, "rewards": ep.rewards,
                "terminations": ep.terminations, "truncations": ep.truncations, "episode_id": i}

    def __repr__(self) -> str:
        return f"TorchDataset({self.dataset!r}, unit={self.unit!r}, items={len(self)})"


def _index(x: Any, k: int) -> Any:
    if isinstance(x, dict):
        return {key: _index(v, k) for key, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_index(v, k) for v in x)
    if isinstance(x, list):
        return x[k]
    return x[k]
