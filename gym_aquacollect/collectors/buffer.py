"""BufferCollector: a ring buffer that is also a replay buffer, with a memory limit that holds.

Contents:
    * :class:`BufferCollector` - keeps the most recent transitions in memory for
      :meth:`~BufferCollector.sample` (uniform replay for online RL) and writes what leaves the ring
      (or everything, on :meth:`~BufferCollector.flush` / :meth:`~BufferCollector.end_collection`) to
      the dataset on disk through the same writer thread as every collector.
    * :class:`BufferOverflowError` - raised with ``on_overflow="raise"`` instead of losing data.

Layout. Observations live in one ring (T+1 rows per episode: the reset observation, then one per step)
and steps in another (action, reward, terminated, truncated and the absolute index of the observation
the action was taken at). A step's next observation is the row after its observation, so it is stored
once and a sampled ``(obs, next_obs)`` pair never crosses an episode boundary: the final observation
of an episode is a row of its own, the next episode's reset observation comes after it.

Memory. With ``memory_limit_mb`` the process's resident memory (psutil RSS) is the budget: at
:meth:`~BufferCollector.start_collection` the ring capacity is cut to what fits between the RSS then
and the limit (less headroom for blocks on their way to disk), and RSS is polled while recording (every
1024 steps, or from a thread after :meth:`~BufferCollector.enable_async_processing`); if it reaches the
limit before the rings are full, they stop growing where they are. Once full, the oldest transitions
leave the ring: ``on_overflow="spill"`` (default) writes them to disk, ``"drop"`` discards those not yet
written (their episodes are then left out of the dataset), ``"raise"`` raises
:class:`BufferOverflowError`. The first time the memory limit, rather than ``max_buffer_size``, decides
the capacity, a loguru warning says so.

Vector envs (``batched_mode = "transitions"``): the batched recorder streams every row to disk itself
and hands each chunk's transitions to :meth:`~BufferCollector.on_transitions` in the writer thread.
They go to a transition ring of their own (observation and next observation stored per transition,
next observation = what the step returned, the final observation at SAME_STEP done steps); the ring
overwrites its oldest transitions when full (they are on disk already, so ``on_overflow`` does not
apply), and its capacity is ``max_buffer_size`` cut to the memory budget. :meth:`~BufferCollector.sample`
then draws from it (under a lock: the ring is filled by the writer thread). RSS is not polled there.

Size: over 500 lines because the ring, its spill files and its memory budget form one structure guarded by one lock.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from gym_aquacollect.collectors.base import _LIVE_COLLECTORS, DEFAULT_COMPRESSION, BaseCollector
from gym_aquacollect.logs import logger
from gym_aquacollect.recording.row import _scalar
from gym_aquacollect.schema.columns import DynamicColumns
from gym_aquacollect.schema.columns import jsonable as _jsonable
from gym_aquacollect.schema.flags import TERM as _TERM
from gym_aquacollect.schema.flags import TRUNC as _TRUNC
from gym_aquacollect.storage.writer import Block, EpisodeEnd, Piece

__all__ = ["BufferCollector", "BufferOverflowError"]

_MB = 1 << 20
_POLL_EVERY = 1024  # steps between RSS polls when not async


class BufferOverflowError(MemoryError):
    """The buffer is full and ``on_overflow="raise"``: data not yet on disk would be lost."""


def _take_dyn(dyn: DynamicColumns, idx: np.ndarray) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, col in dyn.cols.items():
        out[dyn.prefix + name] = col[idx]
        head, _, tail = name.rpartition("/")
        out[dyn.prefix + (f"{head}/_{tail}" if head else f"_{tail}")] = dyn.masks[name][idx]
    return out


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

    # -- set-up --------------------------------------------------------------------------------------------
    def enable_async_processing(self, interval: float = 0.05) -> None:
        """Poll memory from a background thread (every ``interval`` s) instead of in the recording thread.

        Disk writes are always asynchronous (the writer thread); this moves the psutil polls off the
        hot path too.
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
            budget = limit - rss - self._pending_cap - 48 * _MB
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
        if not self._configured:
            raise RuntimeError("call initialize_configs(env_info) before start_collection()")
        if self.collecting:
            return
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} for {self._dataset_path} was closed; recording cannot resume "
                               "after close(). Create a new collector to record more.")
        self._open_writer()
        self._wstate = self.writer
        cs, co = self._capacity()
        self._Cs, self._Co = cs, co
        self._o = self._obs_codec.allocate(co)
        self._a = self._act_codec.allocate(cs)
        self._r = np.empty(cs, np.float64)
        self._te = np.empty(cs, bool)
        self._tr = np.empty(cs, bool)
        self._oi = np.empty(cs, np.int64)  # absolute obs row of the observation the action was taken at
        self._key = np.empty(cs, np.int64)
        self._first = np.empty(cs, bool)
        self._put_obs = self._binder(self._obs_codec, self._o)
        self._put_act = self._binder(self._act_codec, self._a)
        self._infos = DynamicColumns("infos/", "info")
        self._extras = DynamicColumns("extras/", "extra field")
        self._infos.new_block(co)
        self._extras.new_block(cs)
        self._s_lo = self._s_hi = self._s_written = 0
        self._o_lo = self._o_hi = 0
        self._end_at: dict[int, EpisodeEnd] = {}
        self._orphan_ends: list[EpisodeEnd] = []
        self._dropped_keys: set[int] = set()
        self._mem_alert = False
        self._frozen = False
        self._poll_interval = getattr(self, "_poll_interval", 0.05)
        self._ep_key = -1
        self._ep_open = self._ep_done = self._fast = False
        self._ep_recording = True
        self._skip_len, self._skip_ret = 0, 0.0
        self._episode_index = -1
        self._warned_after_done = False
        self._ep_len, self._ep_ret = 0, 0.0
        self.collecting = True
        _LIVE_COLLECTORS.add(self)
        if self.async_processing:
            self._start_monitor()

    @staticmethod
    def _binder(codec: Any, cols: list[np.ndarray]) -> Any:
        if codec.simple:
            return partial(codec.leaf_writer(), cols[0])
        return partial(codec.write, cols)

    def __len__(self) -> int:
        """Transitions currently in the ring (what :meth:`sample` draws from)."""
        if self._vring is not None:
            return min(self._vring["hi"], self._vring["cap"])
        return self._s_hi - self._s_lo if hasattr(self, "_s_hi") else 0

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

    # -- hot path --------------------------------------------------------------------------------------------
    def begin_episode(self, observation: Any, info: dict[str, Any] | None = None, *, seed: Any = None,
                      options: Any = None, metadata: dict[str, Any] | None = None) -> None:
        """Open a new episode with its reset observation (ends an open one as truncated)."""
        if not self.collecting:
            self.start_collection()
        self._invalid = False
        if self._ep_open and self._ep_len > 0:
            self._finish_episode(False, True, interrupted="reset")
        elif self._ep_open and self._ep_recording:  # zero-step episode: forget its reset row
            self._o_hi -= 1
            self._o_lo = min(self._o_lo, self._o_hi)
        self._episode_index += 1
        self._ep_recording = self.schedule is None or bool(self.schedule(self._episode_index))
        self._ep_open, self._ep_done = True, False
        self._ep_len, self._ep_ret = 0, 0.0
        self._skip_len, self._skip_ret = 0, 0.0
        self._ep_meta = {"seed": _jsonable(seed), "options": _jsonable(options), **(metadata or {})}
        self._ep_t0 = time.time()  # wall-clock start (metadata["t_start"])
        self._fast = self._ep_recording
        if not self._ep_recording:
            return
        self._ep_key += 1
        if self._o_hi - self._o_lo >= self._Co:
            self._make_room()
        j = self._o_hi % self._Co
        if self._infos.masks:
            self._infos.clear_row(j)
        self._put_obs(j, observation)
        if info and self.record_infos:
            self._infos.put(j, info)
        self._o_hi += 1

    def record_step(self, action: Any, observation: Any, reward: Any, terminated: Any, truncated: Any,
                    info: dict[str, Any] | None = None, extras: dict[str, Any] | None = None) -> None:
        """Record one transition of the open episode into the rings."""
        if not self._fast or self._wstate.failed:
            return self._record_slow(action, observation, reward, terminated, truncated, info, extras)
        s = self._s_hi
        if s - self._s_lo >= self._Cs or self._o_hi - self._o_lo >= self._Co:
            self._make_room()
        i, j = s % self._Cs, self._o_hi % self._Co
        try:
            self._put_act(i, action)
            if self._infos.masks:
                self._infos.clear_row(j)
            self._put_obs(j, observation)
            if type(reward) is not float:
                reward = _scalar(reward, "reward", float)
            self._r[i] = reward
            self._te[i] = terminated if type(terminated) is bool else _scalar(terminated, "terminated", bool)
            self._tr[i] = truncated if type(truncated) is bool else _scalar(truncated, "truncated", bool)
        except Exception as e:
            self._invalid_step(e, terminated, truncated)
            raise
        self._oi[i] = self._o_hi - 1
        self._key[i] = self._ep_key
        self._first[i] = self._ep_len == 0
        if info and self.record_infos:
            self._infos.put(j, info)
        if self._extras.masks:
            self._extras.clear_row(i)
        if extras or self.step_callbacks:
            self._step_extras(i, action, observation, reward, terminated, truncated, info, extras)
        self._s_hi = s + 1
        self._o_hi += 1
        self._ep_len += 1
        self._ep_ret += reward
        if terminated or truncated:
            self._finish_episode(bool(terminated), bool(truncated))
        if self._mem_alert or (not s % _POLL_EVERY and self.enable_memory_monitoring
                               and self.memory_limit_mb is not None and not self.async_processing
                               and self._rss_over()):
            self._on_memory_alert()

    def _invalid_step(self, error: BaseException, terminated: Any, truncated: Any) -> None:
        """As :meth:`BaseCollector._invalid_step`: the open episode is stored as it was (truncated,
        ``interrupted: "invalid_step"``); nothing is recorded until the next reset."""
        logger.error("gym_aquacollect: {}; the open episode is stored as truncated (interrupted: invalid_step) "
                     "and steps are not recorded until the next reset()", error)
        if self._ep_len > 0:
            self._finish_episode(False, True, interrupted="invalid_step")
            self._ep_done = False
        else:  # zero-step episode: forget its reset row
            self._o_hi -= 1
            self._o_lo = min(self._o_lo, self._o_hi)
        self._ep_open = self._fast = False
        self._invalid = True
        self._invalid_dropped_done(terminated, truncated)

    def _cur_len(self) -> int:
        return self._ep_len if self._ep_recording else self._skip_len

    def _cur_ret(self) -> float:
        return float(self._ep_ret) if self._ep_recording else self._skip_ret

    def _finish_episode(self, terminated: bool, truncated: bool, interrupted: str | None = None) -> None:
        meta = self._close_episode_meta(terminated, truncated, interrupted)
        if self.episode_callbacks:
            self.run_episode_callbacks(self._episode_index, self._ep_len, float(self._ep_ret), terminated, truncated,
                                       meta)
        flags = (_TERM if terminated else 0) | (_TRUNC if truncated else 0)
        end = EpisodeEnd(self._ep_key, self._ep_len, float(self._ep_ret), flags, meta)
        self._ep_open, self._ep_done, self._fast = False, True, False
        self.episode_lengths.append(end.length)
        self.episode_returns.append(end.ret)
        self.episode_flags.append(end.flags)
        last = self._s_hi - 1
        if self._ep_key in self._dropped_keys:
            self.dropped_episodes += 1
        elif last < self._s_written:  # its rows are on disk already (interrupted after a flush)
            self._orphan_ends.append(end)
        else:
            self._end_at[last] = end

    # -- memory ------------------------------------------------------------------------------------------------
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
    def _make_room(self) -> None:
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
                keys = set(np.unique(self._key[phys]).tolist())
                self._dropped_keys |= keys
                self.dropped_steps += stop - self._s_written
                for k in range(self._s_written, stop):
                    end = self._end_at.pop(k, None)
                    if end is not None:
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
        obs = {name: col[oi] for name, col in zip(self._obs_names, self._o)}
        obs.update(_take_dyn(self._infos, oi))
        step = {name: col[si] for name, col in zip(self._act_names, self._a)}
        step["rewards"], step["terminations"], step["truncations"] = self._r[si], self._te[si], self._tr[si]
        step.update(_take_dyn(self._extras, si))
        self._submit(Block(obs, step, n_obs, n_step, pieces, ends))

    def _submit(self, block: Block) -> None:
        self._submit_bounded(block, self._pending_cap)

    def flush(self) -> None:
        """Write every transition not yet on disk (they stay in the ring) and make it durable."""
        if not self.collecting:
            return
        self._write_steps(self._s_written, self._s_hi)
        self._s_written = self._s_hi
        self.writer.flush()

    def end_collection(self, interrupted: str = "close") -> None:
        """Store the open episode (as truncated, ``interrupted`` in its metadata), write what is not on disk
        yet, close the dataset."""
        if not self.collecting:
            return
        self._closed = True
        try:
            self._stop_monitor()
            if self._ep_open and self._ep_recording and self._ep_len > 0:
                self._finish_episode(False, True, interrupted=interrupted)
            self._ep_open = self._fast = False
            self._write_steps(self._s_written, self._s_hi)
            self._s_written = self._s_hi
            self._finalize()
        finally:
            self.collecting = False

    close = end_collection

    # -- replay ----------------------------------------------------------------------------------------------
    def sample(self, batch_size: int | None = None, seed: int | None = None, as_torch: bool = False,
               device: Any = None) -> dict[str, Any]:
        """Draw ``batch_size`` transitions uniformly (with replacement) from the ring.

        Returns a dict with ``obs``, ``action``, ``next_obs`` (nested like the spaces for Dict/Tuple
        spaces), ``reward`` (float32), ``terminated`` and ``truncated`` (bool); the leading axis is the
        batch. ``next_obs`` is the observation the env returned for that step (for the last step of an
        episode its final observation, never the next episode's reset). ``seed`` makes the draw
        reproducible; ``as_torch`` returns torch tensors on ``device``.
        """
        n = batch_size if batch_size is not None else self.buffer_batch_size
        if self._vring is not None:
            out = self._sample_transitions(n, self._rng if seed is None else np.random.default_rng(seed))
            return _to_torch(out, device) if as_torch else out
        lo, hi = self._s_lo, getattr(self, "_s_hi", 0)
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
        out = {"obs": obs, "action": act, "reward": self._r[idx].astype(np.float32), "next_obs": next_obs,
               "terminated": self._te[idx], "truncated": self._tr[idx]}
        if as_torch:
            out = _to_torch(out, device)
        return out

    def get_dataset_statistics(self) -> dict[str, Any]:
        """The seed's statistics plus buffer size/capacity, spilled/dropped counts and memory figures."""
        stats = super().get_dataset_statistics()
        stats.update({
            "buffer_size": len(self) if hasattr(self, "_s_hi") else 0,
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
