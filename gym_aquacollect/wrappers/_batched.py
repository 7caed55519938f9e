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

The user's thread never loops over sub-envs: it copies each batched field once per step. Episode
boundaries, info splitting (``_key`` masks) and final observations are resolved in the writer thread,
chunk by chunk, in time order, so the per-sub-env state (open episode, pending reset, ...) lives there.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from loguru import logger

from ..collectors.columns import to_storable
from ..spaces import SpaceCodec
from ..storage.writer import Block, DatasetWriter

__all__ = ["Chunk", "BatchedRecorder", "NEXT_STEP", "SAME_STEP", "DISABLED", "split_batched_info", "teacher_columns"]

NEXT_STEP, SAME_STEP, DISABLED = "next_step", "same_step", "disabled"
_TERM, _TRUNC = 1, 2
_OBJ = np.dtype(object)


def _leaf_get(value: Any, path: tuple[str, ...]) -> Any:
    for p in path:
        value = value[int(p[7:])] if p.startswith("_index_") else value[p]
    return value


def _clean_key(key: Any) -> str:
    k = str(key).replace("/", "|")
    return "~" + k if k.startswith("_") else k


def split_batched_info(infos: dict[str, Any], n: int, skip: Sequence[str] = ("final_obs", "final_info"),
                       path: str = "", out: dict | None = None, parent_mask: np.ndarray | None = None
                       ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Flatten a Gymnasium batched info dict into ``{name: (values (n, ...), mask (n,))}``.

    A key ``k`` is present for sub-env ``i`` where ``infos["_k"][i]`` is True (and its parent dict's
    mask too); keys without a mask count as present for all. Mask keys themselves are skipped.
    """
    out = {} if out is None else out
    for k, v in infos.items():
        if not isinstance(k, str):
            k = str(k)
        if k in skip or (k.startswith("_") and k[1:] in infos):
            continue
        m = infos.get(f"_{k}")
        mask = np.ones(n, dtype=bool) if m is None else np.asarray(m, dtype=bool).reshape(n)
        if parent_mask is not None:
            mask = mask & parent_mask
        name = path + _clean_key(k)
        if isinstance(v, dict):
            split_batched_info(v, n, (), name + "/", out, mask)
            continue
        arr = np.asarray(v) if not isinstance(v, np.ndarray) else v
        if arr.ndim == 0 or arr.shape[0] != n:
            continue  # not a per-sub-env value
        out[name] = (arr, mask)
    return out


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
    reset: dict[str, Any] | None = None  # {"mask", "obs" (leaf list), "infos", "seeds", "options"}
    release: Callable[[], None] | None = None  # called once the writer no longer needs the buffers
    wait: Callable[[], None] | None = None  # called in the writer thread before reading (device events)


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
        final_obs_missing_meta: when final observations are not available at all (Isaac Lab without
            ``compute_final_obs``), what the episode metadata says.
    """

    def __init__(self, collector: Any, num_envs: int, obs_codec: SpaceCodec, act_codec: SpaceCodec, mode: str,
                 *, record_infos: bool = True, chunk_steps: int | None = None,
                 episode_meta: dict[str, Any] | None = None, obs_names: list[str] | None = None,
                 ext: Sequence[tuple[str, tuple[int, ...], Any]] = ()) -> None:
        self.collector = collector
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
        self.handoff_seconds = 1.0  # a partly filled chunk goes to the writer at least this often
        self.last_handoff = time.monotonic()
        self.episode_meta = dict(episode_meta or {})
        self._pool: list[Chunk] = []
        self._slots = threading.Semaphore(4)
        self.chunk: Chunk | None = None
        # writer-thread state (per sub-env)
        n = self.n
        self.open = np.zeros(n, bool)
        self.pending = np.zeros(n, bool)
        self.key = np.full(n, -1, np.int64)
        self.length = np.zeros(n, np.int64)
        self.ret = np.zeros(n, np.float64)
        self.key_meta: dict[int, dict[str, Any]] = {}  # metadata of episodes opened by an explicit reset
        common = json.dumps({"seed": None, **_jsonable(self.episode_meta)}, default=repr)[:-1]
        self._meta_table = np.array([f'{common}, "env_index": {i}, {_META_SUFFIX[f]}' for i in range(n) for f in range(4)],
                                    dtype=object)
        self._next_key = 0
        self.info_schema: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self.dropped_steps = 0
        self._warned: set[str] = set()
        self.closed = False

    # ================================================================ user thread
    def _new_chunk(self) -> Chunk:
        while not self._slots.acquire(timeout=0.5):
            self.writer.check()
        if self._pool:
            c = self._pool.pop()
            c.k, c.infos, c.final_obs, c.final_info, c.reset = 0, [], [], [], None
            return c
        K, n = self.K, self.n
        c = Chunk(
            obs=[np.zeros((K, n, *leaf.shape), leaf.dtype) for leaf in self.obs_codec.leaves],
            act=[np.zeros((K, n, *leaf.shape), leaf.dtype) for leaf in self.act_codec.leaves],
            rew=np.zeros((K, n), np.float64), term=np.zeros((K, n), bool), trunc=np.zeros((K, n), bool),
            ext=[np.zeros((K, n, *shape), dt) for _, shape, dt in self.ext_specs],
        )
        pool, slots = self._pool, self._slots

        def release(c=c) -> None:
            pool.append(c)
            slots.release()

        c.release = release
        return c

    def current(self) -> Chunk:
        if self.chunk is None:
            self.chunk = self._new_chunk()
        return self.chunk

    def put_leaves(self, bufs: list[np.ndarray], k: int, value: Any, codec: SpaceCodec, label: str) -> None:
        """Copy one batched value into row ``k`` of each leaf buffer (one copy per leaf)."""
        try:
            if codec.simple:
                bufs[0][k] = value
            else:
                for buf, leaf in zip(bufs, codec.leaves):
                    buf[k] = _leaf_get(value, leaf.path)
        except (ValueError, TypeError, KeyError, IndexError) as e:
            exp = [f"{leaf.name or label}: {(self.n, *leaf.shape)} {leaf.dtype}" for leaf in codec.leaves]
            raise ValueError(
                f"gym_aquacollect: batched {label} does not fit the single {label} space batched over "
                f"{self.n} sub-envs (expected {exp}): {e}. Check the env's single_{label}_space."
            ) from None

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
        self.writer.submit(lambda w, c=c: self._process(c, w))

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
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(self.n)]
        else:
            seeds = [None if s is None else int(s) for s in seed]
        c.reset = {"mask": np.asarray(mask, bool).copy(), "obs": obs_leaves,
                   "infos": infos if self.record_infos else None, "seeds": seeds,
                   "options": options}

    def close(self) -> None:
        """Store every open episode with steps as truncated (``interrupted: "close"``)."""
        if self.closed:
            return
        self.closed = True
        self.submit()
        self.writer.submit(self._close_all)

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
        pre = np.zeros(n, bool)
        reset_meta: dict[str, Any] | None = None
        if c.reset is not None:
            pre = c.reset["mask"]
            hit = np.nonzero(pre & self.open & (self.length > 0))[0]
            if len(hit):  # interrupted by an explicit reset: stored truncated
                end_parts.append(self._ends(hit, self.key[hit], self.length[hit], self.ret[hit],
                                            np.full(len(hit), _TRUNC, np.uint8), interrupted="reset"))
            for key in self.key[pre & self.open & (self.length == 0)].tolist():
                self.key_meta.pop(key, None)  # a zero-step episode is not stored
            reset_meta = {"seeds": c.reset["seeds"], "options": _jsonable(c.reset["options"])}
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
        if reset_meta is not None:
            seeds, opts = reset_meta["seeds"], reset_meta["options"]
            rsel = np.nonzero(is_start & (kk1 == 0))[0]
            for key, i in zip(row_key[rsel].tolist(), env[rsel].tolist()):
                self.key_meta[key] = {"seed": seeds[i], "options": opts}
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
            end_parts.append(self._ends(run_env[d], run_key[d], run_len[d], run_ret[d], flags, missing_keys))
        # -- per sub-env state after the chunk
        if R:
            lst = np.r_[env[1:] != env[:-1], True]
            e_l, k_l = env[lst], row_key[lst]
            changed = k_l != self.key[e_l]
            self.length[e_l[changed]] = 0
            self.ret[e_l[changed]] = 0.0
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
        writer.write_block(Block(obs, step, R, S, pieces, [], end_cols=_cat_ends(end_parts)))

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
            summary = {"episode_index": key, "length": length, "return": ret, "terminated": meta["terminated"],
                       "truncated": meta["truncated"], "metadata": meta}
            for cb in col.episode_callbacks:
                more = cb(col, summary)
                if more:
                    meta.update(_jsonable(more))
        return json.dumps(meta, default=repr)

    def _ends(self, envs: np.ndarray, keys: np.ndarray, lengths: np.ndarray, rets: np.ndarray, flags: np.ndarray,
              missing: set[int] = frozenset(), interrupted: str | None = None) -> tuple:
        """Columns of finished episodes. Auto-reset episodes take their metadata JSON from a per-(sub-env,
        flags) table, so no per-episode dict or ``json.dumps`` is built for them."""
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
        col.episode_lengths.extend(lengths.tolist())
        col.episode_returns.extend(rets.tolist())
        col.episode_flags.extend(flags.tolist())
        return keys.astype(np.int64), lengths.astype(np.int64), rets.astype(np.float64), flags, metas

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
            if vals.dtype == _OBJ:
                vals = np.array([_to_text(x) if mm else "" for x, mm in zip(vals, mask)], dtype=_OBJ)
            if spec is None:
                spec = self.info_schema[name] = (vals.dtype, vals.shape[1:])
            dt, shape = spec
            if vals.shape[1:] != shape or not (vals.dtype == dt or (
                    (dt == _OBJ) == (vals.dtype == _OBJ) and np.can_cast(vals.dtype, dt, "same_kind"))):
                self._warn_once(f"info:{name}", "gym_aquacollect: info key {!r} changed from {} {} to {} {}; "
                                "such values are not recorded", name, dt, shape, vals.dtype, vals.shape[1:])
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
            for name, (vals, mask) in split_batched_info(infos, n).items():
                try:
                    put(name, rows, vals[envs], mask[envs])
                except (ValueError, TypeError) as exc:
                    self._warn_once(f"info:{name}", "gym_aquacollect: info key {!r} not recorded: {}", name, exc)

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

    def _close_all(self, writer: DatasetWriter) -> None:
        hit = np.nonzero(self.open & (self.length > 0))[0]
        self.open[:] = False
        if len(hit):
            ends = self._ends(hit, self.key[hit], self.length[hit], self.ret[hit], np.full(len(hit), _TRUNC, np.uint8),
                              interrupted="close")
            writer.write_block(Block({}, {}, 0, 0, [], [], end_cols=ends))


def _cat_ends(parts: list[tuple]) -> tuple | None:
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate(cols) for cols in zip(*parts))


_META_SUFFIX = {f: f'"terminated": {"true" if f & _TERM else "false"}, '
                   f'"truncated": {"true" if f & _TRUNC else "false"}}}' for f in range(4)}


def teacher_columns(act_codec: SpaceCodec) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    """Step columns ``extras/teacher_actions[/<leaf>]`` shaped like the (single) action space."""
    return [("extras/teacher_actions" + ("/" + leaf.name if leaf.name else ""), leaf.shape, leaf.dtype)
            for leaf in act_codec.leaves]


def _take(buf: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """``buf[k, i]`` for ``flat = k * N + i`` (``buf`` has leading axes ``(K, N)``): one ``take``."""
    return buf.reshape(-1, *buf.shape[2:]).take(flat, axis=0)


def _cat(xs: list[np.ndarray], dt: Any) -> np.ndarray:
    return np.concatenate(xs) if xs else np.zeros(0, dt)


def _to_text(x: Any) -> str:
    arr = to_storable(x)
    if arr is None:
        return ""
    if arr.dtype == _OBJ:
        return str(arr.item())
    return json.dumps(arr.tolist())


def _jsonable(x: Any) -> Any:
    from ..collectors.base import _jsonable as j

    return j(x)
