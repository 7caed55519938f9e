"""BufferCollector: a ring buffer that is also a replay buffer, with a memory limit that holds.

Contents:
    * :class:`BufferCollector` - keeps the most recent transitions in memory for
      :meth:`~BufferCollector.sample` (uniform replay for online RL) and writes what leaves the ring
      (or everything, on :meth:`~BufferCollector.flush` / :meth:`~BufferCollector.end_collection`) to
      the dataset on disk through the same writer thread as every collector.
    * :class:`BufferOverflowError` - raised with ``on_overflow="raise"`` instead of losing data.

Fed by the engine. Steps are recorded by the recording engine every collector shares
(:class:`~gym_aquacollect.recording.row.RowRecorder`: validation, the copy of each value, episode
bookkeeping, callbacks, infos and extras). The buffer only decides what to keep: it receives the engine's
blocks through the public hook :meth:`~BufferCollector.on_block` and copies their rows into its ring with
whole-array NumPy operations (a few per block, not per step). Its only per-step work is one counter: the
room left in the ring. When a step finds no room, the buffer first takes the rows the engine holds
(:meth:`~gym_aquacollect.recording.row.RowRecorder.handoff`) and moves the oldest transitions out of the ring
(``on_overflow``), so a step that cannot be kept is refused before it is recorded. :meth:`~BufferCollector.sample`
and ``len()`` take the rows the engine holds too, so they see every step recorded so far.

Layout. Observations and their info columns live in one ring (T+1 rows per episode: the reset observation,
then one per step) and steps in another (action, reward, terminated, truncated, extra columns, and the
absolute index of the observation the action was taken at); each column the engine hands over gets a ring
column of its own. A step's next observation is the row after its
observation, so it is stored once and a sampled ``(obs, next_obs)`` pair never crosses an episode
boundary: the final observation of an episode is a row of its own, the next episode's reset observation
comes after it.

Memory. With ``memory_limit_mb`` the process's resident memory (psutil RSS) is the budget: at
:meth:`~BufferCollector.start_collection` the ring capacity is cut to what fits between the RSS then
and the limit (less headroom for the engine's block and for blocks on their way to disk), and RSS is
polled while recording (when a block arrives and 1024 steps passed since the last poll, so the ring grows by
at most 1024 steps plus one engine block of ``block_bytes`` between polls; or from a thread after
:meth:`~BufferCollector.enable_async_processing`); if it reaches the limit before the rings are full, they
stop growing where they are (at the next step). Once full, the oldest transitions leave the
ring: ``on_overflow="spill"`` (default) writes them to disk, ``"drop"`` discards those not yet written
(their episodes are then left out of the dataset), ``"raise"`` raises :class:`BufferOverflowError`. The
first time the memory limit, rather than ``max_buffer_size``, decides the capacity, a warning is logged.

Vector envs (``batched_mode = "transitions"``): the batched recorder streams every row to disk itself
and hands each chunk's transitions to :meth:`~BufferCollector.on_transitions` in the writer thread.
They go to a transition ring of their own (observation and next observation stored per transition,
next observation = what the step returned, the final observation at SAME_STEP done steps); the ring
overwrites its oldest transitions when full (they are on disk already, so ``on_overflow`` does not
apply), and its capacity is ``max_buffer_size`` cut to the memory budget. :meth:`~BufferCollector.sample`
then draws from it (under a lock: the ring is filled by the writer thread). RSS is not polled there.

Size: over 500 lines because the ring, its spill path and its memory budget form one structure: splitting
them would share the ring's indices across modules.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from gym_aquacollect.collectors.base import DEFAULT_COMPRESSION, BaseCollector
from gym_aquacollect.logs import logger
from gym_aquacollect.recording.row import RowRecorder
from gym_aquacollect.storage.writer import Block, EpisodeEnd, Piece

__all__ = ["BufferCollector", "BufferOverflowError"]

_MB = 1 << 20
_POLL_EVERY = 1024  # steps between RSS polls when not async
_SMALL = 4  # blocks of at most this many pieces are indexed in Python (cheaper than NumPy for a few rows)
_engine_begin = RowRecorder.begin_episode
_engine_step = RowRecorder.record_step


class BufferOverflowError(MemoryError):
    """The buffer is full and ``on_overflow="raise"``: data not yet on disk would be lost."""


def _ring_put(dst: np.ndarray, pos: int, src: np.ndarray, cap: int) -> None:
    """Write the rows of ``src`` at ring position ``pos`` of ``dst`` (wrapping at ``cap``): one or two slice copies."""
    n = len(src)
    if pos + n <= cap:
        dst[pos:pos + n] = src
    else:
        first = cap - pos
        dst[pos:] = src[:first]
        dst[:n - first] = src[first:]


def _ring_fill(dst: np.ndarray, pos: int, n: int, value: Any, cap: int) -> None:
    """Set ``n`` rows at ring position ``pos`` of ``dst`` (wrapping at ``cap``) to ``value``."""
    if pos + n <= cap:
        dst[pos:pos + n] = value
    else:
        dst[pos:] = value
        dst[:n - (cap - pos)] = value


def _blank_column(rows: int, like: np.ndarray) -> np.ndarray:
    """A ring column of ``rows`` rows for values like ``like``'s rows, every row absent."""
    shape = (rows, *like.shape[1:])
    if like.dtype.kind == "O":
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=like.dtype)


def _piece_rows(starts: np.ndarray, counts: np.ndarray, total: int) -> slice | np.ndarray:
    """The block rows of pieces (``starts``, ``counts``) in piece order: a slice when they are contiguous."""
    offsets = np.cumsum(counts) - counts
    if int(starts[0]) == 0 and np.array_equal(starts, offsets):
        return slice(0, total)
    return np.repeat(starts - offsets, counts) + np.arange(total)


def _ends_of(block: Block) -> list[EpisodeEnd]:
    """The block's finished episodes, from ``ends`` and (batched producers) ``end_cols``."""
    ends = list(block.ends or ())
    if block.end_cols is not None:
        keys, lengths, rets, flags, metas = block.end_cols
        ends += [EpisodeEnd(int(k), int(n), float(r), int(f), json.loads(m) if m else {})
                 for k, n, r, f, m in zip(keys.tolist(), lengths.tolist(), rets.tolist(), flags.tolist(), metas)]
    return ends


class BufferCollector(BaseCollector):
    """A replay buffer for online RL that also records its data to disk, within a memory limit.

    With a vector env (``CollectingVectorWrapper(envs, collector=buf)``) :meth:`sample` draws from the
    transitions of every sub-env (see the module docstring).

    Example:
        >>> import tempfile, gymnasium as gym
        >>> from gym_aquacollect import BufferCollector, CollectingWrapper, load_dataset
        >>> buf = BufferCollector(name="replay", save_path=tempfile.mkdtemp(), max_buffer_size=500)
        >>> with CollectingWrapper(gym.make("CartPole-v1"), collector=buf) as env:
        ...     _ = env.reset(seed=0)
        ...     for _ in range(1000):
        ...         *_, term, trunc, _ = env.step(env.action_space.sample())
        ...         if term or trunc:
        ...             _ = env.reset()
        ...     batch = buf.sample(32, seed=0)
        >>> batch["obs"].shape, batch["next_obs"].shape, len(buf)
        ((32, 4), (32, 4), 500)
        >>> load_dataset(buf.dataset_path).total_steps  # what left the ring was spilled to disk
        1000

    Args:
        name, save_path: the dataset goes to ``save_path/name``.
        max_buffer_size: transitions the ring holds (at most; the memory limit may allow fewer).
        buffer_batch_size: transitions moved out of the ring at a time when it is full (also the
            default ``batch_size`` of :meth:`sample`).
        enable_memory_monitoring: poll RSS with psutil and enforce ``memory_limit_mb``.
        memory_limit_mb: the process RSS this buffer keeps under (None: only ``max_buffer_size``).
        compression_enabled: compress data on disk (LZF); False stores it uncompressed. An explicit
            ``compression=`` wins.
        on_overflow: ``"spill"`` (write the oldest data to disk), ``"drop"`` or ``"raise"``.
        **kwargs: see :class:`~gym_aquacollect.collectors.BaseCollector` (``record_infos`` defaults to
            False here: replay rarely needs infos, and they cost memory per row).
    """

    batched_mode = "transitions"

    def __init__(
        self,
        name: str = "buffer_collector",
        save_path: str | Path | None = None,
        max_buffer_size: int = 1_000_000,
        buffer_batch_size: int = 256,
        enable_memory_monitoring: bool = True,
        memory_limit_mb: float | None = None,
        compression_enabled: bool = True,
        *,
        on_overflow: str = "spill",
        **kwargs: Any,
    ) -> None:
        if on_overflow not in ("spill", "drop", "raise"):
            raise ValueError(f"on_overflow must be 'spill', 'drop' or 'raise', got {on_overflow!r}")
        if int(max_buffer_size) < 1:
            raise ValueError(f"max_buffer_size must be >= 1, got {max_buffer_size}")
        if int(buffer_batch_size) < 1:
            raise ValueError(f"buffer_batch_size must be >= 1, got {buffer_batch_size}")
        if memory_limit_mb is not None and float(memory_limit_mb) <= 0:
            raise ValueError(f"memory_limit_mb must be > 0 or None, got {memory_limit_mb}")
        kwargs.setdefault("compression", DEFAULT_COMPRESSION if compression_enabled else None)
        kwargs.setdefault("record_infos", False)
        super().__init__(name, save_path, **kwargs)
        self.max_buffer_size = int(max_buffer_size)
        self.buffer_batch_size = int(buffer_batch_size)
        self.enable_memory_monitoring = bool(enable_memory_monitoring)
        self.memory_limit_mb = None if memory_limit_mb is None else float(memory_limit_mb)
        self.compression_enabled = bool(compression_enabled)
        self.on_overflow = on_overflow
        self.async_processing = False
        self._rng = np.random.default_rng()
        self._proc = psutil.Process()
        self._monitor: threading.Thread | None = None
        self._monitor_stop = threading.Event()
        self.peak_rss = 0
        self.spilled_steps = 0
        self.dropped_steps = 0
        self.dropped_episodes = 0
        self._limit_warned = False
        self._rss_warned = False
        self._vring: dict[str, Any] | None = None  # the transition ring of batched (vector) recording
        self._tr_lock = threading.Lock()
        # rows the ring can still take, less what the engine holds (one decrement per step / reset); the
        # value it had at the last hand-over tells sample() whether the engine holds steps it has not seen
        self._room = self._room_seen = 0

    # -- set-up --------------------------------------------------------------------------------------------
    def enable_async_processing(self, interval: float = 0.05) -> None:
        """Poll memory from a background thread (every ``interval`` s) instead of when blocks arrive.

        Disk writes are always asynchronous (the writer thread); this moves the psutil polls off the
        recording thread too.
        """
        self.async_processing = True
        self._poll_interval = float(interval)
        if self.collecting:
            self._start_monitor()

    def _start_monitor(self) -> None:
        if self._monitor is not None or not self.enable_memory_monitoring:
            return
        self._monitor_stop.clear()

        def run() -> None:
            while not self._monitor_stop.wait(self._poll_interval):
                if self._rss_over():
                    self._mem_alert = True

        self._monitor = threading.Thread(target=run, name="aquacollect-memory-monitor", daemon=True)
        self._monitor.start()

    def _stop_monitor(self) -> None:
        if self._monitor is not None:
            self._monitor_stop.set()
            self._monitor.join(5)
            self._monitor = None

    def _row_bytes(self) -> tuple[int, int]:
        obs = self._obs_codec.row_nbytes
        step = self._act_codec.row_nbytes + 8 + 1 + 1 + 8 + 8 + 1
        return obs, step

    def _capacity(self) -> tuple[int, int]:
        """Step and observation ring capacities (from max_buffer_size and the memory budget)."""
        cs = self.max_buffer_size
        obs_b, step_b = self._row_bytes()
        self._pending_cap = 256 * _MB
        if self.memory_limit_mb is not None and self.enable_memory_monitoring:
            limit = int(self.memory_limit_mb * _MB)
            rss = self._proc.memory_info().rss
            self._pending_cap = int(min(64 * _MB, max(4 * _MB, limit // 16)))
            # headroom: blocks on their way to disk, the engine's block, and the rest of the process
            budget = limit - rss - self._pending_cap - min(self.block_bytes, 64 * _MB) - 48 * _MB
            per_step = step_b + obs_b * 1.25
            fit = int(budget // per_step) if budget > 0 else 0
            if fit < 2 * self.buffer_batch_size:
                raise MemoryError(
                    f"BufferCollector: memory_limit_mb={self.memory_limit_mb:g} leaves room for {max(fit, 0)} "
                    f"transitions of {per_step / 1024:.1f} KiB: the process already uses {rss / _MB:.0f} MB. "
                    "Raise memory_limit_mb, or lower buffer_batch_size."
                )
            if fit < cs:
                cs = fit
                self._warn_limit(f"memory_limit_mb={self.memory_limit_mb:g} (RSS at start {rss / _MB:.0f} MB) "
                                 f"lets the ring hold {cs} transitions instead of max_buffer_size="
                                 f"{self.max_buffer_size}")
        co = cs + max(2, cs // 4) + 1
        return cs, co

    def _warn_limit(self, why: str) -> None:
        if not self._limit_warned:
            self._limit_warned = True
            what = {"spill": "spill to disk", "drop": "be dropped", "raise": "raise BufferOverflowError"}[self.on_overflow]
            logger.warning("gym_aquacollect BufferCollector {!r}: {}; the oldest transitions will {} when it is full.",
                           self.name, why, what)

    def start_collection(self) -> None:
        """Open the dataset, start the writer thread and set up the rings (virtual memory until used)."""
        if self.collecting:
            return
        if self._configured and not self._closed:
            cs, co = self._capacity()  # a memory limit that leaves no room fails before the dataset is created
        super().start_collection()  # refuses an unconfigured or closed collector
        self._Cs, self._Co = cs, co
        self._ro: dict[str, np.ndarray] = dict(zip(self._obs_names, self._obs_codec.allocate(co)))  # obs, infos
        self._rs: dict[str, np.ndarray] = dict(zip(self._act_names, self._act_codec.allocate(cs)))  # steps, extras
        self._rs.update(rewards=np.empty(cs, np.float64), terminations=np.empty(cs, bool),
                        truncations=np.empty(cs, bool))
        self._o = [self._ro[n] for n in self._obs_names]  # leaf columns in codec order (sample)
        self._a = [self._rs[n] for n in self._act_names]
        self._oi = np.empty(cs, np.int64)  # absolute obs row of the observation the action was taken at
        self._key = np.empty(cs, np.int64)
        self._first = np.empty(cs, bool)
        self._s_lo = self._s_hi = self._s_written = 0
        self._o_lo = self._o_hi = 0
        self._tail: tuple[int, int] = (-1, -1)  # (episode key, absolute step) of the last step taken in
        self._end_at: dict[int, EpisodeEnd] = {}
        self._orphan_ends: list[EpisodeEnd] = []
        self._dropped_keys: set[int] = set()
        self._mem_alert = False
        self._frozen = False
        self._next_poll = 0
        self._poll_interval = getattr(self, "_poll_interval", 0.05)
        self._room = self._room_seen = min(cs, co - 1)
        if self.async_processing:
            self._start_monitor()

    def __len__(self) -> int:
        """Transitions currently in the ring (what :meth:`sample` draws from)."""
        if self._vring is not None:
            return min(self._vring["hi"], self._vring["cap"])
        if not hasattr(self, "_s_hi"):
            return 0
        if self.collecting and self._room != self._room_seen:
            self.handoff()
        return self._s_hi - self._s_lo

    # -- batched (vector env) recording ------------------------------------------------------------------
    def start_transitions(self, num_envs: int) -> None:
        """Set up the transition ring (obs and next obs per transition; virtual memory until used)."""
        if not self.collecting:
            self.start_collection()
        obs_b, step_b = self._row_bytes()
        cap = int(self._Cs * (step_b + 1.25 * obs_b) // (step_b + 2 * obs_b))  # same memory budget
        cap = max(1, cap)
        self._vring = {"cap": cap, "hi": 0, "obs": self._obs_codec.allocate(cap),
                       "next": self._obs_codec.allocate(cap), "act": self._act_codec.allocate(cap),
                       "rew": np.empty(cap, np.float64), "te": np.empty(cap, bool), "tr": np.empty(cap, bool)}
        self._Cs = cap

    def on_transitions(self, obs: list[np.ndarray], actions: list[np.ndarray], rewards: np.ndarray,
                       next_obs: list[np.ndarray], terminated: np.ndarray, truncated: np.ndarray) -> None:
        """Writer thread: append a chunk's transitions to the ring (the oldest are overwritten)."""
        t = self._vring
        n, cap = len(rewards), t["cap"]
        lo = max(0, n - cap)  # more than the ring holds: only the newest fit
        with self._tr_lock:
            idx = (t["hi"] + np.arange(n - lo)) % cap
            for dst, src in zip(t["obs"], obs):
                dst[idx] = src[lo:]
            for dst, src in zip(t["next"], next_obs):
                dst[idx] = src[lo:]
            for dst, src in zip(t["act"], actions):
                dst[idx] = src[lo:]
            t["rew"][idx], t["te"][idx], t["tr"][idx] = rewards[lo:], terminated[lo:], truncated[lo:]
            t["hi"] += n - lo

    def _sample_transitions(self, n: int, rng: np.random.Generator) -> dict[str, Any]:
        t = self._vring
        with self._tr_lock:
            size = min(t["hi"], t["cap"])
            if not size:
                raise ValueError(f"BufferCollector {self.name!r} is empty: record steps before sampling")
            idx = rng.integers(0, size, size=n)
            oc, ac = self._obs_codec, self._act_codec
            obs = t["obs"][0][idx] if oc.simple else oc.read([c[idx] for c in t["obs"]])
            nxt = t["next"][0][idx] if oc.simple else oc.read([c[idx] for c in t["next"]])
            act = t["act"][0][idx] if ac.simple else ac.read([c[idx] for c in t["act"]])
            return {"obs": obs, "action": act, "reward": t["rew"][idx].astype(np.float32), "next_obs": nxt,
                    "terminated": t["te"][idx], "truncated": t["tr"][idx]}

    def __bool__(self) -> bool:  # a collector is truthy even when its ring is empty
        return True

    @property
    def capacity(self) -> int:
        """Transitions the ring can hold (after the memory limit); None before start_collection."""
        return getattr(self, "_Cs", None)

    # -- what the engine hands over -------------------------------------------------------------------------
    def begin_episode(self, observation: Any, info: dict[str, Any] | None = None, *, seed: Any = None,
                      options: Any = None, metadata: dict[str, Any] | None = None) -> None:
        """The engine's :meth:`~gym_aquacollect.recording.row.RowRecorder.begin_episode`, after making room in the
        observation ring when it has none left for the reset observation."""
        if self._room <= 0:
            self._make_room(step=False)
        _engine_begin(self, observation, info, seed=seed, options=options, metadata=metadata)
        self._room -= 1

    def record_step(self, action: Any, observation: Any, reward: Any, terminated: Any, truncated: Any,
                    info: dict[str, Any] | None = None, extras: dict[str, Any] | None = None) -> None:
        """The engine's :meth:`~gym_aquacollect.recording.row.RowRecorder.record_step`, after making room in the
        ring (``on_overflow``) when it has none left: a step that cannot be kept is refused before it is recorded."""
        if self._room <= 0:
            self._make_room(step=True)
        _engine_step(self, action, observation, reward, terminated, truncated, info, extras)
        self._room -= 1

    def on_block(self, block: Block) -> None:
        """Copy the block's rows into the ring (whole-array copies; the engine reuses the block afterwards)."""
        try:
            self._take(block)
        finally:
            if block.on_written is not None:
                block.on_written()
        self._room_seen = self._room
        if self._s_hi >= self._next_poll:
            self._next_poll = self._s_hi + _POLL_EVERY
            if self.enable_memory_monitoring and self.memory_limit_mb is not None and not self.async_processing \
                    and self._rss_over():
                self._mem_alert = True
        if self._mem_alert:
            self._room = 0  # the next step handles it (_make_room), outside the engine's hand-over

    def _take(self, block: Block) -> None:
        pieces = block.pieces
        if isinstance(pieces, np.ndarray):
            pieces = [Piece(*row) for row in pieces.reshape(-1, 5).tolist()]
        ends = _ends_of(block)
        lasts: dict[int, int] = {}  # episode key -> absolute index of its last step in this block
        if pieces:
            s0, o0 = self._s_hi, self._o_hi
            if len(pieces) <= _SMALL:
                n_o, n_s, o_rows, s_rows = self._book_few(pieces, lasts)
            else:
                n_o, n_s, o_rows, s_rows = self._book_many(pieces, lasts)
            if n_s > self._Cs - (s0 - self._s_lo) or n_o > self._Co - (o0 - self._o_lo):
                raise RuntimeError(  # the room counter keeps this from happening
                    f"BufferCollector {self.name!r}: a block of {n_s} steps / {n_o} observations does not fit the ring "
                    f"({self._s_hi - self._s_lo}/{self._Cs} steps, {self._o_hi - self._o_lo}/{self._Co} observations "
                    "in use). This is a bug: please report it with the collector's arguments; on_block is fed by the "
                    "engine, which BufferCollector.record_step keeps within the ring's room.")
            self._copy_columns(self._ro, block.obs, o_rows, o0, n_o, self._Co)
            self._copy_columns(self._rs, block.step, s_rows, s0, n_s, self._Cs)
            self._o_hi, self._s_hi = o0 + n_o, s0 + n_s
        for end in ends:
            last = lasts.get(end.key)
            if last is None and end.key == self._tail[0]:
                last = self._tail[1]
            if end.key in self._dropped_keys:
                self.dropped_episodes += 1
            elif last is None or last < self._s_written:  # its rows are on disk already
                self._orphan_ends.append(end)
            else:
                self._end_at[last] = end

    def _book_few(self, pieces: list[Piece], lasts: dict[int, int]) -> tuple[int, int, Any, Any]:
        """Index the steps of a block of a few pieces (key, first step, obs row taken at) in Python."""
        s, o, cs = self._s_hi, self._o_hi, self._Cs
        o_next = s_next = 0
        contiguous = True
        for p in pieces:
            contiguous &= p.obs_start == o_next and p.step_start == s_next
            n = p.step_n
            if n:
                reset = p.obs_n > n  # the piece starts its episode: its first row is the reset observation
                taken = o if reset else o - 1
                pos = s % cs
                if n == 1:
                    self._oi[pos], self._key[pos] = taken, p.key
                else:
                    _ring_put(self._oi, pos, np.arange(taken, taken + n), cs)
                    _ring_fill(self._key, pos, n, p.key, cs)
                _ring_fill(self._first, pos, n, False, cs)
                if reset:
                    self._first[pos] = True
                s += n
                lasts[p.key] = s - 1
                self._tail = (p.key, s - 1)
            o += p.obs_n
            o_next, s_next = o_next + p.obs_n, s_next + n
        if contiguous:
            return o_next, s_next, slice(0, o_next), slice(0, s_next)
        o_rows = np.concatenate([np.arange(p.obs_start, p.obs_start + p.obs_n) for p in pieces])
        s_rows = np.concatenate([np.arange(p.step_start, p.step_start + p.step_n) for p in pieces])
        return o_next, s_next, o_rows, s_rows

    def _book_many(self, pieces: list[Piece], lasts: dict[int, int]) -> tuple[int, int, Any, Any]:
        """:meth:`_book_few` for many pieces, as whole-array operations."""
        keys, o_start, o_n, s_start, s_n = np.array(
            [(p.key, p.obs_start, p.obs_n, p.step_start, p.step_n) for p in pieces], np.int64).T
        n_o, n_s = int(o_n.sum()), int(s_n.sum())
        s0, o0, cs = self._s_hi, self._o_hi, self._Cs
        if n_s:
            reset = o_n > s_n
            ring_o = o0 + np.cumsum(o_n) - o_n  # absolute obs row of each piece's first row
            first_step = np.cumsum(s_n) - s_n
            t = np.arange(n_s) - np.repeat(first_step, s_n)  # step index inside its piece
            pos = s0 % cs
            taken = np.where(reset, ring_o, ring_o - 1)  # obs row the piece's first action was taken at
            _ring_put(self._oi, pos, np.repeat(taken, s_n) + t, cs)
            _ring_put(self._key, pos, np.repeat(keys, s_n), cs)
            _ring_put(self._first, pos, (t == 0) & np.repeat(reset, s_n), cs)
            has = s_n > 0
            last = s0 + first_step[has] + s_n[has] - 1
            lasts.update(zip(keys[has].tolist(), last.tolist()))
            self._tail = (int(keys[has][-1]), int(last[-1]))
        return n_o, n_s, _piece_rows(o_start, o_n, n_o), _piece_rows(s_start, s_n, n_s)

    @staticmethod
    def _copy_columns(ring: dict[str, np.ndarray], cols: dict[str, np.ndarray], rows: Any, start: int, n: int,
                      cap: int) -> None:
        """Copy ``rows`` of the block's columns to absolute ring row ``start``; a ring column the block lacks gets
        absent rows there, a column the ring lacks is added (absent in the rows before)."""
        if not n:
            return
        pos = start % cap
        end = pos + n
        for name, col in cols.items():
            dst = ring.get(name)
            if dst is None:
                dst = ring[name] = _blank_column(cap, col)
            if end <= cap:
                dst[pos:end] = col[rows]
            else:
                _ring_put(dst, pos, col[rows], cap)
        if len(ring) > len(cols):
            for name, dst in ring.items():
                if name not in cols:
                    _ring_fill(dst, pos, n, "" if dst.dtype.kind == "O" else 0, cap)

    # -- room in the ring and memory -------------------------------------------------------------------------
    def _make_room(self, step: bool) -> None:
        """The room counter ran out: take what the engine holds, then move the oldest transitions out of the ring
        (``on_overflow``) until it has room for one more step (``step``) or reset observation."""
        if not self.collecting:
            return  # the engine starts the collection (begin_episode) or says why it cannot
        if step and not getattr(self, "_fast", True):
            return  # the engine will not record this step (no open recorded episode): it needs no room
        self.handoff()
        if self._mem_alert and step:
            self._on_memory_alert()
        while True:
            free_s = self._Cs - (self._s_hi - self._s_lo)
            # the engine may still hold one reset observation (not handed over while its episode has no step);
            # a new reset replaces it, a step comes on top of it
            free_o = self._Co - (self._o_hi - self._o_lo) - 1
            if (free_s > 0 and free_o > 0) if step else free_o >= 0:
                break
            self._evict()
        self._room = self._room_seen = 0 if self._mem_alert else min(free_s, free_o)

    def _rss_over(self) -> bool:
        rss = self._proc.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
        return self.memory_limit_mb is not None and rss >= self.memory_limit_mb * _MB * 0.97

    def _on_memory_alert(self) -> None:
        """RSS reached the limit: stop growing the rings where they are (if they never wrapped)."""
        self._mem_alert = False
        if not self._frozen and self._s_lo == 0 and self._o_lo == 0 and self._s_hi < self._Cs \
                and self._o_hi < self._Co and self._s_hi >= 2 * self.buffer_batch_size:
            self._frozen = True
            self._Cs, self._Co = self._s_hi, self._o_hi
            self._warn_limit(f"RSS reached memory_limit_mb={self.memory_limit_mb:g}; the ring stops growing at "
                             f"{self._Cs} transitions")
            return
        if not self._rss_warned:
            self._rss_warned = True
            logger.warning(
                "gym_aquacollect BufferCollector {!r}: process RSS {:.0f} MB is over memory_limit_mb={:g} although "
                "the buffer ({:.0f} MB) no longer grows; something else in the process is using the memory.",
                self.name, self._proc.memory_info().rss / _MB, self.memory_limit_mb, self.nbytes / _MB,
            )
        if self.on_overflow == "raise":
            raise BufferOverflowError(
                f"BufferCollector {self.name!r}: process RSS is over memory_limit_mb={self.memory_limit_mb:g}")

    @property
    def nbytes(self) -> int:
        """Bytes of ring memory in use (touched): what the buffer adds to RSS."""
        if not hasattr(self, "_Cs"):
            return 0
        obs_b, step_b = self._row_bytes()
        if self._vring is not None:
            return len(self) * (2 * obs_b + step_b)
        return min(self._o_hi, self._Co) * obs_b + min(self._s_hi, self._Cs) * step_b

    # -- eviction and writing -----------------------------------------------------------------------------------
    def _evict(self) -> None:
        """Move the oldest ``buffer_batch_size`` transitions (at least one) out of the ring."""
        live = self._s_hi - self._s_lo
        n = min(live, max(1, min(self.buffer_batch_size, self._Cs // 4)))
        if n == 0:  # pragma: no cover - the obs ring always holds steps when it is full
            raise RuntimeError("BufferCollector: observation ring full without steps")
        stop = self._s_lo + n
        if self._s_written < stop:
            if self.on_overflow == "raise":
                raise BufferOverflowError(
                    f"BufferCollector {self.name!r} is full ({self._Cs} transitions) and on_overflow='raise': "
                    f"{stop - self._s_written} transitions not yet on disk would be lost. Call save() regularly, "
                    "use on_overflow='spill', or raise max_buffer_size / memory_limit_mb."
                )
            if not self._limit_warned and self._Cs < self.max_buffer_size:
                self._warn_limit(f"the memory limit caps the ring at {self._Cs} transitions")
            if self.on_overflow == "spill":
                self._write_steps(self._s_written, stop)
                self.spilled_steps += stop - self._s_written
            else:
                phys = np.arange(self._s_written, stop) % self._Cs
                self._dropped_keys |= set(np.unique(self._key[phys]).tolist())
                self.dropped_steps += stop - self._s_written
                for k in range(self._s_written, stop):
                    if self._end_at.pop(k, None) is not None:
                        self.dropped_episodes += 1
            self._s_written = stop
        self._s_lo = stop
        self._o_lo = int(self._oi[stop % self._Cs]) if stop < self._s_hi else self._o_hi - 1

    def _write_steps(self, a: int, b: int) -> None:
        """Hand steps ``[a, b)`` (absolute, still in the ring) and their observations to the writer."""
        ends: list[EpisodeEnd] = self._orphan_ends
        self._orphan_ends = []
        if b <= a:
            if ends:
                self._submit(Block({}, {}, 0, 0, [], ends))
            return
        sphys = np.arange(a, b) % self._Cs
        keys = self._key[sphys]
        cut = np.flatnonzero(keys[1:] != keys[:-1]) + 1
        starts = np.concatenate(([0], cut))
        stops = np.concatenate((cut, [len(keys)]))
        step_idx, obs_idx, pieces = [], [], []
        n_obs = n_step = 0
        for x, y in zip(starts.tolist(), stops.tolist()):
            key = int(keys[x])
            last_abs = a + y - 1
            if key in self._dropped_keys:
                if self._end_at.pop(last_abs, None) is not None:
                    self.dropped_episodes += 1
                continue
            o0 = int(self._oi[sphys[x]]) + (0 if self._first[sphys[x]] else 1)
            o1 = int(self._oi[sphys[y - 1]]) + 2
            step_idx.append(sphys[x:y])
            obs_idx.append(np.arange(o0, o1) % self._Co)
            pieces.append(Piece(key, n_obs, o1 - o0, n_step, y - x))
            n_obs += o1 - o0
            n_step += y - x
            end = self._end_at.pop(last_abs, None)
            if end is not None:
                ends.append(end)
        if not pieces:
            if ends:
                self._submit(Block({}, {}, 0, 0, [], ends))
            return
        si = np.concatenate(step_idx)
        oi = np.concatenate(obs_idx)
        obs = {name: col[oi] for name, col in self._ro.items()}
        step = {name: col[si] for name, col in self._rs.items()}
        self._submit(Block(obs, step, n_obs, n_step, pieces, ends))

    def _submit(self, block: Block) -> None:
        self._submit_bounded(block, self._pending_cap)

    def flush(self) -> None:
        """Write every transition not yet on disk (they stay in the ring) and make it durable."""
        if not self.collecting:
            return
        self.handoff()
        self._write_steps(self._s_written, self._s_hi)
        self._s_written = self._s_hi
        self.writer.flush()

    def finalize(self) -> None:
        """At the end of the collection (after the engine handed over its last rows): write what is not on disk
        yet, then close the dataset."""
        self._stop_monitor()
        if self.writer is not None:
            self._write_steps(self._s_written, self._s_hi)
            self._s_written = self._s_hi
        super().finalize()

    # -- replay ----------------------------------------------------------------------------------------------
    def sample(self, batch_size: int | None = None, seed: int | None = None, as_torch: bool = False,
               device: Any = None) -> dict[str, Any]:
        """Draw ``batch_size`` transitions uniformly (with replacement) from the ring.

        Returns a dict with ``obs``, ``action``, ``next_obs`` (nested like the spaces for Dict/Tuple
        spaces), ``reward`` (float32), ``terminated`` and ``truncated`` (bool); the leading axis is the
        batch. ``next_obs`` is the observation the env returned for that step (for the last step of an
        episode its final observation, never the next episode's reset). Every step recorded so far can
        be drawn. ``seed`` makes the draw reproducible; ``as_torch`` returns torch tensors on ``device``.
        """
        n = batch_size if batch_size is not None else self.buffer_batch_size
        if self._vring is not None:
            out = self._sample_transitions(n, self._rng if seed is None else np.random.default_rng(seed))
            return _to_torch(out, device) if as_torch else out
        if self._room != self._room_seen and self.collecting:
            self.handoff()  # the steps the engine still holds
        lo, hi = getattr(self, "_s_lo", 0), getattr(self, "_s_hi", 0)
        if hi <= lo:
            raise ValueError(f"BufferCollector {self.name!r} is empty: record steps before sampling")
        rng = self._rng if seed is None else np.random.default_rng(seed)
        idx = rng.integers(lo, hi, size=n)
        if hi > self._Cs:
            idx %= self._Cs
        oi = self._oi[idx]
        nxt = oi + 1
        if self._o_hi > self._Co:
            oi %= self._Co
            nxt %= self._Co
        if self._obs_codec.simple:
            col = self._o[0]
            obs, next_obs = col[oi], col[nxt]
        else:
            obs = self._obs_codec.read([c[oi] for c in self._o])
            next_obs = self._obs_codec.read([c[nxt] for c in self._o])
        act = self._a[0][idx] if self._act_codec.simple else self._act_codec.read([c[idx] for c in self._a])
        rs = self._rs
        out = {"obs": obs, "action": act, "reward": rs["rewards"][idx].astype(np.float32), "next_obs": next_obs,
               "terminated": rs["terminations"][idx], "truncated": rs["truncations"][idx]}
        if as_torch:
            out = _to_torch(out, device)
        return out

    def get_dataset_statistics(self) -> dict[str, Any]:
        """The seed's statistics plus buffer size/capacity, spilled/dropped counts and memory figures."""
        stats = super().get_dataset_statistics()
        stats.update({
            "buffer_size": len(self),
            "transitions_seen": self._vring["hi"] if self._vring is not None else None,
            "buffer_capacity": self.capacity,
            "max_buffer_size": self.max_buffer_size,
            "buffer_bytes": self.nbytes,
            "spilled_steps": self.spilled_steps,
            "dropped_steps": self.dropped_steps,
            "dropped_episodes": self.dropped_episodes,
            "memory_limit_mb": self.memory_limit_mb,
            "rss_mb": self._proc.memory_info().rss / _MB,
            "peak_rss_mb": self.peak_rss / _MB,
        })
        return stats


def _to_torch(x: Any, device: Any) -> Any:
    import torch

    if isinstance(x, dict):
        return {k: _to_torch(v, device) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_to_torch(v, device) for v in x)
    if isinstance(x, list):  # Text leaves stay lists of str
        return x
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t if device is None else t.to(device)
