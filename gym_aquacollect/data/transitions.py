"""A dataset's steps as one flat stream of transitions, for training.

Contents:
    * :class:`TransitionStore` - the transition index of a :class:`~gym_aquacollect.Dataset`, its decoded
      columns cached in RAM within a memory budget, uniform sampling (:meth:`TransitionStore.sample`),
      the whole dataset as flat arrays (:meth:`TransitionStore.transitions`) and chunk-order streaming with a
      shuffle buffer (:meth:`TransitionStore.iter_batches`) for datasets bigger than the budget.
    * :func:`default_cache_bytes` - the budget used when none is given (a quarter of physical memory).

Transition ``i`` is step ``t`` of episode ``e`` in dataset order (episode 0's steps, then episode 1's, ...).
Its ``obs`` is ``ds[e].observations[t]`` and its ``next_obs`` is ``ds[e].observations[t + 1]``: for the
last step of an episode that is the episode's own final observation, never the next episode's reset.
``terminated`` / ``truncated`` are ``ds[e].terminations[t]`` / ``ds[e].truncations[t]``: an episode
interrupted by ``reset()``, ``close()`` or a crash (``include_partial=True``) ends with ``truncated=True``
on its last recorded step, the cut. ``reward`` is float32 (as ``BufferCollector.sample``).

Memory. Decoded columns (each observation leaf, each action leaf, rewards, the two flags) are cached
smallest first while their total fits ``cache_bytes``; the transition index itself costs about 28 bytes
per transition on top. When every column fits, sampling and epochs gather from RAM. Otherwise the
uncached columns are read from disk: :meth:`TransitionStore.sample` reads the sampled rows (random
reads, slow for compressed images), and :meth:`TransitionStore.iter_batches` streams the dataset in
storage order, a chunk (about 32 MiB decoded) at a time, with a shuffle buffer.

Randomness given up when streaming: chunks are visited in a fresh random order every epoch and the
transitions of ``window`` consecutive chunks (``shuffle_bytes`` decoded, 256 MiB by default) are
shuffled together, so one batch draws from a window of the dataset rather than from all of it, and
steps that were recorded close together (the same episode, the same vector block) are more likely to
share a batch than under a global permutation. Every transition is still yielded exactly once an epoch.

Example:
    >>> import tempfile, gymnasium as gym
    >>> from gym_aquacollect import CollectingWrapper, load_dataset
    >>> path = tempfile.mkdtemp() + "/ds"
    >>> with CollectingWrapper(gym.make("CartPole-v1"), path) as env:
    ...     _ = env.reset(seed=0)
    ...     for _ in range(100):
    ...         *_, term, trunc, _ = env.step(1)
    ...         if term or trunc:
    ...             _ = env.reset()
    >>> ds = load_dataset(path)
    >>> batch = ds.sample(32, seed=0)
    >>> sorted(batch), batch["obs"].shape, batch["reward"].dtype
    (['action', 'next_obs', 'obs', 'reward', 'terminated', 'truncated'], (32, 4), dtype('float32'))
    >>> flat = ds.transitions()
    >>> len(flat["obs"]) == ds.total_steps, bool((flat["next_obs"][0] == ds[0].observations[1]).all())
    (True, True)

Size: over 500 lines because the transition view (caching, next_obs across shards, sampling) is one cache whose parts share its state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gym_aquacollect.storage.manifest import DatasetFormatError

if TYPE_CHECKING:  # pragma: no cover
    from gym_aquacollect.data.dataset import Dataset

__all__ = ["TransitionStore", "default_cache_bytes", "CACHE_FRACTION", "CHUNK_BYTES", "SHUFFLE_BYTES"]

#: Share of physical memory used for cached columns when ``cache_bytes`` is not given.
CACHE_FRACTION = 0.25
#: Decoded bytes per streaming chunk (one read per column per chunk).
CHUNK_BYTES = 32 << 20
#: Decoded bytes of the streaming shuffle window, by default.
SHUFFLE_BYTES = 256 << 20
_TEXT_ROW_BYTES = 64  # estimate for a cached str row
_TERM, _TRUNC = 1, 2
_BATCH_KEYS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


def default_cache_bytes() -> int:
    """A quarter (:data:`CACHE_FRACTION`) of this machine's physical memory."""
    import psutil

    return int(psutil.virtual_memory().total * CACHE_FRACTION)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(s, s + c)`` for each (s, c), vectorised."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.cumsum(counts) - counts
    return np.repeat(np.asarray(starts, np.int64) - offsets, counts) + np.arange(total, dtype=np.int64)


@dataclass
class _Column:
    """One decoded column: ``kind`` ("obs": N+E rows in episode order, "step": N rows) and its name in
    the shard files."""

    kind: str
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    rows: int

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def is_text(self) -> bool:
        return self.dtype.kind == "O"

    @property
    def row_nbytes(self) -> int:
        if self.is_text:
            return _TEXT_ROW_BYTES
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.rows * self.row_nbytes


class TransitionStore:
    """The transitions of a :class:`~gym_aquacollect.Dataset` (see the module docstring).

    Built by :meth:`Dataset.sample` / :meth:`Dataset.transitions` / :meth:`Dataset.dataloader` on first
    use and rebuilt after :meth:`Dataset.refresh`; columns are decoded into the cache on first use.

    Args:
        dataset: a single-agent dataset.
        cache_bytes: the budget for decoded columns (None: :func:`default_cache_bytes`; 0: read everything
            from disk).

    Raises:
        ValueError: the dataset is multi-agent (its steps are joint steps of several agents).
        DatasetFormatError: an episode's rows do not add up (names the episode and shard).
    """

    def __init__(self, dataset: Dataset, cache_bytes: int | None = None) -> None:
        if dataset.agents:
            raise ValueError(
                f"{dataset.path}: a multi-agent dataset (agents {dataset.agents}) has no single stream of "
                "transitions; read one agent's trajectory with ds[i].agent(name), or export per agent"
            )
        self._ds = dataset
        self._refs = dataset._refs
        self.cache_bytes = default_cache_bytes() if cache_bytes is None else int(cache_bytes)
        if self.cache_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {cache_bytes}")
        self._build_index()
        n, e = self.n, self.n_episodes
        self._obs_cols = [_Column("obs", name, leaf.dtype, leaf.shape, n + e)
                          for name, leaf in zip(dataset._obs_names, dataset._obs_codec.leaves)]
        self._act_cols = [_Column("step", name, leaf.dtype, leaf.shape, n)
                          for name, leaf in zip(dataset._act_names, dataset._act_codec.leaves)]
        self._rew = _Column("step", "rewards", np.dtype(np.float32), (), n)
        self._term = _Column("step", "terminations", np.dtype(bool), (), n)
        self._trunc = _Column("step", "truncations", np.dtype(bool), (), n)
        self.columns = [*self._obs_cols, *self._act_cols, self._rew, self._term, self._trunc]
        budget, self._planned = self.cache_bytes, set()
        for col in sorted(self.columns, key=lambda c: c.nbytes):
            if col.nbytes <= budget:
                self._planned.add(col.key)
                budget -= col.nbytes
        self._cache: dict[str, np.ndarray] = {}
        self._rng = np.random.default_rng()
        self._fast: tuple | None = None

    # -- index -----------------------------------------------------------------------------------------
    def _build_index(self) -> None:
        refs = self._refs
        e = len(refs)
        lengths = np.fromiter((r.length for r in refs), np.int64, e)
        flags = np.fromiter((r.flags for r in refs), np.int64, e)
        nseg = np.fromiter((len(r.segments) for r in refs), np.int64, e)
        seg = np.asarray([s for r in refs for s in r.segments], np.int64).reshape(-1, 5)
        seg_ep = np.repeat(np.arange(e), nseg)
        obs_rows = np.bincount(seg_ep, weights=seg[:, 2], minlength=e).astype(np.int64)
        bad = np.nonzero(obs_rows != lengths + 1)[0]
        if len(bad):
            i = int(bad[0])
            shard = self._ds._readers[refs[i].segments[0][0]].path if refs[i].segments else self._ds.path
            raise DatasetFormatError(
                f"{shard}: episode {i} has {int(obs_rows[i])} observation rows for {int(lengths[i])} steps "
                f"(expected {int(lengths[i]) + 1}); its transitions cannot be aligned. Run `aquacollect "
                "validate`, or drop it with ds.filter_episodes(...)"
            )
        self.n_episodes = e
        self.episode_starts = np.zeros(e + 1, np.int64)
        np.cumsum(lengths, out=self.episode_starts[1:])
        self.n = n = int(self.episode_starts[-1])
        #: obs row (in episode order, T+1 per episode) of each transition; next_obs is the row after
        self.t_obs = np.arange(n, dtype=np.int64) + np.repeat(np.arange(e, dtype=np.int64), lengths)
        self._loc = {
            "step": (np.repeat(seg[:, 0], seg[:, 4]).astype(np.int32), _ranges(seg[:, 3], seg[:, 4])),
            "obs": (np.repeat(seg[:, 0], seg[:, 2]).astype(np.int32), _ranges(seg[:, 1], seg[:, 2])),
        }
        last = self.episode_starts[1:] - 1
        has = lengths > 0
        self._last_term = np.sort(last[has & (flags & _TERM != 0)])
        self._last_trunc = np.sort(last[has & (flags & _TRUNC != 0)])
        self._order: dict[str, np.ndarray] = {}
        self._units: dict[tuple[str, int], list[tuple[int, int]]] = {}

    def storage_order(self, kind: str) -> np.ndarray:
        """Row ids of ``kind`` ("step": transitions, "obs": observation rows) sorted by where they are
        stored (shard, row): the order that reads the files sequentially."""
        if kind not in self._order:
            shard, row = self._loc[kind]
            self._order[kind] = np.lexsort((row, shard))
        return self._order[kind]

    def chunks(self, kind: str = "step", rows: int | None = None) -> list[tuple[int, int]]:
        """Pieces ``(start, stop)`` of :meth:`storage_order` each inside one shard and at most ``rows`` long
        (default: :data:`CHUNK_BYTES` of decoded transitions)."""
        if rows is None:
            rows = max(256, CHUNK_BYTES // max(1, self.transition_nbytes))
        key = (kind, int(rows))
        if key not in self._units:
            order = self.storage_order(kind)
            shard = self._loc[kind][0][order]
            cuts = [0, *(np.nonzero(np.diff(shard))[0] + 1).tolist(), len(order)]
            units = []
            for a, b in zip(cuts[:-1], cuts[1:]):
                units.extend((s, min(s + rows, b)) for s in range(a, b, rows))
            self._units[key] = units
        return self._units[key]

    @property
    def transition_nbytes(self) -> int:
        """Decoded bytes of one transition (obs and next_obs counted)."""
        return 2 * sum(c.row_nbytes for c in self._obs_cols) + sum(c.row_nbytes for c in self.columns[len(self._obs_cols):])

    # -- cache -----------------------------------------------------------------------------------------
    @property
    def fully_cached(self) -> bool:
        """Whether every column fits the budget (sampling and epochs then run from RAM)."""
        return len(self._planned) == len(self.columns)

    def info(self) -> dict[str, Any]:
        """The cache plan: budget, bytes per column, which are cached/loaded, index bytes."""
        return {
            "cache_bytes": self.cache_bytes,
            "transitions": self.n,
            "fully_cached": self.fully_cached,
            "columns": {c.key: {"bytes": c.nbytes, "cached": c.key in self._planned, "loaded": c.key in self._cache}
                        for c in self.columns},
            "cached_bytes": sum(c.nbytes for c in self.columns if c.key in self._planned),
            "loaded_bytes": sum(a.nbytes for a in self._cache.values()),
            "index_bytes": int(self.t_obs.nbytes + sum(a.nbytes + b.nbytes for a, b in self._loc.values())),
        }

    def load(self, progress: bool | None = None) -> TransitionStore:
        """Decode every column the budget allows into RAM now (otherwise this happens on first use)."""
        todo = [c for c in self.columns if c.key in self._planned and c.key not in self._cache]
        if not todo:
            return self
        total = sum(c.nbytes for c in todo)
        from tqdm.auto import tqdm

        show = total >= (512 << 20) if progress is None else progress
        with tqdm(total=total, unit="B", unit_scale=True, desc="decoding columns", disable=not show,
                  leave=False) as bar:
            for c in todo:
                self._load_column(c, bar)
        return self

    def _load_column(self, col: _Column, bar: Any = None) -> np.ndarray:
        arr = self._cache.get(col.key)
        if arr is not None:
            return arr
        out = np.empty((col.rows, *col.shape), dtype=col.dtype)
        order = self.storage_order(col.kind)
        shard, row = self._loc[col.kind]
        for a, b in self.chunks(col.kind, max(256, CHUNK_BYTES // max(1, col.row_nbytes))):
            ids = order[a:b]
            d0, r0, k = int(ids[0]), int(row[ids[0]]), b - a
            if int(ids[-1]) - d0 == k - 1 and int(row[ids[-1]]) - r0 == k - 1 and not col.is_text \
                    and col is not self._term and col is not self._trunc and self._direct(col, int(shard[ids[0]]),
                                                                                         r0, out, d0, k):
                pass  # same order on disk and in the dataset: decoded straight into the cache
            else:
                out[ids] = self._read(col, ids)
            if bar is not None:
                bar.update((b - a) * col.row_nbytes)
        self._cache[col.key] = out
        self._fast = None
        return out

    def _direct(self, col: _Column, s: int, r0: int, out: np.ndarray, d0: int, k: int) -> bool:
        """Decode rows ``r0:r0+k`` of shard ``s`` straight into ``out[d0:d0+k]`` (one copy); False when
        this shard lacks the column or its dtype differs (the general path handles those)."""
        self._ds._ensure_pid()
        reader = self._ds._readers[s]
        h5 = reader.columns[col.kind].get(col.name)
        if h5 is None or not hasattr(h5, "read_direct") or h5.dtype != col.dtype or h5.shape[0] < r0 + k:
            return False  # absent, another dtype, or a coded (video) column: the general path decodes it
        try:
            # into a view of exactly the destination rows: HDF5 is ~7x slower with a row selection of a
            # large memory space (measured)
            h5.read_direct(out[d0:d0 + k], source_sel=np.s_[r0:r0 + k])
        except (OSError, ValueError, RuntimeError, TypeError) as e:
            raise DatasetFormatError(
                f"{reader.path}: cannot read column {col.kind}/{col.name} rows {r0}..{r0 + k} "
                f"({type(e).__name__}: {e}); the shard is corrupt. Run `aquacollect validate`."
            ) from None
        return True

    def _read(self, col: _Column, ids: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``ids`` of ``col`` (in its episode order) read from the shard files (into ``out``)."""
        ds = self._ds
        ds._ensure_pid()
        shard, row = self._loc[col.kind]
        sh, rows = shard[ids], row[ids]
        if out is None:
            out = np.empty((len(ids), *col.shape), dtype=col.dtype)
        if not len(ids):
            return out
        groups: Any = [(int(sh[0]), slice(None))] if (sh == sh[0]).all() else [
            (int(s), sh == s) for s in np.unique(sh)]
        for s, m in groups:
            r = rows[m]
            reader = ds._readers[s]
            h5 = reader.columns[col.kind].get(col.name)
            if h5 is None:  # a column this shard lacks reads as its fill value
                out[m] = "" if col.is_text else 0
                continue
            lo, hi = int(r.min()), int(r.max()) + 1
            try:
                if hi - lo <= 2 * len(r) + 4096 or not hasattr(h5, "chunks"):  # coded columns read lazily
                    block = reader.read(col.kind, col.name, lo, hi - lo)
                    if len(block) < hi - lo:
                        raise ValueError(f"rows {lo}..{hi} requested, the column holds {len(h5)}")
                    out[m] = block if len(r) == hi - lo and r[-1] - r[0] == len(r) - 1 and (
                        len(r) < 2 or bool((np.diff(r) == 1).all())) else block[r - lo]
                else:  # sparse: one read per HDF5 chunk touched (each chunk is decoded once)
                    u, inv = np.unique(r, return_inverse=True)
                    out[m] = self._sparse(reader, h5, col, u)[inv]
            except DatasetFormatError:
                raise
            except (OSError, ValueError, RuntimeError, TypeError, IndexError) as e:
                raise DatasetFormatError(
                    f"{reader.path}: cannot read column {col.kind}/{col.name} ({type(e).__name__}: {e}); the "
                    "shard is corrupt. Run `aquacollect validate`."
                ) from None
        if col is self._term or col is self._trunc:
            last = self._last_term if col is self._term else self._last_trunc
            if len(last):
                pos = np.minimum(np.searchsorted(last, ids), len(last) - 1)
                out[last[pos] == ids] = True
        return out

    @staticmethod
    def _sparse(reader: Any, h5: Any, col: _Column, rows: np.ndarray) -> np.ndarray:
        """Sorted distinct ``rows`` of one shard column: rows that share an HDF5 chunk come from one read
        of their span (h5py's fancy indexing is far slower for scattered rows)."""
        out = np.empty((len(rows), *col.shape), dtype=col.dtype)
        chunk = rows // (h5.chunks[0] if h5.chunks else 1)
        cuts = [0, *(np.nonzero(np.diff(chunk))[0] + 1).tolist(), len(rows)]
        for a, b in zip(cuts[:-1], cuts[1:]):
            lo, hi = int(rows[a]), int(rows[b - 1]) + 1
            block = reader.read(col.kind, col.name, lo, hi - lo)
            if len(block) < hi - lo:
                raise ValueError(f"rows {lo}..{hi} requested, the column holds {len(h5)}")
            out[a:b] = block[rows[a:b] - lo]
        return out

    def _get(self, col: _Column, ids: Any) -> np.ndarray:
        if col.key in self._planned:
            arr = self._load_column(col)
            return np.array(arr[ids]) if isinstance(ids, slice) else arr[ids]
        if isinstance(ids, slice):
            ids = np.arange(*ids.indices(col.rows))
        return self._read(col, np.asarray(ids, np.int64))

    # -- batches ---------------------------------------------------------------------------------------
    def flat_batch(self, ids: Any, *, with_next: bool = True) -> dict[str, Any]:
        """Transitions ``ids`` (an int array or a slice) as flat columns: ``obs/<leaf>``,
        ``next_obs/<leaf>``, ``action/<leaf>``, ``reward``, ``terminated``, ``truncated``."""
        out: dict[str, Any] = {}
        o = self.t_obs[ids]
        o1 = o + 1
        for c in self._obs_cols:
            if with_next and c.key not in self._planned:  # one read of the rows for both
                both = self._read(c, np.concatenate((o, o1)))
                out["obs/" + c.name], out["next_obs/" + c.name] = both[:len(o)], both[len(o):]
                continue
            out["obs/" + c.name] = self._get(c, o)
            if with_next:
                out["next_obs/" + c.name] = self._get(c, o1)
        for c in self._act_cols:
            out["action/" + c.name] = self._get(c, ids)
        out["reward"] = self._get(self._rew, ids)
        out["terminated"] = self._get(self._term, ids)
        out["truncated"] = self._get(self._trunc, ids)
        return out

    def nest(self, flat: dict[str, Any]) -> dict[str, Any]:
        """Flat columns (:meth:`flat_batch`) to the batch dict, nested like the spaces."""
        ds = self._ds
        out = {
            "obs": ds._obs_codec.read([flat["obs/" + c.name] for c in self._obs_cols]),
            "action": ds._act_codec.read([flat["action/" + c.name] for c in self._act_cols]),
            "reward": flat["reward"],
        }
        if "next_obs/" + self._obs_cols[0].name in flat:
            out["next_obs"] = ds._obs_codec.read([flat["next_obs/" + c.name] for c in self._obs_cols])
        out["terminated"], out["truncated"] = flat["terminated"], flat["truncated"]
        return {k: out[k] for k in _BATCH_KEYS if k in out} | {k: v for k, v in flat.items() if k == "index"}

    def batch(self, ids: Any) -> dict[str, Any]:
        """Transitions ``ids`` as the nested batch dict."""
        return self.nest(self.flat_batch(ids))

    def _fast_path(self) -> tuple | None:
        """For simple (non-nested, non-text) spaces with every column cached: the arrays themselves."""
        if self._fast is None and self.fully_cached and len(self._obs_cols) == 1 and len(self._act_cols) == 1 \
                and self._ds._obs_codec.simple and self._ds._act_codec.simple \
                and not self._obs_cols[0].is_text and not self._act_cols[0].is_text:
            self.load()
            self._fast = (self.t_obs, self._cache[self._obs_cols[0].key], self._cache[self._act_cols[0].key],
                          self._cache[self._rew.key], self._cache[self._term.key], self._cache[self._trunc.key])
        return self._fast

    def sample(self, batch_size: int, *, seed: int | None = None) -> dict[str, Any]:
        """``batch_size`` transitions drawn uniformly with replacement (reproducible with ``seed``)."""
        if self.n == 0:
            raise ValueError(f"{self._ds.path}: the dataset has no transitions to sample")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rng = self._rng if seed is None else np.random.default_rng(seed)
        ids = rng.integers(0, self.n, size=int(batch_size))
        fast = self._fast if self._fast is not None else self._fast_path()
        if fast is not None:
            t_obs, obs, act, rew, term, trunc = fast
            o = t_obs[ids]
            return {"obs": obs[o], "action": act[ids], "reward": rew[ids], "next_obs": obs[o + 1],
                    "terminated": term[ids], "truncated": trunc[ids]}
        return self.batch(ids)

    def transitions(self) -> dict[str, Any]:
        """Every transition in dataset order as flat arrays (a copy; nested like the spaces)."""
        if self.fully_cached:
            return self.batch(slice(0, self.n))
        flat: dict[str, np.ndarray] = {}
        order = self.storage_order("step")
        for a, b in self.chunks("step"):
            ids = order[a:b]
            part = self.flat_batch(ids)
            for k, v in part.items():
                if k not in flat:
                    flat[k] = np.empty((self.n, *v.shape[1:]), dtype=v.dtype)
                flat[k][ids] = v
        if not flat:
            flat = self.flat_batch(np.zeros(0, np.int64))
        return self.nest(flat)

    def iter_batches(self, batch_size: int, *, shuffle: bool = True, rng: np.random.Generator | None = None,
                     drop_last: bool = False, worker: tuple[int, int] = (0, 1), shuffle_bytes: int | None = None,
                     index: bool = False) -> Iterator[dict[str, Any]]:
        """Stream one epoch in storage order, :data:`CHUNK_BYTES` chunks at a time: flat batches (see
        :meth:`flat_batch`; with ``index`` also the transition ids under ``"index"``).

        With ``shuffle`` the chunks come in a random order and the transitions of each window of chunks
        (``shuffle_bytes`` decoded) are permuted together; the remainder of a window that does not fill a
        batch is carried into the next. ``worker=(i, k)`` keeps every k-th chunk from the i-th (the
        split between DataLoader workers). Every transition comes exactly once.
        """
        rng = rng if rng is not None else np.random.default_rng()
        order = self.storage_order("step")
        units = self.chunks("step")
        pos = rng.permutation(len(units)) if shuffle else np.arange(len(units))
        mine = [units[int(p)] for p in pos[worker[0]::worker[1]]]
        window = 1
        if shuffle:
            sb = SHUFFLE_BYTES if shuffle_bytes is None else int(shuffle_bytes)
            window = max(1, sb // max(1, CHUNK_BYTES))
        bufs: dict[str, np.ndarray] = {}
        carry: dict[str, np.ndarray] | None = None
        for w in range(0, len(mine), window):
            part = self._read_window([order[a:b] for a, b in mine[w:w + window]], bufs, index)
            m = len(part["ids"])
            sel = rng.permutation(m) if shuffle else np.arange(m)
            start = 0
            if carry is not None:
                need = batch_size - len(carry["reward"])
                head = self._take(part, sel[:need])
                part_batch = {k: np.concatenate((carry[k], v)) for k, v in head.items()}
                carry, start = None, min(need, m)
                if len(part_batch["reward"]) < batch_size:
                    carry = part_batch
                    continue
                yield part_batch
            full = start + (m - start) // batch_size * batch_size
            for s in range(start, full, batch_size):
                yield self._take(part, sel[s:s + batch_size])
            if full < m:
                carry = self._take(part, sel[full:])
        if carry is not None and not drop_last:
            yield carry

    def _read_window(self, chunk_ids: list[np.ndarray], bufs: dict[str, np.ndarray], index: bool) -> dict[str, Any]:
        """Read the uncached columns of one shuffle window's chunks, each chunk in storage order, into
        reused buffers (cached columns are gathered from the cache by :meth:`_take`). An observation
        column's rows for a chunk are one span of its shard, read once straight into the buffer, which
        serves both ``obs`` and ``next_obs``; ``pos_obs`` / ``pos_next`` say where each position's rows are."""
        m = sum(len(c) for c in chunk_ids)
        ids = np.concatenate(chunk_ids) if len(chunk_ids) > 1 else chunk_ids[0]
        pos_obs, pos_next = np.empty(m, np.int64), np.empty(m, np.int64)
        obs_todo = [c for c in self._obs_cols if c.key not in self._planned]
        step_todo = [c for c in self.columns[len(self._obs_cols):] if c.key not in self._planned]
        shard, row = self._loc["obs"]
        plan, base, off = [], 0, 0
        for c_ids in chunk_ids:  # layout: one span per chunk when its obs rows are dense in one shard
            k = len(c_ids)
            o = self.t_obs[c_ids]
            if obs_todo:
                sh, ro = shard[o], row[o]
                ro1 = row[o + 1]
                lo, hi = int(min(ro.min(), ro1.min())), int(max(ro.max(), ro1.max())) + 1
                if (sh == sh[0]).all() and (shard[o + 1] == sh[0]).all() and hi - lo <= 2 * k + 4096:
                    pos_obs[off:off + k], pos_next[off:off + k] = base + ro - lo, base + ro1 - lo
                    plan.append((c_ids, o, off, base, (int(sh[0]), lo, hi)))
                    base += hi - lo
                else:
                    pos_obs[off:off + k] = np.arange(base, base + k)
                    pos_next[off:off + k] = np.arange(base + k, base + 2 * k)
                    plan.append((c_ids, o, off, base, None))
                    base += 2 * k
            else:
                plan.append((c_ids, o, off, base, None))
            off += k

        def buf(key: str, col: _Column, rows: int) -> np.ndarray:
            b = bufs.get(key)
            if b is None or len(b) < rows:
                b = bufs[key] = np.empty((max(rows, 1), *col.shape), dtype=col.dtype)
            return b

        ds = self._ds
        for c_ids, o, off, start, span in plan:
            k = len(c_ids)
            for c in obs_todo:
                b = buf(c.key, c, base)
                if span is None:
                    self._read(c, np.concatenate((o, o + 1)), b[start:start + 2 * k])
                    continue
                s, lo, hi = span
                ds._ensure_pid()
                reader = ds._readers[s]
                h5 = reader.columns["obs"].get(c.name)
                if h5 is None:
                    b[start:start + hi - lo] = "" if c.is_text else 0
                elif not c.is_text and h5.dtype == c.dtype and h5.shape[0] >= hi:
                    self._direct(c, s, lo, b, start, hi - lo)
                else:
                    b[start:start + hi - lo] = reader.read("obs", c.name, lo, hi - lo)
            for c in step_todo:
                self._read(c, c_ids, buf(c.key, c, m)[off:off + k])
        return {"ids": ids, "pos_obs": pos_obs, "pos_next": pos_next, "bufs": bufs, "index": index}

    def _take(self, part: dict[str, Any], sel: np.ndarray) -> dict[str, np.ndarray]:
        """Window positions ``sel`` as a flat batch (fresh arrays: the window's buffers are reused)."""
        bufs = part["bufs"]
        ids = part["ids"][sel]
        out: dict[str, np.ndarray] = {}
        o = None
        for c in self._obs_cols:
            if c.key in self._planned:
                o = self.t_obs[ids] if o is None else o
                arr = self._load_column(c)
                out["obs/" + c.name], out["next_obs/" + c.name] = arr[o], arr[o + 1]
            else:
                b = bufs[c.key]
                out["obs/" + c.name], out["next_obs/" + c.name] = b[part["pos_obs"][sel]], b[part["pos_next"][sel]]
        for key, c in [*(("action/" + c.name, c) for c in self._act_cols), ("reward", self._rew),
                       ("terminated", self._term), ("truncated", self._trunc)]:
            out[key] = self._load_column(c)[ids] if c.key in self._planned else bufs[c.key][sel]
        if part["index"]:
            out["index"] = ids
        return out

    # -- pickling: the cache stays behind (each process decodes what it uses) --------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"], state["_fast"] = {}, None
        return state
