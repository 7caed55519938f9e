"""The single-env row path: one step of one env into preallocated block buffers, handed to the writer.

Contents:
    * :class:`RowRecorder` - the per-step engine :class:`~gym_aquacollect.collectors.base.BaseCollector` is built
      on: :meth:`~RowRecorder.begin_episode` / :meth:`~RowRecorder.record_step` validate and copy each value
      into the current block (:class:`~gym_aquacollect.schema.spaces.SpaceCodec` columns plus the info / extra
      columns of :mod:`gym_aquacollect.schema.columns`), close episodes, and hand blocks over
      (:meth:`~RowRecorder._handoff`) to the host's public hook ``on_block`` and ``on_episode_end``.
    * :func:`engine_default` - marks a collector's default hooks (then segments and episode ends travel to
      the writer as columns, not one object per episode).
    * :func:`scalar`-style helpers used by the collectors' seed API.

A collector whose spaces allow it records each step through a function generated for those spaces
(:mod:`gym_aquacollect.recording.fast_step`), installed as the instance's ``record_step``; a single-env
wrapper gets it fused with the env's ``step`` (:meth:`RowRecorder.fused_step`). The methods here are the
general path it falls back to.

The host class provides the state (``writer``, codecs, ``_rows``, block pool, counters: set up by
``BaseCollector.__init__`` / ``start_collection``) and the policy hooks (``on_block``, ``on_episode_end``,
``run_episode_callbacks``); this module imports no collector.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

from gym_aquacollect.logs import logger
from gym_aquacollect.schema.columns import DynamicColumns
from gym_aquacollect.schema.columns import jsonable as _jsonable
from gym_aquacollect.schema.flags import TERM as _TERM
from gym_aquacollect.schema.flags import TRUNC as _TRUNC
from gym_aquacollect.storage.shard import PLAIN_EPISODE_META
from gym_aquacollect.storage.writer import Block, EpisodeEnd, Piece

__all__ = ["RowRecorder", "engine_default"]


def engine_default(hook: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a collector's default ``on_block`` / ``on_episode_end``. While a collector keeps both, the row
    path hands segments and episode ends to the writer as columns (no ``Piece`` / ``EpisodeEnd`` object per
    episode); a collector that overrides either hook receives them as objects, as documented."""
    hook.engine_default = True
    return hook


def _scalar(value: Any, name: str, kind: type) -> Any:
    """Validate a reward / flag that is not already a Python float / bool (NumPy scalars, 0-d arrays)."""
    try:
        if np.ndim(value) != 0:
            raise TypeError
        return kind(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name}: expected a scalar ({kind.__name__}), got {type(value).__name__} with shape "
            f"{np.shape(value)}. A single-env step returns one {name}; for batched envs use "
            "CollectingVectorWrapper."
        ) from None


def _bounds_problem(space: gym.Space, value: Any, where: str) -> str | None:
    """Why a value that passed the shape/dtype checks is out of its Box bounds or not finite (or None)."""
    from gymnasium import spaces as sp

    if isinstance(space, sp.Box):
        arr = np.asarray(value)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            return f"{where}: holds NaN or inf (check_bounds=True)"
        if (arr < space.low).any() or (arr > space.high).any():
            return (f"{where}: values outside the bounds of {space} (min {arr.min()}, max {arr.max()}; "
                    "check_bounds=True)")
    elif isinstance(space, sp.Dict):
        for k, sub in space.spaces.items():
            why = _bounds_problem(sub, value[k], f"{where}[{k!r}]")
            if why:
                return why
    elif isinstance(space, sp.Tuple):
        for j, sub in enumerate(space.spaces):
            why = _bounds_problem(sub, value[j], f"{where}[{j}]")
            if why:
                return why
    return None


def _checked_put(put: Callable[[int, Any], None], space: gym.Space, label: str, row: int, value: Any) -> None:
    """``put`` (shape/dtype-validating copy) followed by the opt-in bounds/NaN check."""
    put(row, value)
    why = _bounds_problem(space, value, label)
    if why:
        from gym_aquacollect.schema.spaces import SpaceMismatchError

        raise SpaceMismatchError(why)


#: Observation rows up to this size are stored as raw bytes by the specialised step (see ``_choose_layout``).
PACKED_ROW_BYTES = 512


def _rows(col: Any, leaf: Any, a: int, b: int) -> np.ndarray:
    """Rows ``a:b`` of a block column as a NumPy array: a view of an array column, a copy of a list one
    (Discrete actions)."""
    if type(col) is not list:
        return col[a:b]
    return _small_ints(col[a:b], leaf.dtype)


def _small_ints(values: list, dtype: Any) -> np.ndarray:
    """``np.array(values, dtype)`` for a list of ints or bools; through ``bytearray`` (2-3x faster) when every
    value lies in 0..255, which is the common case (flags, most Discrete actions)."""
    try:
        raw = np.frombuffer(bytearray(values), np.uint8)
    except (ValueError, TypeError):  # a value outside 0..255, or a NumPy bool
        return np.array(values, dtype=dtype)
    return raw.view(bool) if dtype == np.bool_ else raw.astype(dtype)


class RowRecorder:
    """The single-env row path (see the module docstring); a mixin of
    :class:`~gym_aquacollect.collectors.base.BaseCollector`."""

    def _block_rows(self) -> int:
        """Rows per block: ``block_bytes`` over the bytes of one row, info and extra columns included, so a
        large info value (a camera frame) makes blocks shorter instead of allocating for ``_rows`` rows."""
        per_row = self._obs_codec.row_nbytes + self._act_codec.row_nbytes + 10 + \
            self._infos.row_nbytes + self._extras.row_nbytes
        return int(max(2, min(self._rows, self.block_bytes // max(1, per_row))))

    def _resize_block(self, cols: DynamicColumns) -> int:
        """A new info/extra column appeared (``cols``): shrink the open block to ``block_bytes``. When the
        rows already filled are more than that, they are handed over first and the new column starts at
        the row being written (its base), so it never holds rows sized for small values. Returns the base."""
        want = self._block_rows()
        if want >= self._cap:
            return 0
        filled = max(self._no, self._ns) + 1  # rows in use, including the one being written
        base = 0
        if filled > want:
            self._handoff()
            base = self._sent_o if cols is self._infos else self._sent_s
        self._cap = max(filled, min(self._cap, base + want))
        self._infos.rows = self._extras.rows = self._cap
        return base

    def _new_block(self) -> None:
        rows = self._rows
        if self._pool:
            obs, act, rew, term, trunc = self._pool.pop()
        else:
            # Python lists where they are cheaper than a NumPy item store (converted at hand-over): rewards,
            # flags and Discrete actions
            obs = self._obs_codec.allocate(rows)
            act = [[0] * rows] if self._packed_act else self._act_codec.allocate(rows)
            rew, term, trunc = [0.0] * rows, [False] * rows, [False] * rows
        self._obs, self._act, self._rew, self._term, self._trunc = obs, act, rew, term, trunc
        self._bind_writers()
        cap = self._block_rows()
        self._infos.new_block(cap)
        self._extras.new_block(cap)
        self._cap = cap
        self._no = self._ns = 0  # filled obs / step rows
        self._sent_o = self._sent_s = 0  # rows already handed over
        self._piece_o = self._piece_s = 0  # where the current episode's unsent rows start
        self._seg: list[int] = []  # pieces as flat ints: key, obs_start, obs_n, step_start, step_n
        self._ends: list[EpisodeEnd] = []  # ends the on_episode_end hook keeps (collectors with own hooks)
        self._end_rows: list[tuple] = []  # ends of the default hooks: (key, length, ret, flags, meta)
        self._last_handoff = time.monotonic()

    def _check_writer(self) -> None:
        if self.writer is not None:
            self.writer.check()

    def handoff(self) -> None:
        """Hand the rows recorded so far to ``on_block`` now, instead of when the block fills (or ~1 s passed):
        for a collector that must see every step, e.g. ``BufferCollector.sample``. A reset observation whose
        episode has no step yet stays until it has one. Does nothing when the collection is not running."""
        if self.collecting:
            self._handoff()

    def begin_episode(self, observation: Any, info: dict[str, Any] | None = None, *, seed: Any = None,
                      options: Any = None, metadata: dict[str, Any] | None = None) -> None:
        """Open a new episode with its reset observation (ends an open one as truncated)."""
        if not self.collecting:
            self.start_collection()
        self._invalid = False
        if self._ep_open and self._cur_len() > 0:
            self._finish_episode(False, True, interrupted="reset")
        elif self._ep_open and self._ep_recording:  # zero-step episode: drop its reset row
            self._no -= 1
            self._infos.clear_row(self._no)
        self._episode_index += 1
        self._ep_recording = self.schedule is None or bool(self.schedule(self._episode_index))
        self._ep_open, self._ep_done = True, False
        self._ep_len0, self._ep_ret0 = 0, 0.0  # length/return of rows already handed over
        self._skip_len, self._skip_ret = 0, 0.0
        self._ep_t0 = time.time()  # wall-clock start (metadata["t_start"])
        if seed is None and options is None and not metadata:
            self._ep_meta = None  # built only if needed (callbacks, an interruption, hooks): see _finish_episode
        else:
            self._ep_meta = {"seed": _jsonable(seed), "options": _jsonable(options), **_jsonable(metadata or {})}
        self._fast = self._ep_recording
        if not self._ep_recording:
            return
        self._ep_key += 1
        if self._no == self._cap:
            self._rotate()
        j = self._no
        self._put_obs(j, observation)
        if info and self.record_infos:
            self._infos.put(j, info)
        self._piece_o, self._piece_s = j, self._ns
        self._no = j + 1

    def record_step(self, action: Any, observation: Any, reward: Any, terminated: Any, truncated: Any,
                    info: dict[str, Any] | None = None, extras: dict[str, Any] | None = None) -> None:
        """Record one transition of the open episode (``observation`` is the one ``step`` returned)."""
        if not self._fast or self._wstate.failed:
            return self._record_slow(action, observation, reward, terminated, truncated, info, extras)
        i, j = self._ns, self._no
        if j == self._cap:  # obs rows >= step rows in a block, so this also bounds i
            self._rotate()
            i, j = self._ns, self._no
        try:
            self._put_act(i, action)
            self._put_obs(j, observation)
            self._rew[i] = reward if type(reward) is float else _scalar(reward, "reward", float)
            self._term[i] = terminated if type(terminated) is bool else _scalar(terminated, "terminated", bool)
            self._trunc[i] = truncated if type(truncated) is bool else _scalar(truncated, "truncated", bool)
        except Exception as e:
            self._invalid_step(e, terminated, truncated)
            raise
        if info and self.record_infos:
            self._infos.put(j, info)
        if extras or self.step_callbacks:
            self._step_extras(i, action, observation, reward, terminated, truncated, info, extras)
        self._ns, self._no = i + 1, j + 1
        if terminated or truncated:
            self._finish_episode(bool(terminated), bool(truncated))
        elif not i & 255:
            self._wstate.let_run()  # see DatasetWriter.let_run (the GIL convoy)
            if time.monotonic() - self._last_handoff > self._handoff_every:
                self._handoff()

    def _cur_len(self) -> int:
        """Steps of the open episode so far."""
        if not self._ep_recording:
            return self._skip_len
        return self._ep_len0 + self._ns - self._piece_s

    def _cur_ret(self) -> float:
        if not self._ep_recording:
            return self._skip_ret
        return self._ep_ret0 + sum(self._rew[self._piece_s:self._ns])

    def _invalid_step(self, error: BaseException, terminated: Any, truncated: Any) -> None:
        """A step's value failed validation after the env had stepped. The step is not recorded; the open
        episode is stored as it was (truncated, ``interrupted: "invalid_step"``) and nothing more is
        recorded until the next reset, so a caller that catches the error and goes on never gets two
        non-adjacent steps joined as one transition."""
        logger.error("gym_aquacollect: {}; the open episode is stored as truncated (interrupted: invalid_step) "
                     "and steps are not recorded until the next reset()", error)
        if self._cur_len() > 0:
            self._finish_episode(False, True, interrupted="invalid_step")
            self._ep_done = False
        else:  # zero-step episode: drop its reset row
            self._no -= 1
            self._infos.clear_row(self._no)
        self._ep_open = self._fast = False
        self._invalid = True
        self._invalid_dropped_done(terminated, truncated)

    def _invalid_dropped_done(self, terminated: Any, truncated: Any) -> None:
        """A dropped step that ended the env's episode: an autoreset env's next step begins a new one."""
        try:
            if bool(terminated) or bool(truncated):
                self._invalid, self._ep_done = False, True
        except Exception:  # noqa: BLE001 - an invalid flag: keep waiting for reset()
            pass

    def _record_slow(self, action, observation, reward, terminated, truncated, info, extras) -> None:
        self._check_writer()
        if not self.collecting:
            raise RuntimeError("the collector is not collecting: call start_collection() (or it was closed)")
        if self._invalid:
            self._invalid_dropped_done(terminated, truncated)
            return
        if not self._ep_open:
            if self._ep_done:
                self._step_after_done()
                return
            raise RuntimeError(
                "record_step() called before begin_episode(): the collector needs the reset observation "
                "first (call env.reset() / collector.begin_episode(obs))"
            )
        # an episode the schedule does not record: only count it
        self._skip_len += 1
        self._skip_ret += float(reward)
        if terminated or truncated:
            self._ep_open, self._ep_done, self._fast = False, True, False
            self.skipped_episodes += 1

    def _step_extras(self, i, action, observation, reward, terminated, truncated, info, extras) -> None:
        if extras:
            self._extras.put(i, extras)
        if self.step_callbacks:
            step = {"action": action, "observation": observation, "reward": reward, "terminated": terminated,
                    "truncated": truncated, "info": info, "episode_index": self._episode_index,
                    "t": self._cur_len()}
            for cb in self.step_callbacks:
                extra = cb(self, step)
                if extra:
                    self._extras.put(i, extra)

    def _choose_layout(self) -> None:
        """How the block holds observations and actions (decided once, at start): a one-leaf observation
        of at most :data:`PACKED_ROW_BYTES` per row is stored through a ``V<n>`` (raw bytes) view of its
        column, from ``obs.tobytes()`` (half the cost of a NumPy row assignment); a Discrete action goes
        to a list of ints; the writer receives NumPy columns either way."""
        from gymnasium import spaces as sp

        oc, ac = self._obs_codec, self._act_codec
        self._packed_obs = (oc.simple and not oc.leaves[0].is_text and not isinstance(oc.leaves[0].space, sp.Discrete)
                            and 0 < oc.row_nbytes <= PACKED_ROW_BYTES)
        self._packed_act = ac.simple and isinstance(ac.leaves[0].space, sp.Discrete)
        self._pool.clear()

    def _bind_writers(self) -> None:
        """Bind the per-step writers to the current block's arrays (the fast path for flat spaces)."""
        # read by the specialised step (_specialise)
        col = self._obs[0]
        self._ocol = col.reshape(len(col), -1).view(f"V{self._obs_codec.row_nbytes}").reshape(-1) \
            if self._packed_obs else col
        self._acol = self._act[0]
        for name, codec, cols in (("_put_obs", self._obs_codec, self._obs), ("_put_act", self._act_codec, self._act)):
            if codec.simple:
                leaf_put, col = codec.leaf_writer(), cols[0]
                setattr(self, name, partial(leaf_put, col))  # a Discrete writer stores ints into a list too
            else:
                setattr(self, name, partial(codec.write, cols))
        if self.check_bounds:
            for name, space, label in (("_put_obs", self.observation_space, "observation"),
                                       ("_put_act", self.action_space, "action")):
                setattr(self, name, partial(_checked_put, getattr(self, name), space, label))

    def _specialise(self) -> None:
        """Install the per-step path generated for these spaces (:mod:`~gym_aquacollect.recording.fast_step`)
        as the instance's ``record_step``; a subclass's or caller's own ``record_step`` is kept."""
        if self.__dict__.get("record_step") is getattr(self, "_installed_step", None):
            self.__dict__.pop("record_step", None)  # ours, from an earlier start; a caller's own stays
        cls = type(self)
        self._plain = all(getattr(getattr(cls, hook, None), "engine_default", False)
                          for hook in ("on_block", "on_episode_end"))
        fast = self._make_fast_step() if "record_step" not in self.__dict__ else None
        self._installed_step = fast
        if fast is not None:
            self.record_step = fast

    def _make_fast_step(self, env_step: Callable[[Any], tuple] | None = None) -> Callable[..., Any] | None:
        """The specialised ``record_step`` (or, with ``env_step``, a wrapper's whole ``step``) for these
        spaces, or None: see :mod:`gym_aquacollect.recording.fast_step`."""
        from gym_aquacollect.recording.fast_step import make_fast_step

        if type(self).record_step is not RowRecorder.record_step:
            return None
        return make_fast_step(self, partial(RowRecorder.record_step, self), env_step)

    def fused_step(self, env_step: Callable[[Any], tuple]) -> Callable[[Any], tuple] | None:
        """A wrapper's whole ``step(action)`` for this collector: ``env_step(action)`` recorded through the
        specialised path (see :meth:`_specialise`), or None when this collector has no such path (then the
        wrapper calls :meth:`record_step` itself). Call after :meth:`start_collection`."""
        installed = getattr(self, "_installed_step", None)
        if installed is None or self.__dict__.get("record_step") is not installed:
            return None
        return self._make_fast_step(env_step)

    def _step_after_done(self) -> None:
        if not self._warned_after_done:
            self._warned_after_done = True
            logger.warning(
                "gym_aquacollect: step() called after the episode ended (terminated/truncated) without reset(); "
                "Gymnasium leaves this undefined, so such steps are not recorded. Call env.reset() after a done."
            )

    def _finish_episode(self, terminated: bool, truncated: bool, interrupted: str | None = None) -> None:
        ns, no, ps, po = self._ns, self._no, self._piece_s, self._piece_o
        if self._ep_recording:
            length, ret = self._ep_len0 + ns - ps, self._ep_ret0 + sum(self._rew[ps:ns])
        else:
            length, ret = self._cur_len(), self._cur_ret()
        flags = (_TERM if terminated else 0) | (_TRUNC if truncated else 0)
        t_end = time.time()
        meta = self._ep_meta
        if meta is None and (interrupted or self.episode_callbacks or not self._plain):
            meta = {"seed": None, "options": None}
        if meta is not None:  # otherwise: the plain metadata, one constant text per flags (no dict)
            meta["terminated"], meta["truncated"] = terminated, truncated
            meta["t_start"], meta["t_end"] = self._ep_t0, t_end
            if interrupted:
                meta["interrupted"] = interrupted
            if self.episode_callbacks:
                self.run_episode_callbacks(self._episode_index, length, ret, terminated, truncated, meta)
        key = self._ep_key
        self._seg.extend((key, po, no - po, ps, ns - ps))
        self._piece_o, self._piece_s = no, ns
        self._ep_open = self._fast = False
        self._ep_done = True
        if self._plain:  # the default on_episode_end, without building an EpisodeEnd per episode
            self._end_rows.append((key, length, ret, flags, PLAIN_EPISODE_META[flags] if meta is None else meta,
                                   self._ep_t0, t_end))
            self.episode_lengths.append(length)
            self.episode_returns.append(ret)
            self.episode_flags.append(flags)
        else:
            self.on_episode_end(EpisodeEnd(key, length, ret, flags, meta))
        if self._handoff_on_end or time.monotonic() - self._last_handoff > self._handoff_every:
            self._handoff()

    def _handoff(self, final: bool = False) -> None:
        """Hand the rows filled since the last hand-over to the writer (views, no copy)."""
        self._last_handoff = time.monotonic()
        if self._ep_open and self._ep_recording:
            if self._ns > self._piece_s:
                self._seg.extend((self._ep_key, self._piece_o, self._no - self._piece_o,
                                  self._piece_s, self._ns - self._piece_s))
                self._ep_len0 += self._ns - self._piece_s
                self._ep_ret0 += sum(self._rew[self._piece_s:self._ns])
                self._piece_o, self._piece_s = self._no, self._ns
            stop_o = self._piece_o  # a lone reset row waits until its episode has a step
        else:
            stop_o = self._no
        so, ss, no, ns = self._sent_o, self._sent_s, stop_o, self._ns
        if no == so and ns == ss and not self._ends and not self._end_rows and not final:
            return
        obs = {name: _rows(col, leaf, so, no) for name, col, leaf in zip(self._obs_names, self._obs, self._obs_codec.leaves)}
        obs.update(self._infos.columns(so, no))
        step = {name: _rows(col, leaf, ss, ns) for name, col, leaf in zip(self._act_names, self._act, self._act_codec.leaves)}
        step["rewards"] = np.array(self._rew[ss:ns], dtype=np.float64)
        step["terminations"] = _small_ints(self._term[ss:ns], np.bool_)
        step["truncations"] = _small_ints(self._trunc[ss:ns], np.bool_)
        step.update(self._extras.columns(ss, ns))
        seg, end_cols, end_times = self._seg, None, None
        if self._plain:  # the writer takes segments and ends as columns
            pieces = np.array(seg, dtype=np.int64).reshape(-1, 5)
            pieces[:, 1] -= so
            pieces[:, 3] -= ss
            if self._end_rows:
                keys, lengths, rets, flags, metas, t0, t1 = zip(*self._end_rows)
                meta_col = np.empty(len(metas), dtype=object)
                meta_col[:] = metas
                end_cols = (np.array(keys, np.int64), np.array(lengths, np.int64), np.array(rets, np.float64),
                            np.array(flags, np.uint8), meta_col)
                end_times = np.array((t0, t1), dtype=np.float64).T
                self._end_rows = []
        else:  # an overriding on_block reads Piece objects
            pieces = [Piece(seg[k], seg[k + 1] - so, seg[k + 2], seg[k + 3] - ss, seg[k + 4])
                      for k in range(0, len(seg), 5)]
        block = Block(obs, step, no - so, ns - ss, pieces, self._ends, end_cols=end_cols, end_times=end_times)
        self._seg, self._ends = [], []
        self._sent_o, self._sent_s = no, ns
        if final:
            arrays = (self._obs, self._act, self._rew, self._term, self._trunc)
            pool = self._pool
            # the whole block's memory waits for the writer: its rows, info and extra columns
            block.nbytes = (self._obs_codec.row_nbytes + self._act_codec.row_nbytes + 48) * len(self._rew) + \
                self._infos.nbytes + self._extras.nbytes

            def release() -> None:
                pool.append(arrays)

            block.on_written = release
        self.on_block(block)

    def _submit_bounded(self, block: Block, cap: int) -> None:
        """Submit a block of copied rows (not from the block pool) through the writer's byte budget
        (:mod:`gym_aquacollect.storage.flow`), with ``cap`` as its limit: waits while more than ``cap``
        bytes handed over are still unwritten (used by collectors that keep rows themselves)."""
        block.nbytes = sum(a.nbytes for a in block.obs.values()) + sum(a.nbytes for a in block.step.values())
        self.writer.set_max_pending_bytes(cap)
        self.writer.submit(block)

    def _rotate(self) -> None:
        """The block is full: hand it over and continue in a fresh one (carrying a lone reset row)."""
        lone = self._ep_open and self._ep_recording and self._cur_len() == 0
        old = (self._obs, self._infos.snapshot(), self._no - 1)
        self._handoff(final=True)
        self._new_block()
        if lone:
            obs_cols, info_snap, row = old
            for dst, src in zip(self._obs, obs_cols):
                dst[0] = src[row]
            self._infos.copy_row_from(info_snap, row, 0)
            self._no = 1
            self._piece_o, self._piece_s = 0, 0
