"""Reading datasets: :func:`load_dataset`, :class:`Dataset` and :class:`Episode`.

Contents:
    * :func:`load_dataset` - open a gym_aquacollect dataset directory (or, through registered importers,
      a Minari / D4RL / robomimic / Isaac Lab file).
    * :class:`Dataset` - the episodes of a dataset, loaded lazily, with statistics, sampling, filtering.
    * :class:`Episode` - one episode: ``observations`` (T+1 rows), ``actions``, ``rewards``,
      ``terminations``, ``truncations`` (T rows), ``infos`` (T+1 rows), ``extras``, ``metadata``.
    * :func:`episode_statistics` - the statistics dict shared with the collectors.
    * :func:`register_loader` - how importers for other formats plug into :func:`load_dataset` (see
      :mod:`gym_aquacollect.data.registry`, the one registry of readers and writers).

Example:
    >>> import tempfile, gymnasium as gym
    >>> from gym_aquacollect import CollectingWrapper
    >>> path = tempfile.mkdtemp() + "/ds"
    >>> with CollectingWrapper(gym.make("CartPole-v1"), path) as env:
    ...     _ = env.reset(seed=1)
    ...     for _ in range(50):
    ...         *_, term, trunc, _ = env.step(0)
    ...         if term or trunc:
    ...             _ = env.reset()
    >>> ds = load_dataset(path)
    >>> ep = ds[0]
    >>> ep.observations.shape == (len(ep) + 1, 4), ep.metadata["seed"]
    (True, 1)

Size: over 500 lines because ``Dataset`` and ``Episode`` are the read model users see; their lazy loading shares one reader cache.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from gym_aquacollect.data import registry
from gym_aquacollect.data.env_spec import parse_env_spec, recover_environment
from gym_aquacollect.data.exports import ExportMixin
from gym_aquacollect.data.registry import register_loader
from gym_aquacollect.logs import logger
from gym_aquacollect.schema.flags import TERM as _TERM
from gym_aquacollect.schema.flags import TRUNC as _TRUNC
from gym_aquacollect.schema.spaces import SpaceCodec, deserialize_space
from gym_aquacollect.schema.stats import episode_statistics
from gym_aquacollect.storage.manifest import (
    DatasetFormatError,
    file_checksum,
    is_dataset_dir,
    read_dataset_dir,
)
from gym_aquacollect.storage.safety import shard_file
from gym_aquacollect.storage.shard import ShardReader

__all__ = ["load_dataset", "Dataset", "Episode", "AgentEpisode", "episode_statistics", "register_loader", "DatasetFormatError"]

_RECENT_EPISODES = 4  # Dataset.__getitem__ keeps this many Episode objects (with their decoded fields)


def _nest(flat: dict[str, np.ndarray], n_rows: int) -> dict[str, Any]:
    """Turn ``{"a/b": values, "a/_b": mask}`` columns into nested dicts, dropping keys absent on every
    row and masks that are all True."""
    out: dict[str, Any] = {}
    for name, col in flat.items():
        head, _, tail = name.rpartition("/")
        if tail.startswith("_"):
            continue
        mask_name = f"{head}/_{tail}" if head else f"_{tail}"
        mask = flat.get(mask_name)
        if mask is not None and not mask.any():
            continue
        node = out
        for part in name.split("/")[:-1]:
            node = node.setdefault(part, {})
        node[tail] = col
        if mask is not None and not mask.all():
            node[f"_{tail}"] = mask
    return out


@dataclass
class _Ref:
    """Where one episode lives: segments ``(shard, obs_start, obs_n, step_start, step_n)``."""

    segments: list[tuple[int, int, int, int, int]]
    length: int
    ret: float
    flags: int
    meta_at: tuple[int, int] | None  # (shard, row in its episode table); None for partial episodes
    extra_meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class AgentEpisode:
    """One agent's trajectory inside a multi-agent :class:`Episode` (see :meth:`Episode.agent`).

    Attributes:
        agent: the agent's name.
        steps: positions of the agent's steps on the episode's shared time axis (where it was active).
        observations: ``len(steps) + 1`` rows: the observation its first action was taken at, then the
            one after each of its steps (for an agent that left, the last is its final observation).
        actions, rewards, terminations, truncations: one row per step in ``steps``.
    """

    agent: str
    steps: np.ndarray
    observations: Any
    actions: Any
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)


class Episode:
    """One recorded episode; fields load from disk on first access.

    Attributes:
        id: the episode's index in its dataset.
        metadata: seed, options, terminated/truncated, env_index, user metadata, ... and ``run``: the
            recording run that wrote it (``writer_id``, ``host``, ``pid``, ``started`` and that run's
            ``metadata=``), so episodes added by a later run into the same directory keep their own.
    """

    def __init__(self, dataset: Dataset, index: int, ref: _Ref) -> None:
        self._ds = dataset
        self._ref = ref
        self.id = index
        self._cache: dict[str, Any] = {}

    def __len__(self) -> int:
        return self._ref.length

    def __repr__(self) -> str:
        return f"Episode(id={self.id}, length={len(self)}, return={self._ref.ret:.4g})"

    @property
    def metadata(self) -> dict[str, Any]:
        if "metadata" not in self._cache:
            r = self._ref
            meta = self._ds._read_meta(r.meta_at) if r.meta_at is not None else {}
            meta.update(r.extra_meta)
            if "run" in meta:
                meta["run"] = dict(meta["run"])  # shared by the run's episodes: hand out a copy
            meta.setdefault("terminated", bool(r.flags & _TERM))
            meta.setdefault("truncated", bool(r.flags & _TRUNC))
            meta["length"], meta["return"] = r.length, r.ret
            self._cache["metadata"] = meta
        return self._cache["metadata"]

    def column(self, kind: str, name: str) -> np.ndarray:
        """The raw column ``name`` of ``kind`` ("obs" or "step") for this episode."""
        return self._ds._read_column(self._ref, kind, name)

    def _get(self, key: str, build: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @property
    def observations(self) -> Any:
        """T+1 observations: the reset observation, then one per step."""
        ds = self._ds
        return self._get("observations", lambda: ds._obs_codec.read(
            [self.column("obs", n) for n in ds._obs_names]))

    @property
    def actions(self) -> Any:
        ds = self._ds
        return self._get("actions", lambda: ds._act_codec.read([self.column("step", n) for n in ds._act_names]))

    @property
    def rewards(self) -> np.ndarray:
        return self._get("rewards", lambda: self.column("step", "rewards"))

    @property
    def terminations(self) -> np.ndarray:
        return self._get("terminations", lambda: self._flags("terminations"))

    @property
    def truncations(self) -> np.ndarray:
        return self._get("truncations", lambda: self._flags("truncations"))

    def _flags(self, name: str) -> np.ndarray:
        a = self.column("step", name).astype(bool)
        bit = _TRUNC if name == "truncations" else _TERM
        if len(a) and self._ref.flags & bit:
            a[-1] = True  # an episode interrupted by reset()/close()/a crash ends truncated
        return a

    @property
    def infos(self) -> dict[str, Any]:
        """T+1 rows per key (reset info first); ``_key`` masks for keys present on some rows only."""
        return self._get("infos", lambda: self._prefixed("obs", "infos/", len(self) + 1))

    @property
    def extras(self) -> dict[str, Any]:
        """Extra per-step columns (T rows), e.g. ``teacher_actions``."""
        return self._get("extras", lambda: self._prefixed("step", "extras/", len(self)))

    def _prefixed(self, kind: str, prefix: str, n: int) -> dict[str, Any]:
        names = [c for c in self._ds._columns[kind] if c.startswith(prefix)]
        return _nest({c[len(prefix):]: self.column(kind, c) for c in names}, n)

    @property
    def agents(self) -> list[str]:
        """The agents of a multi-agent dataset (empty for single-agent data)."""
        return self._ds.agents

    def agent(self, name: str) -> AgentEpisode:
        """One agent's own trajectory in a multi-agent episode: its data on the steps where it was active.

        Example (a PettingZoo env whose agent ``a0`` leaves after 2 of 3 steps):
            >>> import tempfile
            >>> from gym_aquacollect import CollectingMultiAgentWrapper
            >>> from gym_aquacollect.testing import CountingParallelEnv
            >>> path = tempfile.mkdtemp() + "/ma"
            >>> with CollectingMultiAgentWrapper(CountingParallelEnv((2, 0), max_steps=3), path) as env:
            ...     _ = env.reset(seed=0)
            ...     while env.agents:
            ...         _ = env.step({a: 0 for a in env.agents})
            >>> ep = load_dataset(path)[0]
            >>> ep.agents, len(ep), len(ep.agent("a0")), ep.agent("a0").steps.tolist()
            (['a0', 'a1'], 3, 2, [0, 1])
            >>> ep.agent("a1").truncations.tolist()
            [False, False, True]
        """
        agents = self.agents
        if name not in agents:
            raise KeyError(f"agent {name!r} is not in this dataset (agents: {agents}); "
                           "Episode.agent() needs a multi-agent dataset")
        ex = self.extras["agents"][name]
        steps = np.nonzero(np.asarray(ex["active"], dtype=bool))[0]
        rows = np.concatenate((steps[:1], steps + 1)) if len(steps) else np.zeros(0, np.int64)

        def pick(x: Any, idx: np.ndarray) -> Any:
            if isinstance(x, dict):
                return {k: pick(v, idx) for k, v in x.items()}
            if isinstance(x, tuple):
                return tuple(pick(v, idx) for v in x)
            if isinstance(x, list):
                return [x[int(i)] for i in idx]
            return x[idx]

        return AgentEpisode(
            agent=name, steps=steps, observations=pick(self.observations[name], rows),
            actions=pick(self.actions[name], steps), rewards=np.asarray(ex["reward"])[steps],
            terminations=np.asarray(ex["terminated"], dtype=bool)[steps],
            truncations=np.asarray(ex["truncated"], dtype=bool)[steps],
        )

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain dict."""
        return {"id": self.id, "observations": self.observations, "actions": self.actions,
                "rewards": self.rewards, "terminations": self.terminations, "truncations": self.truncations,
                "infos": self.infos, "extras": self.extras, "metadata": self.metadata}


class Dataset(ExportMixin):
    """The episodes of a gym_aquacollect dataset directory (see :func:`load_dataset`).

    Args:
        path: the dataset directory.
        include_partial: also list episodes that never ended because their writer died (crash
            recovery); they end truncated and their metadata says ``interrupted: "crash"``.
        skip_corrupt: recovery mode for a damaged dataset: each shard's CRC32 is checked when it is
            first opened, and corrupt or missing shards and manifests are left out (logged by name,
            listed in :attr:`skipped`) with the episodes that had rows in them, instead of raising
            :class:`DatasetFormatError`.
        cache_bytes: memory budget for the decoded columns that :meth:`sample`, :meth:`transitions` and
            :meth:`dataloader` cache (None: a quarter of physical memory; 0: always read from disk).
            Datasets whose columns exceed it are streamed; see :mod:`gym_aquacollect.data.transitions`.

    A Dataset can be pickled (sent to another process, a Ray task or a spawned DataLoader worker): the
    copy reopens the shard files itself, as does a Dataset used in a forked child.

    Order: episodes are numbered in the order they finished *per writer*; with several writers in one
    directory, each writer's episodes form one run and writers follow in the order they started (their
    ids sort by start time), so the numbering is not global finish order.
    """

    def __init__(self, path: str | os.PathLike, *, include_partial: bool = False, skip_corrupt: bool = False,
                 cache_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.cache_bytes = cache_bytes
        self._store: Any = None
        self._recent: OrderedDict[int, Episode] = OrderedDict()
        self.include_partial = include_partial
        self.skip_corrupt = skip_corrupt
        #: files left out in ``skip_corrupt`` mode: relative path -> why
        self.skipped: dict[str, str] = {}
        self._readers: list[ShardReader] = []
        self._reader_index: dict[str, int] = {}
        self._pid = os.getpid()
        self._refs: list[_Ref] = []
        self.refresh()

    # -- loading ---------------------------------------------------------------------------------------
    def refresh(self) -> Dataset:
        """Re-read the manifests and pick up shards committed since (read while writing)."""
        meta, manifests = read_dataset_dir(self.path, self._skip_manifest if self.skip_corrupt else None)
        self.metadata: dict[str, Any] = meta
        meta_file = self.path / "aquacollect.json"
        try:
            self.observation_space: spaces.Space = deserialize_space(meta["observation_space"])
            self.action_space: spaces.Space = deserialize_space(meta["action_space"])
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError, OverflowError, MemoryError) as e:
            raise DatasetFormatError(f"{meta_file}: its spaces cannot be read ({type(e).__name__}: {str(e)[:300]}); "
                                     "the file is corrupt or from an incompatible version") from None
        raw_spec = meta.get("env_spec")
        #: the recorded env spec as stored (a JSON string), or None
        self.env_spec_json: str | None = raw_spec if isinstance(raw_spec, str) or raw_spec is None else json.dumps(raw_spec)
        #: the recorded env's ``gymnasium`` ``EnvSpec`` (plain data; see :meth:`recover_environment`), or None
        self.env_spec = parse_env_spec(raw_spec, source=str(meta_file))
        self._obs_codec = SpaceCodec(self.observation_space, "observation")
        self._act_codec = SpaceCodec(self.action_space, "action")
        self._obs_names = ["observations" + ("/" + n if n else "") for n in self._obs_codec.names]
        self._act_names = ["actions" + ("/" + n if n else "") for n in self._act_codec.names]
        self.manifests = manifests
        refs: list[_Ref] = []
        partial: list[_Ref] = []
        for m in manifests:
            # the run that recorded these episodes (writer id, host, start, its metadata=): episode.metadata["run"]
            run = m.info.get("run") if isinstance(m.info, dict) else None
            run_meta = {"run": run} if isinstance(run, dict) else {}
            open_segs: dict[int, list[tuple[int, int, int, int, int]]] = {}
            broken = False
            for rec in m.shards:
                si = self._reader(rec)
                if si is None:  # skipped (skip_corrupt): episodes with rows in it are incomplete
                    open_segs.clear()
                    broken = True
                    continue
                r = self._readers[si]
                for key, o0, on, s0, sn in r.segments.tolist():
                    open_segs.setdefault(key, []).append((si, o0, on, s0, sn))
                for row, key in enumerate(r.episode_key.tolist()):
                    segs = open_segs.pop(key, [])
                    length = int(r.episode_length[row])
                    if sum(sg[4] for sg in segs) != length:
                        if broken:
                            continue  # it began in a skipped shard
                        raise DatasetFormatError(
                            f"{r.path}: episode {key} of writer {m.writer_id} ends here with length {length} but "
                            f"its segments hold {sum(sg[4] for sg in segs)} steps: a manifest lost shard entries. "
                            "Run `aquacollect validate`, or load with skip_corrupt=True."
                        )
                    if sum(sg[2] for sg in segs) != length + 1:
                        if broken:
                            continue
                        raise DatasetFormatError(
                            f"{r.path}: episode {key} of writer {m.writer_id} has {length} steps but its segments hold "
                            f"{sum(sg[2] for sg in segs)} observation rows (expected {length + 1}); the shard's index "
                            "is corrupt. Run `aquacollect validate`, or load with skip_corrupt=True.")
                    refs.append(_Ref(segs, length, float(r.episode_return[row]), int(r.episode_flags[row]), (si, row),
                                     run_meta))
            if self.include_partial:
                for key in sorted(open_segs):
                    segs = open_segs[key]
                    length = sum(s[4] for s in segs)
                    if length == 0:
                        continue
                    ret = float(sum(float(np.sum(self._readers[s[0]].read("step", "rewards", s[3], s[4])))
                                    for s in segs))
                    partial.append(_Ref(segs, length, ret, _TRUNC, None,
                                        {"interrupted": "crash", "writer_id": m.writer_id, **run_meta}))
        self._refs = refs + partial
        self._columns = self._column_specs()
        return self

    def _reader(self, rec: Any) -> int | None:
        rel = rec.file
        if rel not in self._reader_index:
            if rel in self.skipped:
                return None
            try:
                if self.skip_corrupt and rec.checksum:
                    try:
                        actual = file_checksum(shard_file(self.path, rel))
                    except FileNotFoundError:
                        raise DatasetFormatError(f"{self.path / rel}: shard file is missing (listed in a manifest)") from None
                    if actual != rec.checksum:
                        raise DatasetFormatError(f"{self.path / rel}: checksum {actual} does not match the stored "
                                                 f"{rec.checksum}; the shard is corrupt")
                reader = ShardReader(shard_file(self.path, rel))
            except DatasetFormatError as e:
                if not self.skip_corrupt:
                    raise
                self.skipped[rel] = str(e)
                logger.warning("gym_aquacollect: skipping {} (skip_corrupt=True): {}", rel, e)
                return None
            self._readers.append(reader)
            self._reader_index[rel] = len(self._readers) - 1
        return self._reader_index[rel]

    def _skip_manifest(self, path: Path, error: DatasetFormatError) -> None:
        rel = f"{path.parent.name}/{path.name}"
        if rel not in self.skipped:
            logger.warning("gym_aquacollect: skipping {} (skip_corrupt=True): {}", rel, error)
        self.skipped[rel] = str(error)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_readers"] = [r.path for r in self._readers]
        state["_recent"] = OrderedDict()  # decoded episodes stay behind
        del state["_obs_codec"], state["_act_codec"]  # hold closures; rebuilt from the spaces
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._readers = [ShardReader(p) for p in state["_readers"]]
        self._obs_codec = SpaceCodec(self.observation_space, "observation")
        self._act_codec = SpaceCodec(self.action_space, "action")
        self._pid = os.getpid()

    def _column_specs(self) -> dict[str, dict[str, tuple[np.dtype, tuple[int, ...]]]]:
        specs: dict[str, dict[str, tuple[np.dtype, tuple[int, ...]]]] = {"obs": {}, "step": {}}
        for r in self._readers:
            for kind in ("obs", "step"):
                for name, ds in r.columns[kind].items():
                    specs[kind].setdefault(name, (ds.dtype, ds.shape[1:]))
        return specs

    def _ensure_pid(self) -> None:
        """h5py handles do not survive fork: reopen shard files in a new process."""
        if os.getpid() != self._pid:
            files = [r.path for r in self._readers]
            self._readers = [ShardReader(p) for p in files]
            self._pid = os.getpid()

    def _read_column(self, ref: _Ref, kind: str, name: str) -> np.ndarray:
        self._ensure_pid()
        spec = self._columns[kind].get(name)
        if spec is None:
            raise KeyError(f"column {kind}/{name} does not exist in {self.path}")
        parts = []
        for si, o0, on, s0, sn in ref.segments:
            start, count = (o0, on) if kind == "obs" else (s0, sn)
            r = self._readers[si]
            if name in r.columns[kind]:
                parts.append(r.read(kind, name, start, count))
            else:
                dtype, shape = spec
                fill = np.zeros((count, *shape), dtype=object if dtype.kind == "O" else dtype)
                if dtype.kind == "O":
                    fill[...] = ""
                parts.append(fill)
        if not parts:
            dtype, shape = spec
            return np.zeros((0, *shape), dtype=object if dtype.kind == "O" else dtype)
        if len(parts) > 1 and all(getattr(p, "lazy_frames", False) for p in parts):
            return type(parts[0]).concat(parts)  # coded (video) column over several shards: still lazy
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _read_meta(self, at: tuple[int, int]) -> dict[str, Any]:
        self._ensure_pid()
        si, row = at
        try:
            return self._readers[si].episode_meta(row)
        except (ValueError, OSError) as e:
            raise DatasetFormatError(f"{self._readers[si].path}: episode metadata row {row} unreadable: {e}") from None

    # -- the Dataset API -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._refs)

    def __getitem__(self, i: int) -> Episode:
        n = len(self._refs)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"episode index must be an int, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"episode {i} out of range: the dataset has {n} episodes")
        i = int(i) % n
        # the last few episodes are kept, so `ds[0].observations[t]` in a loop decodes episode 0 once
        recent, ref = self._recent, self._refs[i]
        ep = recent.get(i)
        if ep is None or ep._ref is not ref or ep._ds is not self:
            ep = recent[i] = Episode(self, i, ref)
            if len(recent) > _RECENT_EPISODES:
                recent.popitem(last=False)
        else:
            recent.move_to_end(i)
        return ep

    def __iter__(self) -> Iterator[Episode]:
        return self.iterate_episodes()

    def iterate_episodes(self, episode_indices: Sequence[int] | None = None, order: str = "index") -> Iterator[Episode]:
        """Iterate episodes (all, or the given indices).

        Args:
            episode_indices: which episodes (default: all).
            order: ``"index"`` (dataset order: per writer, the order they finished) or ``"time"`` (by
                wall-clock end, then start, across all writers: one timeline for a dataset recorded by
                several processes; episodes without recorded times, from older datasets, come last in
                index order).
        """
        idx = range(len(self)) if episode_indices is None else [int(i) for i in episode_indices]
        if order == "time":
            t = self.episode_times
            idx = sorted(idx, key=lambda i: (np.isnan(t[i, 1]), 0.0 if np.isnan(t[i, 1]) else t[i, 1],
                                             0.0 if np.isnan(t[i, 0]) else t[i, 0], i))
        elif order != "index":
            raise ValueError(f"order must be 'index' or 'time', got {order!r}")
        for i in idx:
            yield self[i]

    # -- per-episode index metadata (read once per shard) -------------------------------------------------
    def _index_meta(self) -> tuple[np.ndarray, np.ndarray]:
        """``(interrupted, times)``: per episode the reason it was cut (``""`` for a complete episode:
        ``"close"``, ``"reset"``, ``"crash"``, ``"invalid_step"``) and ``(t_start, t_end)`` wall-clock
        seconds (NaN where not recorded)."""
        cache = self.__dict__.get("_imeta_cache")
        if cache is not None and cache[0] is self._refs:
            return cache[1]
        self._ensure_pid()
        texts: dict[int, Any] = self.__dict__.setdefault("_meta_texts", {})
        n = len(self._refs)
        why = np.full(n, "", dtype=object)
        times = np.full((n, 2), np.nan)
        for i, r in enumerate(self._refs):
            meta: dict[str, Any] = {}
            if r.meta_at is not None:
                si, row = r.meta_at
                if si not in texts:
                    texts[si] = self._readers[si]._meta_ds.asstr()[()]
                text = texts[si][row]
                if '"t_start"' in text or '"interrupted"' in text:
                    meta = json.loads(text)
                col = self._readers[si].episode_time  # the time column (shards written since 2026-12)
                if col is not None:
                    times[i] = col[row]
            meta.update(r.extra_meta)
            why[i] = str(meta.get("interrupted") or "")
            for j, key in enumerate(("t_start", "t_end")):
                v = meta.get(key)
                if isinstance(v, (int, float)):
                    times[i, j] = float(v)
        out = (why, times)
        self.__dict__["_imeta_cache"] = (self._refs, out)
        return out

    @property
    def episode_interrupted(self) -> np.ndarray:
        """Per episode, why it was cut short (``""`` for complete episodes, else ``metadata["interrupted"]``:
        ``"close"``, ``"reset"``, ``"crash"`` or ``"invalid_step"``)."""
        return self._index_meta()[0]

    @property
    def episode_times(self) -> np.ndarray:
        """``(len(ds), 2)`` wall-clock ``(t_start, t_end)`` of each episode in seconds since the epoch
        (``metadata["t_start"]`` / ``["t_end"]``; NaN for episodes recorded before times were stored)."""
        return self._index_meta()[1]

    def sample_episodes(self, n: int, seed: int | None = None) -> list[Episode]:
        """``n`` distinct episodes drawn uniformly (reproducible with ``seed``)."""
        if n > len(self):
            raise ValueError(f"cannot sample {n} episodes from a dataset of {len(self)}")
        idx = np.random.default_rng(seed).choice(len(self), size=n, replace=False)
        return [self[int(i)] for i in idx]

    def filter_episodes(self, predicate: Callable[[Episode], bool]) -> Dataset:
        """A view of the episodes for which ``predicate(episode)`` is true (renumbered from 0)."""
        keep = [ref for i, ref in enumerate(self._refs) if predicate(Episode(self, i, ref))]
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view._refs = keep
        return view

    @property
    def agents(self) -> list[str]:
        """The agents of a multi-agent dataset (``env_description["agents"]``), else ``[]``."""
        return list((self.metadata.get("env_description") or {}).get("agents") or [])

    @property
    def total_steps(self) -> int:
        return int(sum(r.length for r in self._refs))

    @property
    def total_episodes(self) -> int:
        return len(self._refs)

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.asarray([r.length for r in self._refs], dtype=np.int64)

    @property
    def episode_returns(self) -> np.ndarray:
        return np.asarray([r.ret for r in self._refs], dtype=np.float64)

    def statistics(self) -> dict[str, Any]:
        """total_steps, total_episodes, avg/std/min/max episode length and reward, flag counts, size.

        ``total_steps`` / ``total_episodes`` count every stored episode. The length and reward figures
        (``avg_episode_length``, ``min_episode_length``, ...) are over *complete* episodes only: episodes
        cut short by ``close()``, an explicit ``reset()``, a crash or an invalid step are counted apart
        (``interrupted_episodes``, ``interrupted_steps``, ``interrupted_by``), so a 3-step episode cut by
        ``close()`` does not show as ``min_episode_length 3``. When no episode is complete, the figures
        are over all episodes and ``episode_figures_over`` says so.
        """
        lengths, returns = self.episode_lengths, self.episode_returns
        flags = np.asarray([r.flags for r in self._refs], dtype=np.uint8)
        why = self.episode_interrupted
        cut = why != ""
        over = "complete episodes" if (~cut).any() or not len(cut) else "all episodes (none is complete)"
        sel = ~cut if (~cut).any() else np.ones(len(cut), bool)
        stats = episode_statistics(lengths[sel], returns[sel], flags[sel])
        stats["total_steps"] = int(lengths.sum()) if len(lengths) else 0
        stats["total_episodes"] = len(lengths)
        stats["terminated_episodes"] = int(np.count_nonzero(flags & _TERM))
        stats["truncated_episodes"] = int(np.count_nonzero(flags & _TRUNC))
        stats["complete_episodes"] = int(np.count_nonzero(~cut))
        stats["interrupted_episodes"] = int(np.count_nonzero(cut))
        stats["interrupted_steps"] = int(lengths[cut].sum()) if cut.any() else 0
        stats["interrupted_by"] = {k: int(np.count_nonzero(why == k)) for k in sorted(set(why[cut].tolist()))}
        stats["episode_figures_over"] = over
        stats["shards"] = sum(len(m.shards) for m in self.manifests)
        stats["writers"] = len(self.manifests)
        stats["bytes_on_disk"] = int(sum(s.size for m in self.manifests for s in m.shards))
        return stats

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}, episodes={len(self)}, steps={self.total_steps})"

    def recover_environment(self, *, trust_env_spec: bool = False, **make_kwargs: Any) -> Any:
        """Make the env this dataset was recorded from: the **local** Gymnasium registry's env of the recorded
        id, with the recorded kwargs and ``max_episode_steps``. Code named by the dataset (its entry point,
        wrappers from outside Gymnasium) runs only with ``trust_env_spec=True``; see
        :func:`gym_aquacollect.data.env_spec.recover_environment`.

        Example:
            >>> import tempfile, gymnasium as gym
            >>> from gym_aquacollect import CollectingWrapper
            >>> path = tempfile.mkdtemp() + "/ds"
            >>> with CollectingWrapper(gym.make("CartPole-v1", max_episode_steps=50), path) as env:
            ...     _ = env.reset(seed=0)
            >>> ds = load_dataset(path)
            >>> ds.env_spec.id, ds.recover_environment().spec.max_episode_steps
            ('CartPole-v1', 50)
        """
        return recover_environment(self.env_spec, trust_env_spec=trust_env_spec, **make_kwargs)

    # -- scale-out views (gym_aquacollect.distributed, gym_aquacollect.torch_data) ---------------------
    def to_ray(self, unit: str = "transitions", **kwargs: Any) -> Any:
        """A ``ray.data.Dataset`` of this dataset's transitions or episodes (needs ``gym_aquacollect[ray]``);
        see :func:`gym_aquacollect.distributed.to_ray`."""
        return registry.late_import("gym_aquacollect.integrations.ray").to_ray(self, unit=unit, **kwargs)

    # -- reading for training (gym_aquacollect.data.transitions, gym_aquacollect.integrations.torch) ---
    def transition_store(self) -> Any:
        """The :class:`~gym_aquacollect.data.transitions.TransitionStore` behind :meth:`sample`,
        :meth:`transitions` and :meth:`dataloader` (built on first use, again after :meth:`refresh`)."""
        store = self._store
        if store is None or store._ds is not self or store._refs is not self._refs:
            from gym_aquacollect.data.transitions import TransitionStore

            store = self._store = TransitionStore(self, self.cache_bytes)
        return store

    def sample(self, batch_size: int, *, seed: int | None = None) -> dict[str, Any]:
        """``batch_size`` transitions drawn uniformly (with replacement) from the whole dataset.

        Returns the keys of ``BufferCollector.sample``: ``obs``, ``action``, ``reward`` (float32),
        ``next_obs``, ``terminated``, ``truncated`` (bool), nested like the spaces for Dict/Tuple spaces.
        ``next_obs`` of an episode's last step is that episode's final observation. The first call
        decodes the columns that fit ``cache_bytes`` into RAM. ``seed`` makes the draw reproducible.

        Example:
            >>> import tempfile, gymnasium as gym
            >>> from gym_aquacollect import CollectingWrapper
            >>> path = tempfile.mkdtemp() + "/ds"
            >>> with CollectingWrapper(gym.make("CartPole-v1"), path) as env:
            ...     _ = env.reset(seed=0)
            ...     for _ in range(30):
            ...         *_, term, trunc, _ = env.step(0)
            ...         if term or trunc:
            ...             _ = env.reset()
            >>> ds = load_dataset(path)
            >>> b = ds.sample(4, seed=1)
            >>> b["obs"].shape, b["action"].shape, b["terminated"].dtype
            ((4, 4), (4,), dtype('bool'))
        """
        return self.transition_store().sample(batch_size, seed=seed)

    def transitions(self) -> dict[str, Any]:
        """Every transition in dataset order as flat arrays with the keys of :meth:`sample` (for d3rlpy,
        JAX or numpy users); ``obs`` / ``next_obs`` are both materialised."""
        return self.transition_store().transitions()

    def dataloader(self, batch_size: int, *, shuffle: bool = True, num_workers: int = 0,
                   unit: str = "transitions", **kwargs: Any) -> Any:
        """A ``torch.utils.data.DataLoader`` yielding dict batches of tensors, fetched a batch at a time;
        see :func:`gym_aquacollect.integrations.torch.make_dataloader` (needs torch)."""
        make_dataloader = registry.late_import("gym_aquacollect.integrations.torch").make_dataloader
        return make_dataloader(self, batch_size, shuffle=shuffle, num_workers=num_workers, unit=unit, **kwargs)

    def as_torch_dataset(self, unit: str = "transitions", **kwargs: Any) -> Any:
        """A ``torch.utils.data.Dataset`` view for DataLoaders with worker processes (each opens its own
        HDF5 handles); see :class:`gym_aquacollect.torch_data.TorchDataset`."""
        TorchDataset = registry.late_import("gym_aquacollect.integrations.torch_data").TorchDataset
        return TorchDataset(self, unit=unit, **kwargs)

    def close(self) -> None:
        for r in self._readers:
            r.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- other formats: gym_aquacollect.data.registry ----------------------------------------------------
_LOADERS = registry._LOADERS  # the loaders of register_loader (kept for old imports)


def load_dataset(path: str | os.PathLike, **kwargs: Any) -> Dataset:
    """Open a dataset: a gym_aquacollect directory, or any format a registered importer recognises.

    Raises:
        FileNotFoundError: nothing at ``path``.
        DatasetFormatError: a file is corrupt or of an unknown format (the message names it).
    """
    p = Path(path)
    if is_dataset_dir(p):
        return Dataset(p, **kwargs)
    ds = registry.open_foreign(path, **kwargs)
    if ds is not None:
        return ds
    if not p.exists():
        raise FileNotFoundError(f"{p}: no dataset there (expected a gym_aquacollect directory with aquacollect.json)")
    raise DatasetFormatError(f"{p}: not a gym_aquacollect dataset and no importer recognises it")


def _dumps(x: Any) -> str:  # pragma: no cover
    return json.dumps(x, default=repr)
