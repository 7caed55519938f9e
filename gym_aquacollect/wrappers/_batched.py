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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from loguru import logger

from ..collectors.columns import to_storable
from ..spaces import SpaceCodec
from ..storage.writer import Block, DatasetWriter, EpisodeEnd, Piece

__all__ = ["Chunk", "BatchedRecorder", "NEXT_STEP", "SAME_STEP", "DISABLED", "split_batched_info"]

NEXT_STEP, SAME_STEP, DISABLED = "next_step", "same_step", "disabled"
_TERM, _TRUNC = 1, 2
# obs-row sources
_SRC_STEP, _SRC_FINAL, _SRC_RESET, _SRC_CARRY = 0, 1, 2, 3
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
                 episode_meta: dict[str, Any] | None = None, obs_names: list[str] | None = None) -> None:
        self.collector = collector
        self.writer: DatasetWriter = collector.writer
        self.n = int(num_envs)
        self.obs_codec, self.act_codec = obs_codec, act_codec
        self.mode = mode
        self.record_infos = record_infos
        self.obs_names = obs_names or ["observations" + ("/" + s if s else "") for s in obs_codec.names]
        self.act_names = ["actions" + ("/" + s if s else "") for s in act_codec.names]
        row = obs_codec.row_nbytes + act_codec.row_nbytes + 10
        self.K = int(chunk_steps or max(8, min(256, (4 << 20) // max(1, row * self.n))))
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
        self.meta: list[dict[str, Any]] = [{} for _ in range(n)]
        self.final_missing = np.zeros(n, bool)
        self._next_key = 0
        self.carry_ok = np.zeros(n, bool)
        self.carry_obs = [np.zeros((n, *leaf.shape), leaf.dtype) for leaf in obs_codec.leaves]
        self.carry_info: dict[str, tuple[np.ndarray, np.ndarray]] = {}
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
    def _new_episode(self, ids: np.ndarray, meta: list[dict[str, Any]] | None = None) -> None:
        m = len(ids)
        if not m:
            return
        self.key[ids] = np.arange(self._next_key, self._next_key + m)
        self._next_key += m
        self.open[ids] = True
        self.pending[ids] = False
        self.length[ids] = 0
        self.ret[ids] = 0.0
        self.final_missing[ids] = False
        for j, i in enumerate(ids.tolist()):
            self.meta[i] = meta[j] if meta is not None else {"seed": None}

    def _end(self, i: int, te: bool, tr: bool, ends: list[EpisodeEnd], interrupted: str | None = None) -> None:
        meta = {**self.meta[i], **self.episode_meta, "env_index": i, "terminated": te, "truncated": tr}
        if interrupted:
            meta["interrupted"] = interrupted
        if self.final_missing[i]:
            meta["final_observation"] = "missing"
        length, ret = int(self.length[i]), float(self.ret[i])
        col = self.collector
        summary = {"episode_index": int(self.key[i]), "length": length, "return": ret,
                   "terminated": te, "truncated": tr, "metadata": meta}
        for cb in getattr(col, "episode_callbacks", ()):
            more = cb(col, summary)
            if more:
                meta.update(more)
        flags = (_TERM if te else 0) | (_TRUNC if tr else 0)
        ends.append(EpisodeEnd(int(self.key[i]), length, ret, flags, meta))
        col.episode_lengths.append(length)
        col.episode_returns.append(ret)
        col.episode_flags.append(flags)
        self.open[i] = False

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

    def _split(self, c: Chunk, writer: DatasetWriter) -> None:
        o_env: list[np.ndarray] = []
        o_seq: list[np.ndarray] = []
        o_src: list[np.ndarray] = []
        o_k: list[np.ndarray] = []
        o_key: list[np.ndarray] = []
        s_env: list[np.ndarray] = []
        s_k: list[np.ndarray] = []
        s_key: list[np.ndarray] = []
        ends: list[EpisodeEnd] = []
        final_rows: list[tuple[int, np.ndarray]] = []  # (k, env ids) in emission order

        def emit(ids: np.ndarray, seq: int, src: int, k: int) -> None:
            if len(ids):
                o_env.append(ids)
                o_seq.append(np.full(len(ids), seq, np.int64))
                o_src.append(np.full(len(ids), src, np.int8))
                o_k.append(np.full(len(ids), k, np.int64))
                o_key.append(self.key[ids].copy())

        # carried start rows of episodes that had no step yet
        if c.reset is not None:
            m = c.reset["mask"]
            for i in np.nonzero(m & self.open & (self.length > 0))[0].tolist():
                self._end(i, False, True, ends, interrupted="reset")
            self.carry_ok &= ~m
        emit(np.nonzero(self.carry_ok)[0], -2, _SRC_CARRY, 0)
        carried = self.carry_ok.copy()
        self.carry_ok[:] = False
        if c.reset is not None:
            ids = np.nonzero(c.reset["mask"])[0]
            seeds, options = c.reset["seeds"], c.reset["options"]
            opts = _jsonable(options)
            self._new_episode(ids, [{"seed": seeds[i], "options": opts} for i in ids.tolist()])
            emit(ids, -1, _SRC_RESET, 0)
        mode = self.mode
        for k in range(c.k):
            done_raw = c.term[k] | c.trunc[k]
            if mode == NEXT_STEP and self.pending.any():
                rs = self.pending.copy()  # the env reset these sub-envs and ignored their actions
                ids = np.nonzero(rs)[0]
                self._new_episode(ids)
                emit(ids, 2 * k + 1, _SRC_STEP, k)
                valid = self.open & ~rs
            else:
                valid = self.open.copy()
            if mode == DISABLED:
                nd = int(np.count_nonzero(~valid))
                if nd:
                    self.dropped_steps += nd
                    self._warn_once(
                        "disabled", "gym_aquacollect: step() on sub-envs whose episode ended, without "
                        "reset(options={{'reset_mask': ...}}) (autoreset DISABLED); those steps are not recorded "
                        "({} so far)", self.dropped_steps)
            vids = np.nonzero(valid)[0]
            s_env.append(vids)
            s_k.append(np.full(len(vids), k, np.int64))
            s_key.append(self.key[vids].copy())
            self.length[vids] += 1
            self.ret[vids] += c.rew[k, vids]
            done = valid & done_raw
            dids = np.nonzero(done)[0]
            te, tr = c.term[k], c.trunc[k]
            if mode == SAME_STEP:
                emit(np.nonzero(valid & ~done)[0], 2 * k, _SRC_STEP, k)
                if len(dids):
                    emit(dids, 2 * k, _SRC_FINAL, k)
                    final_rows.append((k, dids))
                    for i in dids.tolist():
                        self._end(i, bool(te[i]), bool(tr[i]), ends)
                    self._new_episode(dids)
                    emit(dids, 2 * k + 1, _SRC_STEP, k)
            else:
                emit(vids, 2 * k, _SRC_STEP, k)
                for i in dids.tolist():
                    self._end(i, bool(te[i]), bool(tr[i]), ends)
                if mode == NEXT_STEP:
                    self.pending[dids] = True
        # open episodes without a step yet: their start row waits for the next chunk
        carry = self.open & (self.length == 0)
        self._assemble(c, writer, o_env, o_seq, o_src, o_k, o_key, s_env, s_k, s_key, ends, final_rows,
                       carry, carried)

    def _assemble(self, c, writer, o_env, o_seq, o_src, o_k, o_key, s_env, s_k, s_key, ends, final_rows,
                  carry, carried) -> None:
        cat = _cat
        env, seq, src, kk, key = (cat(o_env, np.int64), cat(o_seq, np.int64), cat(o_src, np.int8),
                                  cat(o_k, np.int64), cat(o_key, np.int64))
        order = np.lexsort((seq, env))
        env, seq, src, kk, key = env[order], seq[order], src[order], kk[order], key[order]
        # final observation rows (SAME_STEP): resolve per (k, env)
        final_cols, final_ok = self._final_rows(c, final_rows)
        fin_pos = {}
        r = 0
        for k, ids in final_rows:
            for i in ids.tolist():
                fin_pos[(k, i)] = r
                r += 1
        if final_rows:
            fsel = np.nonzero(src == _SRC_FINAL)[0]
            fidx = np.fromiter((fin_pos[(int(kk[j]), int(env[j]))] for j in fsel), np.int64, len(fsel))
        else:
            fsel = fidx = np.zeros(0, np.int64)
        # rows to carry: the start rows of open zero-step episodes (last row of their env here)
        carry_ids = np.nonzero(carry)[0]
        keep = np.ones(len(env), bool)
        if len(carry_ids):
            carry_keys = self.key[carry_ids]
            keep = ~np.isin(key, carry_keys)
        obs_cols = self._gather_obs(c, env, src, kk, fsel, fidx, final_cols)
        info_cols = self._gather_infos(c, env, src, kk) if self.record_infos else {}
        if len(carry_ids):
            cidx = np.nonzero(~keep)[0]
            for leaf_buf, col in zip(self.carry_obs, obs_cols):
                leaf_buf[env[cidx]] = col[cidx]
            self.carry_info = {name: (vals[cidx], mask[cidx], env[cidx]) for name, (vals, mask) in info_cols.items()}
            self.carry_ok[env[cidx]] = True
        elif carried.any():
            self.carry_info = {}
        # the missing-final flag, per episode that ended here
        if final_rows and len(fsel):
            missing = set(key[fsel[~final_ok[fidx]]].tolist())
            if missing:
                for e in ends:
                    if e.key in missing:
                        e.meta["final_observation"] = "missing"
        env_k, keep_idx = env[keep], np.nonzero(keep)[0]
        obs = {name: col[keep_idx] for name, col in zip(self.obs_names, obs_cols)}
        for name, (vals, mask) in info_cols.items():
            obs["infos/" + name] = vals[keep_idx]
            head, _, tail = name.rpartition("/")
            obs["infos/" + (f"{head}/_{tail}" if head else f"_{tail}")] = mask[keep_idx]
        key_o = key[keep_idx]
        # step rows
        se, sk, skey = cat(s_env, np.int64), cat(s_k, np.int64), cat(s_key, np.int64)
        sorder = np.lexsort((sk, se))
        se, sk, skey = se[sorder], sk[sorder], skey[sorder]
        step = {name: buf[sk, se] for name, buf in zip(self.act_names, c.act)}
        step["rewards"] = c.rew[sk, se]
        step["terminations"] = c.term[sk, se]
        step["truncations"] = c.trunc[sk, se]
        pieces = _pieces(key_o, skey)
        del env_k
        writer.write_block(Block(obs, step, len(key_o), len(skey), pieces, ends))

    def _final_rows(self, c: Chunk, final_rows: list[tuple[int, np.ndarray]]):
        total = sum(len(ids) for _, ids in final_rows)
        cols = self.obs_codec.allocate(total)
        for col in cols:
            if col.dtype != _OBJ:
                col[...] = 0
        ok = np.zeros(total, bool)
        r = 0
        for k, ids in final_rows:
            if c.final_leaves is not None:
                if c.final_ok is not None and c.final_ok[k]:
                    for col, buf in zip(cols, c.final_leaves):
                        col[r:r + len(ids)] = buf[k, ids]
                    ok[r:r + len(ids)] = True
                r += len(ids)
                continue
            fo = c.final_obs[k] if k < len(c.final_obs) else None
            for i in ids.tolist():
                v = None if fo is None else fo[i]
                if v is not None:
                    self.obs_codec.write(cols, r, v)
                    ok[r] = True
                r += 1
        return cols, ok

    def _gather_obs(self, c, env, src, kk, fsel, fidx, final_cols) -> list[np.ndarray]:
        out = []
        sel_step = np.nonzero(src == _SRC_STEP)[0]
        sel_reset = np.nonzero(src == _SRC_RESET)[0]
        sel_carry = np.nonzero(src == _SRC_CARRY)[0]
        for j, leaf in enumerate(self.obs_codec.leaves):
            col = np.zeros((len(env), *leaf.shape), leaf.dtype)
            if len(sel_step):
                col[sel_step] = c.obs[j][kk[sel_step], env[sel_step]]
            if len(fsel):
                col[fsel] = final_cols[j][fidx]
            if len(sel_reset):
                col[sel_reset] = c.reset["obs"][j][env[sel_reset]]
            if len(sel_carry):
                col[sel_carry] = self.carry_obs[j][env[sel_carry]]
            out.append(col)
        return out

    # -- infos ------------------------------------------------------------------------------------------
    def _gather_infos(self, c: Chunk, env, src, kk) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        R = len(env)
        groups: dict[tuple[int, int], np.ndarray] = {}
        if R:
            gid = src.astype(np.int64) * (c.k + 2) + kk
            uniq, inv = np.unique(gid, return_inverse=True)
            for u_i, u in enumerate(uniq.tolist()):
                groups[(u // (c.k + 2), u % (c.k + 2))] = np.nonzero(inv == u_i)[0]
        cols: dict[str, tuple[np.ndarray, np.ndarray]] = {}

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

        for (s, k), rows in groups.items():
            e = env[rows]
            if s == _SRC_CARRY:
                for name, (vals, mask, cenv) in self.carry_info.items():
                    pos = {int(x): j for j, x in enumerate(cenv)}
                    sel = [j for j, x in enumerate(e.tolist()) if x in pos]
                    if sel:
                        src_idx = np.array([pos[int(e[j])] for j in sel])
                        put(name, rows[sel], vals[src_idx], mask[src_idx])
                continue
            if s == _SRC_RESET:
                infos = c.reset.get("infos")
            elif s == _SRC_FINAL:
                infos = c.final_info[k] if k < len(c.final_info) else None
            else:
                infos = c.infos[k] if k < len(c.infos) else None
            if not infos:
                continue
            flat = split_batched_info(infos, self.n)
            for name, (vals, mask) in flat.items():
                try:
                    put(name, rows, vals[e], mask[e])
                except (ValueError, TypeError) as exc:
                    self._warn_once(f"info:{name}", "gym_aquacollect: info key {!r} not recorded: {}", name, exc)
        return cols

    def _close_all(self, writer: DatasetWriter) -> None:
        ends: list[EpisodeEnd] = []
        for i in np.nonzero(self.open & (self.length > 0))[0].tolist():
            self._end(i, False, True, ends, interrupted="close")
        if ends:
            writer.write_block(Block({}, {}, 0, 0, [], ends))


def _cat(xs: list[np.ndarray], dt: Any) -> np.ndarray:
    return np.concatenate(xs) if xs else np.zeros(0, dt)


def _pieces(obs_keys: np.ndarray, step_keys: np.ndarray) -> list[Piece]:
    """Segments of contiguous equal keys in the obs rows and the step rows (same key order)."""
    def runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not len(keys):
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        starts = np.concatenate(([0], np.nonzero(keys[1:] != keys[:-1])[0] + 1))
        counts = np.diff(np.concatenate((starts, [len(keys)])))
        return keys[starts], starts, counts

    ok, os_, on = runs(obs_keys)
    sk, ss, sn = runs(step_keys)
    step_at = {int(k): (int(s), int(c)) for k, s, c in zip(sk, ss, sn)}
    out = []
    for k, s, cnt in zip(ok.tolist(), os_.tolist(), on.tolist()):
        st, stn = step_at.pop(k, (0, 0))
        out.append(Piece(k, s, cnt, st, stn))
    if step_at:  # cannot happen: every step emits an observation row
        raise RuntimeError(f"gym_aquacollect: internal error, step rows without observation rows for {step_at}")
    return out


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
