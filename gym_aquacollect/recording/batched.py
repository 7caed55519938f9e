"""Batched recording shared by the vector, Isaac Lab and multi-agent wrappers.

Contents:
    * :class:`Chunk` - K steps of N sub-envs in preallocated ``(K, N, ...)`` column buffers, plus the
      per-step references (batched infos, SAME_STEP ``final_obs``/``final_info``) the splitter needs.
    * :class:`BatchedRecorder` - the user-thread side: one copy per field per step into the current
      chunk, hand-over of full chunks to the writer thread; and the writer-thread side: splitting a
      chunk into per-sub-env episode segments (vectorized over sub-envs), then one
      :class:`~gym_aquacollect.storage.writer.Block` for the core writer.
    * Autoreset modes ``"next_step"``, ``"same_step"`` and ``"disabled"`` (Gymnasium's three), with the
      rules of ``shared/reference/gymnasium.md`` §3.2.
    * :class:`BatchedPut` / :func:`check_batch_column` - per-step validation of batched values against the
      single spaces by identity comparisons (shape, dtype, Dict key sets); a mismatch raises
      :class:`~gym_aquacollect.schema.spaces.SpaceMismatchError` and :meth:`BatchedRecorder.invalidate` stores the
      open episodes as they were (``interrupted: "invalid_step"``); recording resumes at the next reset.
    * :func:`batched_mode` / :class:`FinishedEpisodes` - how a collector is fed (its ``batched_mode``):
      ``"stream"`` (rows straight to disk), ``"episodes"`` (each sub-env episode held in the writer thread
      until it ends, then the collector's ``on_finished_episodes`` keeps/holds/drops it:
      TrajectoryCollector, schedules) or ``"transitions"`` (rows to disk plus ``on_transitions`` with
      ``(obs, action, reward, next_obs, flags)`` of each chunk: BufferCollector's replay ring).

The user's thread never loops over sub-envs: it copies each batched field once per step. Episode
boundaries, info splitting (``_key`` masks) and final observations are resolved in the writer thread,
chunk by chunk, in time order, so the per-sub-env state (open episode, pending reset, ...) lives there.

Size: over 500 lines because ``BatchedRecorder``'s user-thread half and writer-thread half share per-sub-env state arrays; the hot path stays in one class so it reads top to bottom (checks and info naming already live in :mod:`gym_aquacollect.schema.batched`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gym_aquacollect.logs import logger
from gym_aquacollect.schema.batched import BatchedPut, copy_info, split_batched_info
from gym_aquacollect.schema.batched import info_text as _to_text
from gym_aquacollect.schema.batched import leaf_get as _leaf_get
from gym_aquacollect.schema.columns import concat_columns
from gym_aquacollect.schema.columns import jsonable as _jsonable
from gym_aquacollect.schema.flags import TERM as _TERM
from gym_aquacollect.schema.flags import TRUNC as _TRUNC
from gym_aquacollect.schema.spaces import SpaceCodec
from gym_aquacollect.storage.writer import Block, DatasetWriter

__all__ = ["Chunk", "BatchedRecorder", "FinishedEpisodes", "NEXT_STEP", "SAME_STEP", "DISABLED"]


NEXT_STEP, SAME_STEP, DISABLED = "next_step", "same_step", "disabled"
_OBJ = np.dtype(object)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`` without a Python loop."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    if not total:
        return np.zeros(0, np.int64)
    offs = np.cumsum(counts) - counts
    return np.repeat(np.asarray(starts, np.int64) - offs, counts) + np.arange(total, dtype=np.int64)


class FinishedEpisodes:
    """Sub-env episodes that just finished, handed to a collector in the writer thread.

    Columns (one entry per episode, in the order they finished): ``keys``, ``env_index``, ``lengths``,
    ``returns``, ``flags`` (bit 0 terminated, bit 1 truncated) and ``meta`` (JSON strings). The rows are
    only gathered when asked for, with :meth:`block` (to write or hold) or :meth:`trajectories` (the dict
    a :class:`~gym_aquacollect.collectors.filters.TrajectoryFilter` predicate takes).
    """

    def __init__(self, hold: _EpisodeHold, ends: tuple, envs: np.ndarray, times: np.ndarray | None = None) -> None:
        self._hold = hold
        self.keys, self.lengths, self.returns, self.flags, self.meta = ends
        #: (n, 2) wall-clock t_start / t_end of each episode (NaN where not known)
        self.times = np.full((len(self.keys), 2), np.nan) if times is None else times
        self.env_index = envs
        self.collector = hold.collector

    def __len__(self) -> int:
        return len(self.keys)

    def block(self, sel: Any = None) -> Block:
        """One :class:`Block` with the rows of episodes ``sel`` (bool mask / indices; None: all), each
        episode's rows contiguous (one piece each), and their ends as ``end_cols``."""
        idx = np.arange(len(self.keys)) if sel is None else np.asarray(sel)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return self._hold.gather(self.keys[idx], tuple(c[idx] for c in (self.keys, self.lengths, self.returns,
                                                                       self.flags, self.meta)), self.times[idx])

    def trajectories(self, block: Block) -> list[dict[str, Any]]:
        """Per-episode dicts (observations T+1 rows, actions, rewards, flags, length, return, metadata)
        of a block made by :meth:`block`."""
        col = self.collector
        obs_names = ["observations" + ("/" + s if s else "") for s in col._obs_codec.names]
        act_names = ["actions" + ("/" + s if s else "") for s in col._act_codec.names]
        out = []
        _, lengths, rets, _, metas = block.end_cols
        times = block.end_times if block.end_times is not None else np.full((len(lengths), 2), np.nan)
        for j, (_key, o0, on, s0, sn) in enumerate(block.pieces.tolist()):
            meta = json.loads(metas[j])
            for key, t in zip(("t_start", "t_end"), times[j].tolist()):
                if t == t:
                    meta.setdefault(key, t)
            out.append({
                "observations": col._obs_codec.read([block.obs[n][o0:o0 + on] for n in obs_names]),
                "actions": col._act_codec.read([block.step[n][s0:s0 + sn] for n in act_names]),
                "rewards": block.step["rewards"][s0:s0 + sn],
                "terminations": block.step["terminations"][s0:s0 + sn],
                "truncations": block.step["truncations"][s0:s0 + sn],
                "length": int(lengths[j]), "return": float(rets[j]), "metadata": meta,
            })
        return out


class _EpisodeHold:
    """Writer-thread store of the rows of open sub-env episodes (``batched_mode == "episodes"``).

    Chunk blocks are kept whole (no per-episode copy); when episodes end their rows are gathered from
    the held blocks in one vectorized take per column, and the collector decides what to keep. A block
    goes once none of its pieces belongs to an undecided episode; a block mostly made of decided rows is
    compacted so that one long episode does not pin every chunk it overlaps."""

    def __init__(self, collector: Any) -> None:
        self.collector = collector
        self.blocks: list[Block] = []
        self.alive: list[np.ndarray] = []  # per held block, per piece: episode still undecided
        self.decided: set[int] = set()

    def add(self, block: Block, envs: np.ndarray | None, writer: DatasetWriter) -> None:
        if len(block.pieces):
            self.blocks.append(block)
            self.alive.append(np.ones(len(block.pieces), bool))
        if block.end_cols is not None and len(block.end_cols[0]):
            eps = FinishedEpisodes(self, block.end_cols, envs, block.end_times)
            self.collector.on_finished_episodes(eps, writer)
            self.discard(block.end_cols[0])

    def discard(self, keys: np.ndarray) -> None:
        """Episodes decided (or dropped: zero-step episodes): release their rows."""
        if not len(keys):
            return
        keys = np.asarray(keys, np.int64)
        blocks, alive = [], []
        for b, a in zip(self.blocks, self.alive):
            a = a & ~np.isin(b.pieces[:, 0], keys)
            if not a.any():
                continue
            live_rows = int(b.pieces[a, 2].sum())
            if live_rows * 2 < b.n_obs and b.n_obs > 256:
                b = self._subset(b, np.flatnonzero(a))
                a = np.ones(len(b.pieces), bool)
            blocks.append(b)
            alive.append(a)
        self.blocks, self.alive = blocks, alive

    @staticmethod
    def _subset(b: Block, sel: np.ndarray) -> Block:
        P = b.pieces[sel]
        oi, si = _ranges(P[:, 1], P[:, 2]), _ranges(P[:, 3], P[:, 4])
        pieces = P.copy()
        pieces[:, 1] = np.cumsum(P[:, 2]) - P[:, 2]
        pieces[:, 3] = np.cumsum(P[:, 4]) - P[:, 4]
        return Block({k: v[oi] for k, v in b.obs.items()}, {k: v[si] for k, v in b.step.items()},
                     len(oi), len(si), pieces, [])

    def gather(self, keys: np.ndarray, end_cols: tuple, end_times: np.ndarray | None = None) -> Block:
        keys = np.asarray(keys, np.int64)
        order = np.argsort(keys, kind="stable")
        parts: list[Block] = []
        pos: list[np.ndarray] = []
        for b in self.blocks:
            m = np.isin(b.pieces[:, 0], keys)
            if m.any():
                sub = self._subset(b, np.flatnonzero(m))
                parts.append(sub)
                pos.append(order[np.searchsorted(keys[order], sub.pieces[:, 0])])
        if not parts:
            return Block({}, {}, 0, 0, np.zeros((0, 5), np.int64), [], end_cols=end_cols, end_times=end_times)
        obs = concat_columns([p.obs for p in parts], [p.n_obs for p in parts])
        step = concat_columns([p.step for p in parts], [p.n_step for p in parts])
        P = np.concatenate([p.pieces for p in parts])
        o_off = np.cumsum([0] + [p.n_obs for p in parts])[:-1]
        s_off = np.cumsum([0] + [p.n_step for p in parts])[:-1]
        P[:, 1] += np.repeat(o_off, [len(p.pieces) for p in parts])
        P[:, 3] += np.repeat(s_off, [len(p.pieces) for p in parts])
        ep = np.concatenate(pos)
        perm = np.argsort(ep, kind="stable")  # episode-major (finish order), then time (block order)
        P, ep = P[perm], ep[perm]
        oi, si = _ranges(P[:, 1], P[:, 2]), _ranges(P[:, 3], P[:, 4])
        obs = {k: v[oi] for k, v in obs.items()}
        step = {k: v[si] for k, v in step.items()}
        n_obs = np.bincount(ep, weights=P[:, 2], minlength=len(keys)).astype(np.int64)
        n_step = np.bincount(ep, weights=P[:, 4], minlength=len(keys)).astype(np.int64)
        pieces = np.zeros((len(keys), 5), np.int64)
        pieces[:, 0] = keys
        pieces[:, 1] = np.cumsum(n_obs) - n_obs
        pieces[:, 2] = n_obs
        pieces[:, 3] = np.cumsum(n_step) - n_step
        pieces[:, 4] = n_step
        return Block(obs, step, len(oi), len(si), pieces, [], end_cols=end_cols, end_times=end_times)


@dataclass
class Chunk:
    """Up to ``K`` steps of ``N`` sub-envs (numpy column buffers, leading axes ``(K, N)``)."""

    obs: list[np.ndarray]
    act: list[np.ndarray]
    rew: np.ndarray
    term: np.ndarray
    trunc: np.ndarray
    ext: list[np.ndarray] = field(default_factory=list)  # extra step columns (teacher actions, per-agent data)
    k: int = 0
    infos: list[Any] = field(default_factory=list)
    final_obs: list[Any] = field(default_factory=list)  # gym SAME_STEP: object arrays (or None) per step
    final_info: list[Any] = field(default_factory=list)
    final_leaves: list[np.ndarray] | None = None  # batched final obs rows (Isaac Lab path)
    final_ok: np.ndarray | None = None  # (K,) whether final_leaves hold fresh rows at step k
    info_bytes: int = 0  # bytes of the info copies held (counted toward max_pending_bytes)
    reset: dict[str, Any] | None = None  # {"mask", "obs" (leaf list), "infos", "seeds", "options"}
    release: Callable[[], None] | None = None  # called once the writer no longer needs the buffers
    wait: Callable[[], None] | None = None  # called in the writer thread before reading (device events)
    t0: float = 0.0  # wall clock when the chunk's first row was taken (time.time())
    t1: float = 0.0  # wall clock at hand-over; step k's time is interpolated between t0 and t1


class BatchedRecorder:
    """Splits batched steps into per-sub-env episodes for a core collector's writer.

    Args:
        collector: a started :class:`~gym_aquacollect.collectors.base.BaseCollector` (its writer,
            compression and statistics are used; its single-env hot path is not).
        num_envs: N.
        obs_codec / act_codec: codecs of the *single* (per sub-env) spaces.
        mode: ``"next_step"``, ``"same_step"`` or ``"disabled"``.
        record_infos: split and store batched infos.
        chunk_steps: K, steps per chunk (None: about 4 MiB per chunk, at most 256 steps).
        episode_meta: metadata added to every episode (e.g. the autoreset mode).
        per_env_seeds: whether sub-env ``i`` of a reset with ``seed=s`` is reproduced by
            ``gym.make(id).reset(seed=s + i)`` (Gymnasium's Sync/AsyncVectorEnv). Otherwise (native vector
            envs sharing one RNG, Isaac Lab) episodes store ``seed: None`` and the batch's seed as
            ``vector_seed``, so ``metadata["seed"]`` is only ever a seed that reproduces the episode.

    Memory: each chunk handed to the writer counts its bytes (rows and info copies) against the
    collector's ``max_pending_bytes`` through the writer's byte budget; while more is pending, the env
    waits (:mod:`gym_aquacollect.storage.flow`).
    """

    def __init__(self, collector: Any, num_envs: int, obs_codec: SpaceCodec, act_codec: SpaceCodec, mode: str,
                 *, record_infos: bool = True, chunk_steps: int | None = None,
                 episode_meta: dict[str, Any] | None = None, obs_names: list[str] | None = None,
                 ext: Sequence[tuple[str, tuple[int, ...], Any]] = (), per_env_seeds: bool = True) -> None:
        self.collector = collector
        self.per_env_seeds = per_env_seeds
        self.writer: DatasetWriter = collector.writer
        self.n = int(num_envs)
        self.obs_codec, self.act_codec = obs_codec, act_codec
        self.mode = mode
        self.record_infos = record_infos
        self.obs_names = obs_names or ["observations" + ("/" + s if s else "") for s in obs_codec.names]
        self.act_names = ["actions" + ("/" + s if s else "") for s in act_codec.names]
        self.ext_specs = [(name, tuple(shape), np.dtype(dt)) for name, shape, dt in ext]
        self.ext_names = [name for name, _, _ in self.ext_specs]
        ext_bytes = sum(int(np.prod(sh, dtype=np.int64)) * dt.itemsize for _, sh, dt in self.ext_specs)
        row = obs_codec.row_nbytes + act_codec.row_nbytes + ext_bytes + 10
        # about 4 MiB per chunk (at most 4096 steps): per-chunk costs in the writer amortise over many steps
        self.K = int(chunk_steps or max(8, min(4096, (4 << 20) // max(1, row * self.n))))
        self.row_nbytes = row
        #: info copies beyond this many bytes end a chunk early (so large infos keep chunks small)
        self.chunk_info_bytes = max(4 << 20, self.K * row * self.n)
        self.handoff_seconds = 1.0  # a partly filled chunk goes to the writer at least this often
        self.last_handoff = time.monotonic()
        self.episode_meta = dict(episode_meta or {})
        self._pool: list[Chunk] = []
        self.chunk: Chunk | None = None
        # writer-thread state (per sub-env)
        n = self.n
        self.open = np.zeros(n, bool)
        self.pending = np.zeros(n, bool)
        self.key = np.full(n, -1, np.int64)
        self.length = np.zeros(n, np.int64)
        self.ret = np.zeros(n, np.float64)
        self.t_start = np.zeros(n, np.float64)  # wall-clock start of each sub-env's open episode
        self.t_last = np.zeros(n, np.float64)  # wall clock of each sub-env's last recorded row
        self.key_meta: dict[int, dict[str, Any]] = {}  # metadata of episodes opened by an explicit reset
        common = json.dumps({"seed": None, **_jsonable(self.episode_meta)}, default=repr)[:-1]
        self._meta_table = np.array([f'{common}, "env_index": {i}, {_META_SUFFIX[f]}' for i in range(n) for f in range(4)],
                                    dtype=object)
        self._next_key = 0
        self.info_schema: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self._info_groups: set[str] = set()  # names used as dicts in stored infos
        self.dropped_info: dict[str, int] = {}
        self.dropped_steps = 0
        self._warned: set[str] = set()
        self.closed = False
        # how the collector is fed (see batched_mode): episodes held until they end, or transitions
        self.feed = collector.batched_feed()
        self._hold = _EpisodeHold(collector) if self.feed == "episodes" else None
        self._carry: list[np.ndarray] | None = None  # per sub-env last obs row ("transitions")
        if self.feed == "transitions":
            collector.start_transitions(n)
        cast = getattr(collector, "dtype_policy", "strict") == "cast"
        self.put_obs = BatchedPut(obs_codec, n, "observation", cast)
        self.put_act = BatchedPut(act_codec, n, "action", cast)
        self.put_ext = BatchedPut(act_codec, n, "teacher action", cast) if self.ext_specs else None
        self.before_exit: list[Callable[[], None]] = []  # e.g. hand a device chunk over first
        collector._exit_hooks.append(self._at_exit)

    # ================================================================ user thread
    def _at_exit(self, why: str) -> None:
        """Interpreter exit without close(): hand over what the chunks hold and store open episodes
        as truncated (``interrupted: why``)."""
        for hook in self.before_exit:
            hook()
        self.close(why)

    def _new_chunk(self) -> Chunk:
        if self._pool:
            c = self._pool.pop()
            c.k, c.infos, c.final_obs, c.final_info, c.reset, c.info_bytes = 0, [], [], [], None, 0
            return c
        K, n = self.K, self.n
        c = Chunk(
            obs=[np.zeros((K, n, *leaf.shape), leaf.dtype) for leaf in self.obs_codec.leaves],
            act=[np.zeros((K, n, *leaf.shape), leaf.dtype) for leaf in self.act_codec.leaves],
            rew=np.zeros((K, n), np.float64), term=np.zeros((K, n), bool), trunc=np.zeros((K, n), bool),
            ext=[np.zeros((K, n, *shape), dt) for _, shape, dt in self.ext_specs],
        )
        pool = self._pool

        def release(c=c) -> None:
            pool.append(c)

        c.release = release
        return c

    def current(self) -> Chunk:
        if self.chunk is None:
            self.chunk = self._new_chunk()
            self.chunk.t0 = time.time()
        return self.chunk

    def invalidate(self, error: BaseException) -> None:
        """A step's value did not match its space: the step is not recorded, every open episode is
        stored as it was (truncated, ``interrupted: "invalid_step"``) and nothing more is recorded until
        the next explicit ``reset()``, so the dataset never holds a gap inside an episode."""
        logger.error("gym_aquacollect: {}; open episodes are stored as truncated (interrupted: invalid_step) "
                     "and steps are not recorded until the next reset()", error)
        self.submit()
        self.writer.submit(lambda w: self._close_all(w, "invalid_step"))

    def submit(self) -> None:
        """Hand the current chunk to the writer thread (if it holds anything)."""
        c = self.chunk
        self.last_handoff = time.monotonic()
        if c is None:
            return
        self.chunk = None
        if c.k == 0 and c.reset is None:
            c.release()
            return
        c.t1 = time.time()
        nbytes = sum(a.nbytes for a in c.obs) + sum(a.nbytes for a in c.act) + sum(a.nbytes for a in c.ext) + \
            c.rew.nbytes + c.term.nbytes + c.trunc.nbytes + c.info_bytes + \
            (sum(a.nbytes for a in c.final_leaves) if c.final_leaves is not None else 0)
        self.writer.submit(lambda w, c=c: self._process(c, w), nbytes=nbytes)

    def on_reset(self, mask: np.ndarray, obs: Any, infos: Any, seed: Any = None, options: Any = None,
                 *, obs_leaves: list[np.ndarray] | None = None) -> None:
        """An explicit reset of the sub-envs in ``mask`` (all for a full reset)."""
        self.submit()
        c = self.current()
        if obs_leaves is None:
            obs_leaves = []
            for leaf in self.obs_codec.leaves:
                v = obs if self.obs_codec.simple else _leaf_get(obs, leaf.path)
                obs_leaves.append(np.array(v, dtype=leaf.dtype, copy=True).reshape(self.n, *leaf.shape))
        seeds: list[Any]
        vector_seed = None
        if not self.per_env_seeds:  # one RNG for the batch: no per-episode seed reproduces an episode
            seeds = [None] * self.n
            vector_seed = _jsonable(seed)
        elif seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(self.n)]
        else:
            seeds = [None if s is None else int(s) for s in seed]
        info_copy, nb = copy_info(infos) if self.record_infos and infos else (None, 0)
        c.info_bytes += nb
        c.reset = {"mask": np.asarray(mask, bool).copy(), "obs": obs_leaves,
                   "infos": info_copy, "seeds": seeds, "vector_seed": vector_seed,
                   "options": options}

    def close(self, why: str = "close") -> None:
        """Store every open episode with steps as truncated (``interrupted: why``)."""
        if self.closed:
            return
        self.closed = True
        self.submit()
        self.writer.submit(lambda w: self._close_all(w, why))
        if self.feed != "stream":  # the collector's decisions (top-k, ring) must be complete before it finalizes
            self.writer.flush()

    # ================================================================ writer thread
    # Layout of one chunk's observation rows: a boolean matrix M (N, K+1, 2) marks which rows exist;
    # np.nonzero(M) lists them sub-env major, then in time order, which is exactly the storage order.
    #   M[i, 0, 1]    the start row of an explicit reset of sub-env i (before the chunk's steps)
    #   M[i, 1+k, 0]  the observation after step k of the open episode (SAME_STEP: the final obs)
    #   M[i, 1+k, 1]  the start row of an episode that begins at step k (auto-reset)
    # The step rows are the rows M[:, 1:, 0], in the same order, so keys, pieces, lengths and
    # returns follow from cumulative sums, without a Python loop over steps or sub-envs.

    def _warn_once(self, what: str, msg: str, *args: Any) -> None:
        if what not in self._warned:
            self._warned.add(what)
            logger.warning(msg, *args)

    def _process(self, c: Chunk, writer: DatasetWriter) -> None:
        try:
            if c.wait is not None:
                c.wait()
            self._split(c, writer)
        finally:
            if c.release is not None:
                c.release()

    def _masks(self, c: Chunk, pre: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``valid`` (K, N): steps that belong to an open episode; ``starts`` (K, N): auto-reset episode
        starts at step k; ``ends`` (K, N): steps that end their episode."""
        K, n, mode = c.k, self.n, self.mode
        dr = c.term[:K] | c.trunc[:K]
        open0 = self.open | pre
        if mode == SAME_STEP:
            valid = np.broadcast_to(open0, (K, n))
            ends = valid & dr
            return valid, ends, ends
        if mode == NEXT_STEP:
            pending = self.pending & ~pre
            alive = open0 | pending
            rs = np.empty((K, n), bool)
            if K:
                rs[0] = pending
                rs[1:] = alive & dr[:-1]
                if (rs & dr).any():  # a done flag on a reset step (not Gymnasium's behaviour): ignore it
                    for k in range(1, K):
                        rs[k] = alive & ~rs[k - 1] & dr[k - 1]
            valid = alive & ~rs
            return valid, rs, valid & dr
        # DISABLED: after its done step a sub-env's steps are dropped until reset(options={"reset_mask"})
        after = (np.cumsum(dr, axis=0) - dr) > 0
        valid = open0 & ~after
        nd = int(np.count_nonzero(~valid))
        if nd:
            self.dropped_steps += nd
            self._warn_once(
                "disabled", "gym_aquacollect: step() on sub-envs whose episode ended, without "
                "reset(options={{'reset_mask': ...}}) (autoreset DISABLED); those steps are not recorded "
                "({} so far)", self.dropped_steps)
        return valid, np.zeros((K, n), bool), valid & dr

    def _split(self, c: Chunk, writer: DatasetWriter) -> None:
        n, K = self.n, c.k
        end_parts: list[tuple] = []
        end_envs: list[np.ndarray] = []
        pre = np.zeros(n, bool)
        reset_meta: dict[str, Any] | None = None
        if c.reset is not None:
            pre = c.reset["mask"]
            hit = np.nonzero(pre & self.open & (self.length > 0))[0]
            if len(hit):  # interrupted by an explicit reset: stored truncated
                end_parts.append(self._ends(hit, self.key[hit], self.length[hit], self.ret[hit],
                                            np.full(len(hit), _TRUNC, np.uint8), interrupted="reset",
                                            times=(self.t_start[hit], self.t_last[hit])))
                end_envs.append(hit)
            dead = self.key[pre & self.open & (self.length == 0)]
            for key in dead.tolist():
                self.key_meta.pop(key, None)  # a zero-step episode is not stored
            if self._hold is not None:
                self._hold.discard(dead)
            reset_meta = {"seeds": c.reset["seeds"], "options": _jsonable(c.reset["options"]),
                          "vector_seed": c.reset.get("vector_seed")}
        valid, starts, ends = self._masks(c, pre)
        M = np.zeros((n, K + 1, 2), bool)
        M[:, 0, 1] = pre
        M[:, 1:, 0] = valid.T
        M[:, 1:, 1] = starts.T
        env, kk1, slot = np.nonzero(M)
        R = len(env)
        # -- episode keys of the rows
        is_start = slot == 1
        cs = np.cumsum(is_start)
        first = np.ones(R, bool)
        first[1:] = env[1:] != env[:-1]
        base = np.maximum.accumulate(np.where(first, cs - is_start, 0)) if R else cs
        n_new = int(cs[-1]) if R else 0
        new_keys = np.arange(self._next_key, self._next_key + n_new, dtype=np.int64)
        self._next_key += n_new
        row_key = np.where(cs - base > 0, new_keys[np.maximum(cs - 1, 0)] if n_new else 0, self.key[env])
        # -- wall-clock time of each row (interpolated over the chunk's steps), first row of each key
        t1 = c.t1 or time.time()
        t0 = c.t0 or t1
        row_t = np.where(kk1 == 0, t0, t0 + (t1 - t0) * (np.maximum(kk1 - 1, 0) / max(K - 1, 1)))
        kfirst = np.flatnonzero(np.r_[True, row_key[1:] != row_key[:-1]]) if R else np.zeros(0, np.int64)
        fk, ft = row_key[kfirst], row_t[kfirst]
        fk_order = np.argsort(fk, kind="stable")

        def start_time(keys: np.ndarray) -> np.ndarray:
            return ft[fk_order[np.searchsorted(fk[fk_order], keys)]]
        if reset_meta is not None:
            seeds, opts = reset_meta["seeds"], reset_meta["options"]
            rsel = np.nonzero(is_start & (kk1 == 0))[0]
            vseed = reset_meta["vector_seed"]
            for key, i in zip(row_key[rsel].tolist(), env[rsel].tolist()):
                self.key_meta[key] = {"seed": seeds[i], "options": opts} if vseed is None else \
                    {"seed": None, "vector_seed": vseed, "options": opts}
        # -- step rows (the rows M[:, 1:, 0]) and their runs (one per episode piece)
        stepsel = np.nonzero((slot == 0) & (kk1 > 0))[0]
        s_env, s_k, s_key = env[stepsel], kk1[stepsel] - 1, row_key[stepsel]
        s_flat = s_k * n + s_env
        rew = _take(c.rew, s_flat)
        S = len(stepsel)
        if S:
            run0 = np.flatnonzero(np.r_[True, s_key[1:] != s_key[:-1]])
            run_n = np.diff(np.r_[run0, S])
            run_ret = np.add.reduceat(rew, run0)
        else:
            run0 = run_n = np.zeros(0, np.int64)
            run_ret = np.zeros(0, np.float64)
        run_key, run_env = s_key[run0], s_env[run0]
        last = run0 + run_n - 1
        run_k = s_k[last]
        cont = run_key == self.key[run_env]  # continues an episode open before this chunk
        run_len = run_n + np.where(cont, self.length[run_env], 0)
        run_ret = run_ret + np.where(cont, self.ret[run_env], 0.0)
        run_done = ends[run_k, run_env]
        # -- observation columns
        o_flat = np.maximum(kk1 - 1, 0) * n + env
        obs_cols = [_take(buf, o_flat) for buf in c.obs]
        if reset_meta is not None:
            rsel = np.nonzero(kk1 == 0)[0]
            for col, buf in zip(obs_cols, c.reset["obs"]):
                col[rsel] = buf[env[rsel]]
        missing_keys: set[int] = set()
        if self.mode == SAME_STEP and S:
            fsel = stepsel[ends[s_k, s_env]]  # final observation rows (slot 0 of a done step)
            if len(fsel):
                missing_keys = self._final_rows(c, obs_cols, fsel, kk1[fsel] - 1, env[fsel], row_key[fsel])
        obs = {name: col for name, col in zip(self.obs_names, obs_cols)}
        if self.record_infos:
            for name, (vals, mask) in self._gather_infos(c, env, kk1, slot, ends).items():
                obs["infos/" + name] = vals
                head, _, tail = name.rpartition("/")
                obs["infos/" + (f"{head}/_{tail}" if head else f"_{tail}")] = mask
        step = {name: _take(buf, s_flat) for name, buf in zip(self.act_names, c.act)}
        for name, buf in zip(self.ext_names, c.ext):
            step[name] = _take(buf, s_flat)
        step["rewards"] = rew
        te, tr = _take(c.term, s_flat), _take(c.trunc, s_flat)
        step["terminations"], step["truncations"] = te, tr
        # -- pieces: obs runs, and the step run inside each
        if R:
            o0 = np.flatnonzero(np.r_[True, row_key[1:] != row_key[:-1]])
            pieces = np.zeros((len(o0), 5), np.int64)
            pieces[:, 0] = row_key[o0]
            pieces[:, 1] = o0
            pieces[:, 2] = np.diff(np.r_[o0, R])
            if S:
                at = np.searchsorted(o0, stepsel[run0], side="right") - 1
                pieces[at, 3] = run0
                pieces[at, 4] = run_n
        else:
            pieces = np.zeros((0, 5), np.int64)
        # -- finished episodes, in the order they finished
        d = np.nonzero(run_done)[0]
        if len(d):
            d = d[np.lexsort((run_env[d], run_k[d]))]
            flags = np.where(te[last[d]], _TERM, 0) | np.where(tr[last[d]], _TRUNC, 0)
            ts = np.where(cont[d], self.t_start[run_env[d]], start_time(run_key[d]))
            end_parts.append(self._ends(run_env[d], run_key[d], run_len[d], run_ret[d], flags, missing_keys,
                                        times=(ts, row_t[stepsel[last[d]]])))
            end_envs.append(run_env[d])
        # -- per sub-env state after the chunk
        if R:
            lst = np.r_[env[1:] != env[:-1], True]
            e_l, k_l = env[lst], row_key[lst]
            changed = k_l != self.key[e_l]
            self.length[e_l[changed]] = 0
            self.ret[e_l[changed]] = 0.0
            self.t_start[e_l[changed]] = start_time(k_l[changed])
            self.t_last[e_l] = row_t[lst]
            self.key[e_l] = k_l
            cur = run_key == self.key[run_env]
            self.length[run_env[cur]] = run_len[cur]
            self.ret[run_env[cur]] = run_ret[cur]
        self.open |= pre
        if self.mode == NEXT_STEP:
            self.pending &= ~pre
            if K:
                self.open = (self.open | self.pending) & ~ends[K - 1]
                self.pending = ends[K - 1].copy()
        elif self.mode == DISABLED:
            self.open &= ~ends.any(axis=0)
        if self.feed == "transitions" and R:
            self._transitions(obs_cols, step, env, first, stepsel, s_env)
        ends6 = _cat_ends(end_parts)
        block = Block(obs, step, R, S, pieces, [], end_cols=None if ends6 is None else ends6[:5],
                      end_times=None if ends6 is None else ends6[5])
        if self._hold is None:
            writer.write_block(block)
        else:
            self._hold.add(block, _cat(end_envs, np.int64), writer)

    def _transitions(self, obs_cols: list[np.ndarray], step: dict[str, np.ndarray], env: np.ndarray,
                     first: np.ndarray, stepsel: np.ndarray, s_env: np.ndarray) -> None:
        """Hand the chunk's transitions ``(obs, action, reward, next_obs, flags)`` to the collector.

        A step row's observation is the row before it (same sub-env, so the same episode: every episode
        starts with a row of its own); for the first row of a sub-env in the chunk it is that sub-env's
        last row of an earlier chunk. ``next_obs`` is the step's own row, the final observation at a
        SAME_STEP done step, so no pair crosses an episode boundary."""
        if self._carry is None:
            self._carry = [np.zeros((self.n, *c.shape[1:]), c.dtype) for c in obs_cols]
        if len(stepsel):
            carried = first[stepsel]
            prev = np.maximum(stepsel - 1, 0)
            before = []
            for col, car in zip(obs_cols, self._carry):
                b = col[prev]
                if carried.any():
                    b[carried] = car[s_env[carried]]
                before.append(b)
            after = [col[stepsel] for col in obs_cols]
            acts = [step[name] for name in self.act_names]
            self.collector.on_transitions(before, acts, step["rewards"], after, step["terminations"],
                                           step["truncations"])
        lst = np.r_[env[1:] != env[:-1], True]
        for col, car in zip(obs_cols, self._carry):
            car[env[lst]] = col[lst]

    def _end_meta(self, i: int, key: int, length: int, ret: float, flags: int, interrupted: str | None = None,
                  missing: bool = False) -> str:
        """The metadata JSON of one finished episode (general path: builds the dict, runs callbacks)."""
        meta = {**self.key_meta.pop(key, {"seed": None}), **self.episode_meta, "env_index": i,
                "terminated": bool(flags & _TERM), "truncated": bool(flags & _TRUNC)}
        if interrupted:
            meta["interrupted"] = interrupted
        if missing:
            meta["final_observation"] = "missing"
        col = self.collector
        if getattr(col, "episode_callbacks", None):
            col.run_episode_callbacks(key, length, ret, meta["terminated"], meta["truncated"], meta)
        return json.dumps(meta, default=repr)

    def _ends(self, envs: np.ndarray, keys: np.ndarray, lengths: np.ndarray, rets: np.ndarray, flags: np.ndarray,
              missing: set[int] = frozenset(), interrupted: str | None = None,
              times: tuple[np.ndarray, np.ndarray] | None = None) -> tuple:
        """Columns of finished episodes. Auto-reset episodes take their metadata JSON from a per-(sub-env,
        flags) table, so no per-episode dict or ``json.dumps`` is built for them; ``times`` (wall-clock
        start and end per episode) become the sixth column (the shard's ``index/episode_time``)."""
        flags = flags.astype(np.uint8)
        metas = self._meta_table[envs * 4 + flags]
        col = self.collector
        if interrupted or getattr(col, "episode_callbacks", None):
            slow = range(len(keys))
        else:
            special = self.key_meta
            slow = [j for j, k in enumerate(keys.tolist()) if k in special or k in missing] \
                if special or missing else ()
        for j in slow:
            metas[j] = self._end_meta(int(envs[j]), int(keys[j]), int(lengths[j]), float(rets[j]), int(flags[j]),
                                      interrupted, int(keys[j]) in missing)
        if self.feed != "episodes":  # otherwise the collector counts what it keeps
            col.episode_lengths.extend(lengths.tolist())
            col.episode_returns.extend(rets.tolist())
            col.episode_flags.extend(flags.tolist())
        t = np.full((len(keys), 2), np.nan)
        if times is not None:
            t[:, 0], t[:, 1] = times
        return keys.astype(np.int64), lengths.astype(np.int64), rets.astype(np.float64), flags, metas, t

    def _final_rows(self, c: Chunk, cols: list[np.ndarray], rows: np.ndarray, ks: np.ndarray, envs: np.ndarray,
                    keys: np.ndarray) -> set[int]:
        """Write SAME_STEP final observations into ``cols[rows]``; returns keys of episodes without one."""
        for col in cols:
            col[rows] = "" if col.dtype == _OBJ else 0
        if c.final_leaves is not None:  # batched final rows (Isaac Lab)
            ok = c.final_ok[ks] if c.final_ok is not None else np.ones(len(rows), bool)
            for col, buf in zip(cols, c.final_leaves):
                col[rows[ok]] = buf[ks[ok], envs[ok]]
            return set(keys[~ok].tolist())
        missing: set[int] = set()
        codec = self.obs_codec
        for k in np.unique(ks).tolist():
            sel = np.nonzero(ks == k)[0]
            fo = c.final_obs[k] if k < len(c.final_obs) else None
            for j in sel.tolist():
                v = None if fo is None else fo[int(envs[j])]
                if v is None:
                    missing.add(int(keys[j]))
                else:
                    codec.write(cols, int(rows[j]), v)
        return missing

    # -- infos ------------------------------------------------------------------------------------------
    def _gather_infos(self, c: Chunk, env, kk1, slot, ends) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Info columns for the chunk's obs rows: step infos at the step's row (SAME_STEP: the reset
        info at the new episode's start row and ``final_info`` at the final row), reset infos at
        explicit reset rows."""
        R, n, K = len(env), self.n, c.k
        todo = [k for k in range(K) if k < len(c.infos) and c.infos[k]]
        fin = [k for k in range(K) if k < len(c.final_info) and c.final_info[k]]
        rinfo = c.reset.get("infos") if c.reset is not None else None
        cols: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if not (todo or fin or rinfo):
            return cols
        P = np.full((n, K + 1, 2), -1, np.int64)
        P[env, kk1, slot] = np.arange(R)
        same = self.mode == SAME_STEP

        def put(name: str, rows: np.ndarray, vals: np.ndarray, mask: np.ndarray) -> None:
            spec = self.info_schema.get(name)
            if vals.dtype == _OBJ or vals.dtype.kind in "US":
                texts = [_to_text(x) if mm else "" for x, mm in zip(vals, mask)]
                bad = [t is None for t in texts]
                if any(bad):
                    self._drop_info(name, sum(bad), "a string with a NUL character or a lone surrogate, or an "
                                    "integer beyond 64 bits")
                    mask = mask & ~np.array(bad)
                vals = np.array(["" if t is None else t for t in texts], dtype=_OBJ)
            if spec is None:
                parts = name.split("/")
                ancestors = ["/".join(parts[:j]) for j in range(1, len(parts))]
                clash = name in self._info_groups or any(a in self.info_schema for a in ancestors)
                if clash:
                    self._drop_info(name, int(mask.sum()), "a value where a dict was stored, or a dict where a "
                                    "value was stored")
                    return
                spec = self.info_schema[name] = (vals.dtype, vals.shape[1:])
                self._info_groups.update(ancestors)
            dt, shape = spec
            if vals.shape[1:] != shape or not (vals.dtype == dt or (
                    (dt == _OBJ) == (vals.dtype == _OBJ) and np.can_cast(vals.dtype, dt, "same_kind"))):
                self._drop_info(name, int(mask.sum()), f"changed from {dt} {shape} to {vals.dtype} {vals.shape[1:]}")
                return
            if name not in cols:
                cols[name] = (np.zeros((R, *shape), dt) if dt != _OBJ else np.full((R, *shape), "", _OBJ),
                              np.zeros(R, bool))
            col, m = cols[name]
            col[rows] = vals
            m[rows] = mask

        def emit(infos: dict, rows: np.ndarray, envs: np.ndarray) -> None:
            if not len(rows):
                return
            bad: dict[str, str] = {}
            for name, (vals, mask) in split_batched_info(infos, n, bad=bad).items():
                try:
                    put(name, rows, vals[envs], mask[envs])
                except (ValueError, TypeError, OverflowError) as exc:
                    self._drop_info(name, int(mask[envs].sum()), f"{type(exc).__name__}: {exc}")
            for name, why in bad.items():
                self._drop_info(name, len(rows), why)

        def pick(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            e = np.nonzero(r >= 0)[0]
            return r[e], e

        if rinfo:
            emit(rinfo, *pick(P[:, 0, 1]))
        for k in todo:
            a = P[:, k + 1, 0].copy()
            if same:
                a[ends[k]] = -1  # the step info of a done sub-env is in final_info
            ra, ea = pick(a)
            rb, eb = pick(P[:, k + 1, 1])
            emit(c.infos[k], np.concatenate((ra, rb)), np.concatenate((ea, eb)))
        for k in fin:
            f = np.where(ends[k], P[:, k + 1, 0], -1)
            emit(c.final_info[k], *pick(f))
        return cols

    def _drop_info(self, name: str, count: int, why: str) -> None:
        """(writer thread) Info values of key ``name`` that cannot be stored: warn once, count, and put
        the count in the writer's manifest (``info["dropped_info"]``)."""
        if count <= 0:
            return
        self.dropped_info[name] = self.dropped_info.get(name, 0) + int(count)
        self._warn_once(f"info:{name}", "gym_aquacollect: info key {!r}: {}; such values are not recorded "
                        "(counted in the dataset manifest under 'dropped_info')", name, why)
        self.writer.update_info({"dropped_info": dict(self.dropped_info)})

    def _close_all(self, writer: DatasetWriter, why: str = "close") -> None:
        hit = np.nonzero(self.open & (self.length > 0))[0]
        dead = self.key[self.open & (self.length == 0)]
        ends = self._ends(hit, self.key[hit], self.length[hit], self.ret[hit], np.full(len(hit), _TRUNC, np.uint8),
                          interrupted=why, times=(self.t_start[hit], self.t_last[hit])) if len(hit) else None
        self.open[:] = False
        self.pending[:] = False
        self.length[:] = 0
        self.ret[:] = 0.0
        for key in dead.tolist():
            self.key_meta.pop(key, None)
        if self._hold is not None:
            self._hold.discard(dead)
        if ends is not None:
            block = Block({}, {}, 0, 0, np.zeros((0, 5), np.int64), [], end_cols=ends[:5], end_times=ends[5])
            if self._hold is None:
                writer.write_block(block)
            else:
                self._hold.add(block, hit, writer)


def _cat_ends(parts: list[tuple]) -> tuple | None:
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate(cols) for cols in zip(*parts))


_META_SUFFIX = {f: f'"terminated": {"true" if f & _TERM else "false"}, '
                   f'"truncated": {"true" if f & _TRUNC else "false"}}}' for f in range(4)}


def _take(buf: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """``buf[k, i]`` for ``flat = k * N + i`` (``buf`` has leading axes ``(K, N)``): one ``take``."""
    return buf.reshape(-1, *buf.shape[2:]).take(flat, axis=0)


def _cat(xs: list[np.ndarray], dt: Any) -> np.ndarray:
    return np.concatenate(xs) if xs else np.zeros(0, dt)
