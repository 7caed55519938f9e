"""BaseCollector: validates steps, batches them into column blocks and hands blocks to the writer.

Contents:
    * :data:`DEFAULT_COMPRESSION` - the compression used when none is given (see README, "Performance").
    * :func:`env_info` - what :meth:`BaseCollector.initialize_configs` takes, read off any Gymnasium env.
    * :class:`BaseCollector` - the sink behind every wrapper; subclasses decide what is kept.

The user's thread does the least work possible per step: validate the value against its space, copy it
into a preallocated row (this copy is what makes recording immune to envs that reuse buffers), and
count. Every few thousand steps (or ~1 s, or on :meth:`flush`) the filled rows go to the writer
thread as views, without another copy. Episode rows stay contiguous inside a block, so the writer
stores them as segments of a columnar shard.

Writing a custom collector: subclass :class:`BaseCollector` and override any of its public extension points:

* :meth:`~BaseCollector.on_block` - what to do with a :class:`~gym_aquacollect.storage.writer.Block` of rows
  instead of streaming it to disk; call ``block.on_written()`` once its arrays are no longer needed.
* :meth:`~BaseCollector.on_episode_end` - per-episode bookkeeping; call ``super().on_episode_end(end)`` so
  the end travels with its block.
* :meth:`~BaseCollector.open_writer` - open the sink at :meth:`~BaseCollector.start_collection` (set
  ``self.writer``; ``None`` for a collector that keeps its data in memory).
* :meth:`~BaseCollector.finalize` - close the sink at :meth:`~BaseCollector.end_collection`, after the
  last rows were handed over (write what is still held, then ``super().finalize()``).
* :meth:`~BaseCollector.get_dataset_statistics` - add figures of your own.

The hot path (:meth:`begin_episode`, :meth:`record_step`) is
:class:`~gym_aquacollect.recording.row.RowRecorder`'s, which BaseCollector mixes in; it calls these hooks.
``handoff()`` hands the rows recorded so far to ``on_block`` at once (for a collector that must see every
step, e.g. :meth:`BufferCollector.sample <gym_aquacollect.collectors.BufferCollector.sample>`).
The names used before the redesign (``_on_block``, ``_on_episode_end``, ``_open_writer``, ``_finalize``, ...:
:data:`LEGACY_NAMES`) still work, overridden or called through ``super()``.

Example (a collector that counts steps and keeps nothing):
    >>> import gymnasium as gym
    >>> from gym_aquacollect import CollectingWrapper
    >>> class Counter(BaseCollector):
    ...     rows = 0
    ...     def open_writer(self):
    ...         self.writer = None
    ...     def on_block(self, block):
    ...         self.rows += block.n_step
    ...         if block.on_written is not None:
    ...             block.on_written()
    ...     def finalize(self):
    ...         pass
    >>> env = CollectingWrapper(gym.make("CartPole-v1"), collector=Counter())
    >>> _ = env.reset(seed=0)
    >>> for _ in range(5):
    ...     _ = env.step(0)
    >>> env.collector.handoff()
    >>> env.collector.rows
    5

Batched recording (``CollectingVectorWrapper``, Isaac Lab, multi-agent) does not use the single-env hot
path: it splits chunks of N sub-envs in the writer thread. The class attribute :attr:`BaseCollector.batched_mode`
says how such a recorder feeds the collector: ``"stream"`` (every row straight to disk), ``"episodes"``
(each sub-env episode is held until it ends, then :meth:`on_finished_episodes` decides, in the writer
thread) or ``"transitions"`` (rows go to disk and :meth:`on_transitions` also receives each chunk's
transitions, in the writer thread). A subclass that overrides the single-env hooks must set it, or the
vector wrappers refuse it. :class:`~gym_aquacollect.collectors.TrajectoryCollector` is built this way; see
``examples/custom_collector.py`` for a complete one.

Size: over 500 lines because ``BaseCollector`` is the one public extension class: configuration, lifecycle, hooks,
the seed API and persistence every collector inherits (its per-step row path is
:class:`~gym_aquacollect.recording.row.RowRecorder`).
"""

from __future__ import annotations

import atexit
import json
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from gym_aquacollect.data.exports import ExportMixin
from gym_aquacollect.logs import logger
from gym_aquacollect.recording.row import RowRecorder, engine_default
from gym_aquacollect.schema.columns import DynamicColumns
from gym_aquacollect.schema.columns import jsonable as _jsonable
from gym_aquacollect.schema.spaces import SpaceCodec, serialize_space
from gym_aquacollect.storage.writer import Block, DatasetWriter, EpisodeEnd, FlushPolicy

__all__ = ["DEFAULT_COMPRESSION", "BaseCollector", "env_info", "describe_env"]


class _NoWriter:
    """Stands in for the writer of a collector that keeps its data in memory."""

    failed = False
    busy = False

    @staticmethod
    def let_run() -> None:
        return None


_LIVE_COLLECTORS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _end_live_collections() -> None:
    """At interpreter exit (script end, ``sys.exit``, uncaught exception, Ctrl-C, SIGTERM after
    :func:`~gym_aquacollect.handle_sigterm`), store what collectors still hold: finished episodes and
    the open ones (truncated, ``interrupted: "exit"``). Commits run synchronously (no executors)."""
    from gym_aquacollect.storage.writer import prepare_exit

    prepare_exit()
    for c in list(_LIVE_COLLECTORS):
        if c.collecting and not (c.writer is not None and (c.writer.failed or c.writer.closed)):
            try:
                for hook in list(c._exit_hooks):  # batched recorders: hand over chunks, end open episodes
                    hook("exit")
                c.end_collection(interrupted="exit")
            except Exception as e:  # noqa: BLE001 - nothing more to do at exit than say so
                logger.error("gym_aquacollect: storing {} at exit failed: {}: {}", c.dataset_path,
                             type(e).__name__, e)

#: Default compression: LZF for columns with large rows (images: 10-60x smaller), none for small rows,
#: where LZF gains ~10% but its CPU competes with the env (measured: see README, "Performance").
DEFAULT_COMPRESSION: Any = "auto"
#: the one default of every wrapper and collector: a value of another dtype than its space is an error (README)
DEFAULT_DTYPE_POLICY = "strict"


def describe_env(env: gym.Env | Any) -> tuple[str | None, dict[str, Any]]:
    """``(spec_json, description)`` of the env *inside* any recording wrapper.

    ``spec_json`` is ``env.spec.to_json()`` or None when the spec cannot be serialised (callable entry
    point, non-JSON kwargs such as an Isaac Lab cfg): then the description still names the env.
    """
    spec = getattr(env, "spec", None)
    desc: dict[str, Any] = {"class": type(getattr(env, "unwrapped", env)).__name__}
    fps = (getattr(env, "metadata", None) or {}).get("render_fps")
    if isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0:
        desc["render_fps"] = float(fps)  # LeRobot export's default frame rate
    spec_json = None
    if spec is not None:
        desc["id"] = spec.id
        desc["kwargs"] = {k: repr(v)[:200] for k, v in (spec.kwargs or {}).items()}
        desc["max_episode_steps"] = spec.max_episode_steps
        try:
            spec_json = spec.to_json()
        except (ValueError, TypeError) as e:
            desc["spec_error"] = f"{type(e).__name__}: {e}"[:300]
    return spec_json, desc


def env_info(env: gym.Env) -> dict[str, Any]:
    """Everything :meth:`BaseCollector.initialize_configs` needs, read off a Gymnasium env.

    Example:
        >>> import gymnasium as gym
        >>> info = env_info(gym.make("CartPole-v1"))
        >>> sorted(info)[:3], info["env_spec"] is not None
        (['action_space', 'env_description', 'env_spec'], True)
    """
    spec_json, desc = describe_env(env)
    return {
        "observation_space": env.observation_space,
        "action_space": env.action_space,
        "env_spec": spec_json,
        "env_description": desc,
    }


#: the hooks' old private names -> their public names (old overrides and ``super()._on_block(...)`` calls work)
LEGACY_HOOKS = {"_on_block": "on_block", "_on_episode_end": "on_episode_end",
                "_on_finished_episodes": "on_finished_episodes", "_start_transitions": "start_transitions",
                "_on_transitions": "on_transitions"}
#: every old private name of a public extension point -> its public name: the hooks, and the sink's
#: ``_open_writer`` / ``_finalize``
LEGACY_NAMES = {**LEGACY_HOOKS, "_open_writer": "open_writer", "_finalize": "finalize"}


class BaseCollector(RowRecorder, ExportMixin):
    """The sink that wrappers hand each step to; by default it streams every step to disk.

    Args:
        name: the collector's name (also the dataset directory name under ``save_path``).
        save_path: parent directory for the dataset (``save_path/name``). None: a fresh directory
            under ``./aquacollect-data`` (logged).
        compression: None, "lzf", "gzip" or ("gzip", level).
        record_infos: store info dicts (with presence masks for keys that come and go).
        flush_policy: a :class:`~gym_aquacollect.storage.writer.FlushPolicy` or dict of its fields.
        metadata: JSON-safe dict stored with the dataset.
        dtype_policy: "strict" rejects values whose dtype differs from the space's; "cast" casts them.
        block_bytes: size of the row blocks handed to the writer.
        max_pending_bytes: memory that blocks waiting for the writer may hold before recording waits
            for the writer (a warning is logged once when that happens).
        step_callbacks: callables ``cb(collector, step: dict) -> dict | None``; a returned dict adds
            per-step fields (stored under ``extras/``).
        episode_callbacks: callables ``cb(collector, summary: dict) -> dict | None``; a returned dict is
            merged into the episode's metadata.
        schedule: which episodes to record (see :mod:`gym_aquacollect.collectors.schedules`): a callable
            ``schedule(episode_index) -> bool``; None records every episode.
        dataset_path: the dataset directory itself (overrides ``save_path``/``name``).
        codecs: per-column storage codecs by observation key, e.g. ``{"camera": VideoCodec()}`` (see
            :mod:`gym_aquacollect.storage.codecs`); the settings are stored in ``aquacollect.json``.
        check_bounds: also check, per step, that Box observations and actions are finite (no NaN/inf)
            and inside the space's bounds (opt-in: costs a comparison pass over each value; single-env
            recording). A failing value is handled like any invalid value: the error names the key, the
            open episode is stored truncated (``interrupted: "invalid_step"``).

    What is validated by default: the structure (Dict keys, Tuple lengths), the shape and the dtype of
    every observation and action leaf (``dtype_policy``), Discrete/MultiDiscrete/MultiBinary values in
    range, Text characters; rewards and flags are scalars. Not by default: Box bounds and NaN/inf
    (``check_bounds=True``).
    """

    #: How batched recorders feed this collector: "stream", "episodes" or "transitions" (module docstring).
    batched_mode: ClassVar[str] = "stream"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass written against the old private names (``_on_block``, ``_finalize``, ...) keeps working: its
        override is installed under the public name too, and a public override under the old name, so that a
        subclass of it calling ``super()._finalize()`` reaches it (see :data:`LEGACY_NAMES`). The names added
        are listed in ``cls._legacy_aliases``."""
        super().__init_subclass__(**kwargs)
        own, made = vars(cls), set()
        for old, new in LEGACY_NAMES.items():
            if old in own and new not in own:
                setattr(cls, new, own[old])
                made.add(new)
            elif new in own and old not in own:
                setattr(cls, old, own[new])
                made.add(old)
        cls._legacy_aliases = frozenset(made)

    def __init__(
        self,
        name: str = "collector",
        save_path: str | Path | None = None,
        *,
        compression: Any = DEFAULT_COMPRESSION,
        record_infos: bool = True,
        flush_policy: FlushPolicy | dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        dtype_policy: str = DEFAULT_DTYPE_POLICY,
        block_bytes: int = 4 << 20,
        max_pending_bytes: int = 32 << 20,
        step_callbacks: Sequence[Callable[..., Any]] | None = None,
        episode_callbacks: Sequence[Callable[..., Any]] | None = None,
        schedule: Callable[[int], bool] | None = None,
        dataset_path: str | Path | None = None,
        codecs: dict[str, Any] | None = None,
        check_bounds: bool = False,
    ) -> None:
        if dtype_policy not in ("strict", "cast"):
            raise ValueError(f"dtype_policy must be 'strict' or 'cast', got {dtype_policy!r}")
        self.name = name
        self.save_path = None if save_path is None else Path(save_path)
        self._dataset_path = None if dataset_path is None else Path(dataset_path)
        self.compression = compression
        self.record_infos = record_infos
        self.flush_policy = FlushPolicy.coerce(flush_policy)
        self.metadata = dict(metadata or {})
        self.dtype_policy = dtype_policy
        self.block_bytes = int(block_bytes)
        self.max_pending_bytes = int(max_pending_bytes)
        self.step_callbacks = list(step_callbacks or [])
        self.episode_callbacks = list(episode_callbacks or [])
        self.schedule = schedule
        self.codecs = dict(codecs or {})
        self.check_bounds = bool(check_bounds)
        self.observation_space: gym.Space | None = None
        self.action_space: gym.Space | None = None
        self.env_spec: str | None = None
        self.env_description: dict[str, Any] = {}
        self.writer: DatasetWriter | None = None
        self.collecting = False
        # statistics of finished (recorded) episodes
        self.episode_lengths: list[int] = []
        self.episode_returns: list[float] = []
        self.episode_flags: list[int] = []
        self.skipped_episodes = 0
        self._configured = False
        self._closed = False
        self._invalid = False
        #: callables ``hook(why)`` run at interpreter exit before the collection ends (batched recorders)
        self._exit_hooks: list[Callable[[str], None]] = []

    # -- configuration ---------------------------------------------------------------------------------
    @property
    def awaiting_reset(self) -> bool:
        """True after an episode ended (terminated/truncated) and before the next reset."""
        return self.collecting and self._ep_done

    @property
    def dataset_path(self) -> Path:
        if self._dataset_path is None:
            if self.save_path is not None:
                self._dataset_path = self.save_path / self.name
            else:
                stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
                self._dataset_path = Path("aquacollect-data") / f"{self.name}-{stamp}"
                logger.info("gym_aquacollect: no path given; recording to {}", self._dataset_path.resolve())
        return self._dataset_path

    @dataset_path.setter
    def dataset_path(self, value: str | Path) -> None:
        if self.writer is not None:
            raise RuntimeError("cannot change the dataset path after collection started")
        self._dataset_path = Path(value)

    def _spaces_from_env_info(self, info: dict[str, Any]) -> tuple[gym.Space, gym.Space]:
        from gym_aquacollect.collectors.units import spaces_from_env_info

        return spaces_from_env_info(info)

    def initialize_configs(self, env_info: dict[str, Any]) -> None:
        """Configure the collector for an env: ``env_info`` from :func:`env_info`, or the seed's dict of
        unit configs (``observation_cfg``/``action_cfg`` of :class:`~gym_aquacollect.UnitConfig` or plain
        dicts; see :mod:`gym_aquacollect.collectors.units`)."""
        from gym_aquacollect.collectors.units import make_adapter

        obs_space, act_space = self._spaces_from_env_info(env_info)
        self._adapt_obs = make_adapter(obs_space, "observation")
        self._adapt_act = make_adapter(act_space, "action")
        cast = self.dtype_policy == "cast"
        self.observation_space, self.action_space = obs_space, act_space
        self._obs_codec = SpaceCodec(obs_space, "observation", cast=cast)
        self._act_codec = SpaceCodec(act_space, "action", cast=cast)
        self.env_spec = env_info.get("env_spec")
        self.env_description = dict(env_info.get("env_description") or {})
        self._obs_names = ["observations" + ("/" + n if n else "") for n in self._obs_codec.names]
        self._act_names = ["actions" + ("/" + n if n else "") for n in self._act_codec.names]
        row_bytes = self._obs_codec.row_nbytes + self._act_codec.row_nbytes + 10
        self._rows = int(min(65536, max(64, self.block_bytes // max(1, row_bytes))))
        self._configured = True

    def _dataset_meta(self) -> dict[str, Any]:
        return {
            "observation_space": serialize_space(self.observation_space),
            "action_space": serialize_space(self.action_space),
            "env_spec": self.env_spec,
            "env_description": self.env_description,
            "collector": type(self).__name__,
            "metadata": _jsonable(self.metadata),
            "created": datetime.now(timezone.utc).isoformat(),
        }

    # -- lifecycle -------------------------------------------------------------------------------------
    def start_collection(self) -> None:
        """Open the dataset and start the writer thread."""
        if not self._configured:
            raise RuntimeError("call initialize_configs(env_info) before start_collection()")
        if self.collecting:
            return
        if self._closed:
            raise RuntimeError(
                f"{type(self).__name__} for {self._dataset_path} was closed; recording cannot resume after "
                "close() (it would silently start a new writer). Create a new wrapper/collector to record more."
            )
        from gym_aquacollect.storage.writer import maybe_handle_sigterm_from_env

        maybe_handle_sigterm_from_env()
        self.open_writer()
        self._wstate = self.writer if self.writer is not None else _NoWriter
        self._pool: deque[tuple[list, list, np.ndarray, np.ndarray, np.ndarray]] = deque()
        self._infos = DynamicColumns("infos/", "info", on_new_column=self._resize_block)
        self._extras = DynamicColumns("extras/", "extra field", on_new_column=self._resize_block)
        self._invalid = False  # a step failed validation: nothing recorded until the next reset
        self._ep_key = -1
        self._ep_open = False  # an episode has a reset observation
        self._fast = False  # record_step may take the fast path (open, recorded episode)
        self._ep_done = False  # last episode ended by term/trunc, awaiting reset
        self._ep_recording = True
        self._episode_index = -1
        self._warned_after_done = False
        self._handoff_every = min(1.0, self.flush_policy.every_seconds or 1.0)
        self._handoff_on_end = self.flush_policy.on_episode_end
        if self.flush_policy.every_steps:  # a commit every N steps needs the rows at the writer by then
            self._rows = int(min(self._rows, max(64, self.flush_policy.every_steps)))
        self._choose_layout()
        self._new_block()
        self._specialise()
        self.collecting = True
        _LIVE_COLLECTORS.add(self)

    def open_writer(self) -> None:
        """Open the sink (called by :meth:`start_collection`): ``self.writer``, a
        :class:`~gym_aquacollect.storage.writer.DatasetWriter` for :attr:`dataset_path`. Override it to write
        elsewhere, or set ``self.writer = None`` to keep the data in memory (then override :meth:`on_block`)."""
        meta, codecs = self._dataset_meta(), None
        if self.codecs:
            from gym_aquacollect.storage.codecs import resolve_codecs

            codecs = resolve_codecs(self.codecs, self.observation_space)
            meta["codecs"] = {k.split("/", 1)[1]: c.to_json() for k, c in codecs.items()}
        self.writer = DatasetWriter(self.dataset_path, meta, compression=self.compression,
                                    flush_policy=self.flush_policy, codecs=codecs,
                                    max_pending_bytes=self.max_pending_bytes)

    @engine_default
    def on_episode_end(self, end: EpisodeEnd) -> None:
        """Bookkeeping for a finished episode (subclasses may override; call super)."""
        self._ends.append(end)
        self.episode_lengths.append(end.length)
        self.episode_returns.append(end.ret)
        self.episode_flags.append(end.flags)

    # -- batched recording (writer thread) ---------------------------------------------------------------
    def on_finished_episodes(self, episodes: Any, writer: DatasetWriter) -> None:
        """``batched_mode == "episodes"``: sub-env episodes that just ended
        (:class:`~gym_aquacollect.recording.batched.FinishedEpisodes`). Runs in the writer thread: write
        what is kept with ``writer.write_block(episodes.block(keep))`` (never ``writer.submit``, which
        would wait on this very thread) and count it in the statistics. The base applies ``schedule``
        to the episode keys (numbered in the order the sub-env episodes started)."""
        keep = np.ones(len(episodes), bool)
        if self.schedule is not None:
            keep = np.array([bool(self.schedule(int(k))) for k in episodes.keys.tolist()], dtype=bool)
            self.skipped_episodes += int(np.count_nonzero(~keep))
        if keep.any():
            writer.write_block(episodes.block(keep))
            self.episode_lengths.extend(episodes.lengths[keep].tolist())
            self.episode_returns.extend(episodes.returns[keep].tolist())
            self.episode_flags.extend(episodes.flags[keep].tolist())

    def run_episode_callbacks(self, index: int, length: int, ret: float, terminated: bool, truncated: bool,
                              meta: dict[str, Any]) -> None:
        """Call each of ``episode_callbacks`` with ``(collector, summary)`` for a finished episode and merge
        what they return into its metadata ``meta`` (every recording path calls this, once per episode)."""
        summary = {"episode_index": index, "length": length, "return": ret, "terminated": terminated,
                   "truncated": truncated, "metadata": meta}
        for cb in self.episode_callbacks:
            more = cb(self, summary)
            if more:
                meta.update(_jsonable(more))

    def batched_feed(self) -> str:
        """How batched recording feeds this collector: ``"stream"``, ``"episodes"`` or ``"transitions"``
        (checked once, at wrapper construction; see :func:`batched_mode`)."""
        return batched_mode(self)

    def start_transitions(self, num_envs: int) -> None:
        """``batched_mode == "transitions"``: called once at wrapper construction (user thread)."""
        raise NotImplementedError(f"{type(self).__name__} declares batched_mode='transitions' without "
                                  "start_transitions/on_transitions")

    def on_transitions(self, obs: list[np.ndarray], actions: list[np.ndarray], rewards: np.ndarray,
                        next_obs: list[np.ndarray], terminated: np.ndarray, truncated: np.ndarray) -> None:
        """``batched_mode == "transitions"``: a chunk's transitions (leaf column lists in codec order;
        ``next_obs`` is the observation the step returned, the final one at a SAME_STEP done step).
        Writer thread; the rows themselves also go to disk."""
        raise NotImplementedError

    @engine_default
    def on_block(self, block: Block) -> None:
        """Where a block goes (default: the writer thread). Subclasses may keep blocks instead."""
        self.writer.submit(block)

    def _export_source(self) -> Any:
        """The exporters (``export_for_offline_rl`` & co.) read what is on disk: flush, then open it."""
        from gym_aquacollect.data.dataset import load_dataset

        self.flush()
        return load_dataset(self.dataset_path)

    def flush(self) -> None:
        """Make everything recorded so far durable (returns once it is on disk)."""
        if not self.collecting:
            return
        self._handoff()
        self.writer.flush()

    def end_collection(self, interrupted: str = "close") -> None:
        """Store the open episode (as truncated, ``interrupted`` in its metadata), commit everything and
        stop the writer. Recording cannot resume afterwards (a later ``reset()`` raises)."""
        if not self.collecting:
            return
        self._closed = True
        try:
            if self._ep_open and self._ep_recording and self._cur_len() > 0:
                self._finish_episode(False, True, interrupted=interrupted)
            self._ep_open = self._fast = False
            self._handoff(final=True)
            self.finalize()
        finally:
            self.collecting = False

    def _dropped_counts(self) -> dict[str, Any]:
        """Values that could not be stored, per kind and key (what reaches the manifest's ``info``)."""
        out: dict[str, Any] = {}
        if self._infos.dropped:
            out["dropped_info"] = dict(self._infos.dropped)
        if self._extras.dropped:
            out["dropped_extras"] = dict(self._extras.dropped)
        return out

    def finalize(self) -> None:
        """Close the sink (called by :meth:`end_collection` after the last rows were handed over): record the
        values that could not be stored in the manifest, commit and stop the writer."""
        if self.writer is not None:
            dropped = self._dropped_counts()
            if dropped:
                self.writer.update_info(dropped)
            self.writer.close()

    close = end_collection

    # -- seed API --------------------------------------------------------------------------------------
    def collect_step(self, observation: Any = None, action: Any = None, reward: Any = 0.0,
                     next_observation: Any = None, done: Any = False, truncated: Any = False,
                     info: dict[str, Any] | None = None, **extras: Any) -> None:
        """Record one transition given explicitly (the seed document's manual API).

        ``observation`` opens an episode when none is open; ``next_observation`` is what ``step``
        returned; ``done`` means terminated. Seed-style values are accepted: dicts of units
        (``{'action': array(1, 1, 1)}``), leading ``(num_machines, num_envs)`` axes of length 1, and
        one-element arrays or one-key dicts for ``reward``/``done``/``truncated`` (see
        :mod:`gym_aquacollect.collectors.units`).
        """
        from gym_aquacollect.collectors.units import scalar

        if not self.collecting:
            self.start_collection()
        if not self._ep_open:
            self.begin_episode(self._adapt_obs(observation), None)
        if type(reward) is not float:
            reward = scalar(reward, "reward")
        if type(done) is not bool:
            done = bool(scalar(done, "done"))
        if type(truncated) is not bool:
            truncated = bool(scalar(truncated, "truncated"))
        self.record_step(self._adapt_act(action), self._adapt_obs(next_observation), reward, done, truncated,
                         info, extras or None)

    # -- persistence (the seed's save/load; the exporters come from ExportMixin) -------------------------
    def save(self) -> Path:
        """Make everything recorded so far durable; returns the dataset directory."""
        self.flush()
        return self.dataset_path

    def load(self, path: str | Path | None = None, **kwargs: Any) -> Any:
        """Open the dataset this collector wrote (or ``path``) with :func:`~gym_aquacollect.load_dataset`."""
        from gym_aquacollect.data.dataset import load_dataset

        if path is None:
            self.flush()
            path = self.dataset_path
        return load_dataset(path, **kwargs)

    def get_dataset_statistics(self) -> dict[str, Any]:
        """Statistics of the episodes recorded so far (finished ones)."""
        from gym_aquacollect.schema.stats import episode_statistics

        stats = episode_statistics(np.asarray(self.episode_lengths, dtype=np.int64),
                                   np.asarray(self.episode_returns, dtype=np.float64),
                                   np.asarray(self.episode_flags, dtype=np.uint8))
        stats["skipped_episodes"] = self.skipped_episodes
        if self.collecting and self._ep_open:
            stats["open_episode_steps"] = self._cur_len()
        if self.writer is not None:
            stats["dataset_path"] = str(self.dataset_path)
            stats["committed_shards"] = self.writer.stats["committed_shards"]
        return stats

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, path={str(self._dataset_path)!r})"

    def _json(self) -> str:  # pragma: no cover - debugging helper
        return json.dumps(self.get_dataset_statistics(), default=repr)


for _old, _new in LEGACY_NAMES.items():
    setattr(BaseCollector, _old, getattr(BaseCollector, _new))


def batched_mode(collector: Any) -> str:
    """How a batched recorder feeds ``collector``: ``"stream"``, ``"episodes"`` or ``"transitions"``.

    Raises ``TypeError`` (at wrapper construction) for a collector whose behaviour batched recording
    would silently skip: step callbacks, or a subclass that overrides the single-env hooks
    (``on_block``, ``on_episode_end``, ``record_step``, ...) without declaring ``batched_mode``.
    """
    name = type(collector).__name__
    if getattr(collector, "step_callbacks", None):
        raise TypeError(
            f"{name}(step_callbacks=...) cannot be used with CollectingVectorWrapper / Isaac Lab / multi-agent "
            "recording: steps are copied batched, not one sub-env step at a time. Use episode_callbacks, "
            "store per-step values with teacher=..., or record each env with CollectingWrapper."
        )
    owner = next(k for k in type(collector).__mro__ if "batched_mode" in vars(k))
    if owner is BaseCollector:
        hooks = ("on_block", "on_episode_end", "record_step", "begin_episode", "_finish_episode", "_handoff",
                 *LEGACY_HOOKS)
        for klass in type(collector).__mro__:
            if klass is BaseCollector:
                break
            aliases = vars(klass).get("_legacy_aliases", ())  # names BaseCollector added, not the subclass
            over = [h for h in hooks if h in vars(klass) and h not in aliases]
            if over:
                raise TypeError(
                    f"{name} overrides {over}, which batched recording (CollectingVectorWrapper, Isaac Lab, "
                    "multi-agent) does not call: it would record every step regardless. Set the class attribute "
                    "batched_mode ('stream', 'episodes' with on_finished_episodes, or 'transitions' with "
                    "on_transitions) to say how it handles vector envs, or record each env with CollectingWrapper."
                )
    mode = collector.batched_mode
    if mode == "stream" and getattr(collector, "schedule", None) is not None:
        return "episodes"  # the default on_finished_episodes applies the schedule
    if mode not in ("stream", "episodes", "transitions"):
        raise ValueError(f"{name}.batched_mode must be 'stream', 'episodes' or 'transitions', got {mode!r}")
    return mode
