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

from .dataset import Dataset, _Ref

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


def _rows(ds: Dataset, ref: _Ref, kind: str, name: str, start: int, count: int) -> np.ndarray:
    """Rows ``start:start+count`` of one episode's column (across its segments) without reading the rest."""
    ds._ensure_pid()
    parts = []
    pos = 0
    for si, o0, on, s0, sn in ref.segments:
        seg_start, seg_n = (o0, on) if kind == "obs" else (s0, sn)
        lo, hi = max(start, pos), min(start + count, pos + seg_n)
        if lo < hi:
            r = ds._readers[si]
            if name in r.columns[kind]:
                parts.append(r.read(kind, name, seg_start + lo - pos, hi - lo))
            else:
                dtype, shape = ds._columns[kind][name]
                parts.append(np.zeros((hi - lo, *shape), dtype=object if dtype.kind == "O" else dtype))
        pos += seg_n
        if pos >= start + count:
            break
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


class TorchDataset:
    """A map-style ``torch.utils.data.Dataset`` over a :class:`~gym_aquacollect.Dataset`.

    Args:
        dataset: the dataset (or a path to one).
        unit: ``"transitions"`` (one item per step: ``obs``, ``action``, ``reward``, ``next_obs``,
            ``terminated``, ``truncated``, ``episode_id``, ``t``) or ``"episodes"`` (one item per
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
            from .dataset import load_dataset

            dataset = load_dataset(dataset)
        self.dataset = dataset
        self.unit = unit
        self.as_tensors = as_tensors
        self._starts = np.concatenate([[0], np.cumsum(dataset.episode_lengths)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self._starts[-1]) if self.unit == "transitions" else len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"item {i} out of range: this view has {n} {self.unit}")
        i = int(i) % n
        item = self._transition(i) if self.unit == "transitions" else self._episode(i)
        return to_tensors(item) if self.as_tensors else item

    def _transition(self, i: int) -> dict[str, Any]:
        ds = self.dataset
        e = int(np.searchsorted(self._starts, i, side="right")) - 1
        t = i - int(self._starts[e])
        ref = ds._refs[e]
        obs2 = ds._obs_codec.read([_rows(ds, ref, "obs", n, t, 2) for n in ds._obs_names])
        act = ds._act_codec.read([_rows(ds, ref, "step", n, t, 1) for n in ds._act_names])
        rew = _rows(ds, ref, "step", "rewards", t, 1)
        term = _rows(ds, ref, "step", "terminations", t, 1).astype(bool)
        trunc = _rows(ds, ref, "step", "truncations", t, 1).astype(bool)
        if t == ref.length - 1:  # the episode's flags decide its last step (as Episode.truncations says)
            term |= bool(ref.flags & 1)
            trunc |= bool(ref.flags & 2)
        return {
            "obs": _index(obs2, 0), "action": _index(act, 0), "reward": rew[0], "next_obs": _index(obs2, 1),
            "terminated": term[0], "truncated": trunc[0], "episode_id": e, "t": t,
        }

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
