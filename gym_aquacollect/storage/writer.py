"""The background writer thread: the only code that touches dataset files while recording.

Contents:
    * :class:`Piece`, :class:`EpisodeEnd`, :class:`Block` - what collectors hand over: column rows of one
      or more episodes (each episode's rows contiguous), and the episodes that ended.
    * :class:`FlushPolicy` - when finished data becomes durable (steps / seconds / episode end).
    * :class:`DatasetWriter` - owns the thread, the open shard and this writer's manifest.
    * :class:`WriterError` - a failure in the writer thread, raised in the user's thread.
    * :func:`handle_sigterm` - opt in to SIGTERM behaving like Ctrl-C (the exit path then commits).

Durability: data handed over goes into an open shard. A *commit* closes that shard, fsyncs it, stores its
CRC32 and lists it in the writer's manifest (atomic rename). Only committed shards are part of the
dataset, so a SIGKILL loses at most what was handed over since the last commit. Commits happen on the
:class:`FlushPolicy`, on :meth:`DatasetWriter.flush` and on :meth:`DatasetWriter.close`.

Exits: at interpreter exit (a script that ends, ``sys.exit``, an uncaught exception, Ctrl-C; SIGTERM
after :func:`handle_sigterm`) open writers commit synchronously, without executors (a thread pool
refuses work at interpreter shutdown). A failing writer still commits the shards it had already
closed and checksummed before it reports the failure. After ``os.fork()`` a writer of the parent is
unusable in the child: the child's first recorded step raises :class:`WriterError` saying so (create
the wrapper in the child instead); the parent's writer is unaffected.

Size: over 500 lines because the writer thread, its byte budget and its exit handling share the thread's state; splitting them would share mutable state across modules.
"""

from __future__ import annotations

import atexit
import errno
import os
import queue
import shutil
import signal
import socket
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gym_aquacollect.logs import logger

try:
    import resource as _resource
except ImportError:  # Windows
    _resource = None

from gym_aquacollect.storage.flow import PendingBytes
from gym_aquacollect.storage.manifest import (
    SHARD_DIR,
    Manifest,
    ShardRecord,
    file_checksum,
    init_dataset_dir,
    new_writer_id,
)
from gym_aquacollect.storage.shard import _CHUNK_BYTES, AUTO_MIN_ROW_BYTES, ShardWriter, compression_kwargs

__all__ = ["Piece", "EpisodeEnd", "Block", "FlushPolicy", "DatasetWriter", "WriterError", "handle_sigterm"]

#: Default for ``max_pending_bytes``: what may wait for the writer before producers wait.
DEFAULT_MAX_PENDING_BYTES = 32 << 20


class WriterError(RuntimeError):
    """The background writer failed; earlier committed data is intact, later data was not stored."""


@dataclass(slots=True)
class Piece:
    """Rows of one episode inside a block (offsets relative to the block)."""

    key: int
    obs_start: int
    obs_n: int
    step_start: int
    step_n: int


@dataclass(slots=True)
class EpisodeEnd:
    """An episode that finished; ``flags`` bit 0 = terminated, bit 1 = truncated."""

    key: int
    length: int
    ret: float
    flags: int
    meta: dict[str, Any]


@dataclass
class Block:
    """A batch of rows for the writer. Arrays hold at least ``n_obs`` / ``n_step`` rows.

    Batched producers (the vector wrappers) may instead give ``pieces`` as an int64 array of rows
    ``(key, obs_start, obs_n, step_start, step_n)`` and the finished episodes as ``end_cols``, columns
    ``(keys, lengths, returns, flags, metadata JSON strings)`` in the order they finished (after ``ends``).
    """

    obs: dict[str, np.ndarray]
    step: dict[str, np.ndarray]
    n_obs: int
    n_step: int
    pieces: list[Piece] | np.ndarray = field(default_factory=list)
    ends: list[EpisodeEnd] = field(default_factory=list)
    on_written: Callable[[], None] | None = None
    end_cols: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    #: (n, 2) wall-clock ``t_start`` / ``t_end`` of the episodes in ``end_cols`` (None: inside their metadata)
    end_times: np.ndarray | None = None
    #: memory this block holds until written, counted against the writer's ``max_pending_bytes``
    nbytes: int = 0


@dataclass
class FlushPolicy:
    """When to commit (make durable) what was handed over.

    Args:
        every_steps: commit after this many steps were written (None: no step trigger).
        every_seconds: commit when this much time passed since the last commit (None: no timer).
        on_episode_end: commit after every finished episode (safest, one shard per episode: slow for
            short episodes).
        max_shard_bytes: start a new shard past this many bytes of column data.
        fsync: fsync each shard before listing it in the manifest, so committed data also survives
            a power loss or kernel crash. Without it, committed data survives any crash of the
            process (SIGKILL, OOM kill) but a power loss may lose recent shards (they are then
            reported by ``aquacollect validate``). Costs a sync write of the data at each commit.
    """

    every_steps: int | None = None
    every_seconds: float | None = 30.0
    on_episode_end: bool = False
    max_shard_bytes: int = 1 << 30
    fsync: bool = True

    @classmethod
    def coerce(cls, value: FlushPolicy | dict[str, Any] | None) -> FlushPolicy:
        if value is None:
            return cls()
        if isinstance(value, FlushPolicy):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise TypeError(f"flush_policy must be a FlushPolicy or a dict of its fields, got {type(value).__name__}")


_CLOSE = object()


class DatasetWriter:
    """Writes blocks into a dataset directory from a background thread.

    Args:
        path: the dataset directory (created if needed; joined if it already holds a compatible dataset).
        meta: dataset metadata (spaces, env spec, user metadata) for ``aquacollect.json``.
        compression: None, "lzf", "gzip" or ("gzip", level).
        flush_policy: a :class:`FlushPolicy` (or dict of its fields).
        writer_id: this writer's id (default: a new unique, time-sortable id).
        max_pending_bytes: bytes handed over (``submit(..., nbytes=)``) and not yet written before
            :meth:`submit` waits (see :mod:`gym_aquacollect.storage.flow`).

    The run (writer id, host, pid, start time and the ``metadata`` of ``meta``) is stored in this
    writer's manifest (``info["run"]``); readers attach it to each episode as ``metadata["run"]``, so a
    second recording into an existing dataset keeps its own metadata with its own episodes.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        meta: dict[str, Any],
        *,
        compression: Any = None,
        flush_policy: FlushPolicy | dict[str, Any] | None = None,
        writer_id: str | None = None,
        codecs: dict[str, Any] | None = None,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
    ) -> None:
        compression_kwargs(compression)  # validate early, in the caller's thread
        #: ``{"obs/<column>": ColumnCodec}`` (see :func:`gym_aquacollect.storage.codecs.resolve_codecs`)
        self.codecs = dict(codecs or {})
        self.path = Path(path)
        self.meta = init_dataset_dir(self.path, meta)
        self.compression = compression
        self.policy = FlushPolicy.coerce(flush_policy)
        self.writer_id = writer_id or new_writer_id()
        self.run = {"writer_id": self.writer_id, "host": socket.gethostname(), "pid": os.getpid(),
                    "started": datetime.now(timezone.utc).isoformat(), "metadata": meta.get("metadata")}
        self._extra_info: dict[str, Any] = {}
        self._info_lock = threading.Lock()
        self.manifest = Manifest(writer_id=self.writer_id, info={"run": self.run})
        self.manifest.save(self.path)
        self._pid = os.getpid()
        self._exiting = False  # interpreter exit: finish shards synchronously (no executors)
        self.pending = PendingBytes(max_pending_bytes, on_wait=self._warn_behind)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.failed = False
        self._shard: ShardWriter | None = None
        self._seq = 0
        self._steps_since_commit = 0
        self._last_commit = time.monotonic()
        self.closed = False
        self.stats = {"committed_shards": 0, "bytes": 0, "steps": 0, "episodes": 0}
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aquacollect-finish")
        self.submitted = 0  # items handed over (incremented by submitting threads only)
        self.done = 0  # items processed (incremented by the writer thread only)
        self._finishing: list[Future] = []
        self._thread = threading.Thread(target=self._run, name=f"aquacollect-writer-{self.writer_id[-6:]}",
                                        daemon=True)
        self._thread.start()
        _LIVE.add(self)

    # -- user thread API -------------------------------------------------------------------------------
    def _warn_behind(self) -> None:
        logger.warning(
            "gym_aquacollect: the writer for {} is behind by {} MB; recording waits for it (raise "
            "max_pending_bytes, use lighter compression or a faster disk)", self.path, self.pending.cap >> 20,
        )

    def check(self) -> None:
        """Raise :class:`WriterError` if the writer thread has failed (or this is a forked child)."""
        if self.failed:
            if self._pid != os.getpid():
                raise WriterError(
                    f"gym_aquacollect: this process was forked (os.fork) from process {self._pid} after its "
                    f"recording wrapper for {self.path} was created; the writer thread does not exist in the "
                    "child, so nothing the child records could be stored. Create the recording wrapper in the "
                    "child process (after the fork), or use multiprocessing's 'spawn'/'forkserver' start method."
                )
            raise WriterError(
                f"gym_aquacollect writer for {self.path} failed: {type(self.error).__name__}: {self.error}. "
                "Data committed before the failure is intact; nothing after it was stored."
            ) from self.error

    def submit(self, item: Block | Callable[[DatasetWriter], None], nbytes: int | None = None) -> None:
        """Hand a block (or a callable run in the writer thread with this writer) over.

        ``nbytes`` (default: ``block.nbytes``) is the memory the item holds until the writer is done
        with it; while more than ``max_pending_bytes`` of such items wait, this call waits (flow control).
        Never call it from the writer thread (a callable submitted here must use :meth:`write_block`)."""
        self.check()
        if self.closed:
            raise RuntimeError(f"the writer for {self.path} is closed")
        if nbytes is None:
            nbytes = item.nbytes if isinstance(item, Block) else 0
        if nbytes:
            self.pending.acquire(nbytes, self.check)
        self.submitted += 1
        self._queue.put((item, nbytes, None))

    @property
    def busy(self) -> bool:
        """Whether the writer (or its finisher) has work: recording threads then call :meth:`let_run`."""
        return self.submitted != self.done or bool(self._finishing)

    def let_run(self) -> None:
        """Give up the GIL for a moment if the writer has work. Recording loops call this every few hundred
        steps.

        Why: an env loop that calls NumPy releases and retakes the GIL many times per step, and a thread
        waiting for the GIL is woken by every release but loses the race to retake it, so its wait starts
        over (CPython's GIL convoy). Measured with CartPole: a writer-thread operation of 1 ms (a NumPy
        copy, an h5py write, ``os.pwrite``) took 1-5 s, and the env loop ran ~10-20% slower meanwhile,
        paying a futex wake for each release. ``time.sleep(0)`` every 256 steps lets the waiting thread in
        (the same operation: ~5 ms); it costs nothing while the writer is idle. The vector wrappers call it
        every step (measured: x16 CartPole 1.16x raw instead of 1.25x with every 8th step)."""
        if self.submitted != self.done or self._finishing:
            time.sleep(0)

    def set_max_pending_bytes(self, cap: int) -> None:
        """Change the byte budget of :meth:`submit` (``max_pending_bytes``); safe from the submitting thread."""
        self.pending.cap = int(cap)

    def update_info(self, values: dict[str, Any]) -> None:
        """Add ``values`` to this writer's manifest ``info`` (saved at the next commit and at close).
        Safe from any thread; e.g. the count of info values that could not be stored."""
        with self._info_lock:
            self._extra_info.update(values)

    def flush(self, timeout: float | None = None) -> None:
        """Commit everything submitted so far; returns once it is durable on disk."""
        self._sync("flush", timeout)

    def close(self, timeout: float | None = None) -> None:
        """Commit, mark the manifest closed and stop the thread (idempotent)."""
        if self.closed:
            return
        try:
            self._sync("close", timeout)
        finally:
            self.closed = True
            self._thread.join(timeout)

    def _sync(self, what: str, timeout: float | None) -> None:
        if self.closed or not self._thread.is_alive():
            self.check()
            return
        done = threading.Event()
        self._queue.put((what, 0, done))
        if not done.wait(timeout):
            raise TimeoutError(f"gym_aquacollect writer for {self.path} did not {what} within {timeout} s")
        self.check()

    # -- writer thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            if self._finishing:
                try:
                    item = self._queue.get(timeout=0.05)
                except queue.Empty:
                    self._apply_finished(wait=False)
                    continue
            else:
                item = self._queue.get()
            item, nbytes, done = item
            if done is not None:  # flush / close
                try:
                    if not self.failed:
                        self._commit(final=(item == "close"), wait=True)
                    elif item == "close":
                        self._save_manifest(final=True)
                except BaseException as e:  # noqa: BLE001 - surfaced through check()
                    self._fail(e)
                finally:
                    done.set()
                if item == "close":
                    return
                continue
            try:
                if self.failed:
                    if isinstance(item, Block) and item.on_written:
                        item.on_written()
                    continue
                if isinstance(item, Block):
                    self.write_block(item)
                else:
                    item(self)
                self._maybe_commit()
                if self._finishing:
                    self._apply_finished(wait=False)
            except BaseException as e:  # noqa: BLE001 - surfaced through check()
                self._fail(e)
            finally:
                self.pending.release(nbytes)
                self.done += 1

    def _fail(self, e: BaseException) -> None:
        logger.error("gym_aquacollect writer for {} failed: {}: {}", self.path, type(e).__name__, e)
        if self._shard is not None:
            self._shard.abort()
            try:
                self._shard.path.unlink()
            except OSError:
                pass
            self._shard = None
        # shards already closed (and being checksummed) are complete: commit them before reporting
        while self._finishing:
            fut = self._finishing.pop(0)
            try:
                rec = fut.result()
            except BaseException as e2:  # noqa: BLE001 - this shard is lost; the others still count
                logger.error("gym_aquacollect: finishing a closed shard of {} failed: {}", self.path, e2)
                continue
            self.manifest.shards.append(rec)
            self.stats["committed_shards"] += 1
            self.stats["bytes"] += rec.size
        try:
            self._extra_info["failed"] = f"{type(e).__name__}: {e}"[:500]
            self._save_manifest(final=False)
        except BaseException as e2:  # noqa: BLE001
            logger.error("gym_aquacollect: saving the manifest of {} after the failure failed: {}", self.path, e2)
        self.error = e
        self.failed = True

    def _open_shard(self) -> ShardWriter:
        if self._shard is None:
            self._seq += 1
            name = f"{self.writer_id}-{self._seq:06d}.h5"
            self._shard = ShardWriter(
                self.path / SHARD_DIR / name, self.compression,
                attrs={"writer_id": self.writer_id, "seq": self._seq}, codecs=self.codecs,
            )
        return self._shard

    def write_block(self, block: Block) -> None:
        """Write a block into the open shard (writer thread only; callables submitted may call it)."""
        if not (block.n_obs or block.n_step or len(block.pieces) or block.ends or block.end_cols is not None):
            if block.on_written is not None:  # nothing to store: do not open (and commit) an empty shard
                block.on_written()
            return
        self._ensure_room(block)
        shard = self._open_shard()
        obs0 = shard.append("obs", block.obs, block.n_obs,
                            _obs_row_keys(block) if self.codecs and block.n_obs else None)
        step0 = shard.append("step", block.step, block.n_step)
        if isinstance(block.pieces, np.ndarray):
            shard.add_segments(block.pieces, obs0, step0)
        else:
            for p in block.pieces:
                shard.add_segment(p.key, obs0 + p.obs_start, p.obs_n, step0 + p.step_start, p.step_n)
        for e in block.ends:
            shard.add_episode_end(e.key, e.length, e.ret, e.flags, e.meta)
        n_end = len(block.ends)
        if block.end_cols is not None:
            shard.add_episode_ends(*block.end_cols, times=block.end_times)
            n_end += len(block.end_cols[0])
        self._steps_since_commit += block.n_step
        if self.policy.fsync and shard._fd is not None and shard.nbytes - shard.synced_bytes >= SYNC_AHEAD_BYTES:
            self._sync_ahead(shard)
        self.stats["steps"] += block.n_step
        self.stats["episodes"] += n_end
        if block.on_written is not None:
            block.on_written()
        if n_end and self.policy.on_episode_end:
            self._commit(wait=True)

    def _sync_ahead(self, shard: ShardWriter) -> None:
        """Start writing the open shard's data to disk in the finisher thread (``fdatasync`` on a duplicate
        descriptor) while recording goes on, so the fsync at commit / close has little left to do. A plain
        writer pays for the whole file at close; this spreads that cost over the run (large-row columns,
        written with ``os.pwrite``, are the bytes that count)."""
        shard.synced_bytes = shard.nbytes
        try:
            fd = os.dup(shard._fd)
        except OSError:
            return

        def sync() -> None:
            try:
                os.fdatasync(fd)
            except OSError:  # a later commit fsyncs (and reports) anyway
                pass
            finally:
                os.close(fd)

        try:
            self._finisher.submit(sync)
        except RuntimeError:  # interpreter shutdown: the commit's own fsync will do
            os.close(fd)

    def _ensure_room(self, block: Block) -> None:
        """Refuse (with a clear OSError) to write a block the disk or the file size limit cannot take.

        HDF5 cannot recover from a failed write: after one, closing the shard or freeing its datasets
        crashes the process (SIGSEGV in H5D_close; HDF5 2.0 / h5py 3.16). So before each block the writer
        checks that the open shard, with this block, still fits (a generous upper bound of its final
        size) under ``RLIMIT_FSIZE`` (committing the shard first and starting a new one when only that
        helps) and in the free space of the filesystem, so the open shard can always be closed cleanly.
        Costs a getrlimit and a statvfs (disk_usage) per block (not per step).
        """
        shard = self._shard
        add, pad = 0, 0
        for kind, cols, n in (("obs", block.obs, block.n_obs), ("step", block.step, block.n_step)):
            for name, a in cols.items():
                a = a[:n]
                if a.dtype.kind == "O":  # variable-length strings: their bytes, not the pointers
                    add += 16 * len(a) + 4 * sum(len(x) for x in a.ravel() if isinstance(x, str))
                else:
                    add += a.nbytes
                pad += _chunk_bytes(shard, kind, name, a, self.compression)
        ncols = len(block.obs) + len(block.step)
        have = shard.nbytes if shard is not None else 0
        on_disk = shard.path.stat().st_size if shard is not None and shard.path.exists() else 0

        def bound(data: int) -> int:
            # an upper bound of the shard's size: raw chunks are allocated at most max(one chunk, 25%)
            # ahead (shard._DirectColumn), the last chunk of each column is padded (one chunk per
            # column), LZF/deflate expand incompressible data by < 1%, plus object headers, the
            # episode index and B-trees
            return int(1.27 * data) + pad + ncols * (4 << 10) + (64 << 10)

        if _resource is not None:
            soft = _resource.getrlimit(_resource.RLIMIT_FSIZE)[0]
            if soft != _resource.RLIM_INFINITY and bound(have + add) > soft:
                if shard is not None:
                    self._commit()  # a fresh shard may take it
                    shard, have, on_disk = None, 0, 0
                if bound(add) > soft:
                    raise OSError(errno.EFBIG, f"cannot store {add} bytes of new rows in a shard under the file "
                                  f"size limit of {soft} bytes (ulimit -f / RLIMIT_FSIZE) in {self.path}; raise the "
                                  "limit (everything committed so far is intact)")
        free = shutil.disk_usage(self.path).free
        need = bound(have + add) - on_disk
        if need > free:
            raise OSError(errno.ENOSPC, f"disk almost full: {free / 1e6:.1f} MB free on the filesystem of "
                          f"{self.path}, the open shard may need {need / 1e6:.1f} MB more; free space "
                          "(everything committed so far is intact)")

    def _maybe_commit(self) -> None:
        p = self.policy
        if self._shard is None:
            return
        if (
            (p.every_steps is not None and self._steps_since_commit >= p.every_steps)
            or (p.every_seconds is not None and time.monotonic() - self._last_commit >= p.every_seconds)
            or self._shard.nbytes >= p.max_shard_bytes
        ):
            self._commit()

    def _commit(self, final: bool = False, wait: bool = False) -> None:
        """Close the open shard and hand it to the finisher thread, which fsyncs it and computes its
        CRC32 while this thread goes on writing; the shard joins the manifest once that is done.
        ``wait`` (flush / close) returns only after every shard so far is in the manifest."""
        shard, self._shard = self._shard, None
        if shard is not None and not (shard.rows["obs"] or shard.rows["step"] or shard.n_segments or shard.n_ended):
            shard.abort()  # opened but never written to: not a shard of the dataset
            try:
                shard.path.unlink()
            except OSError:
                pass
            shard = None
        if shard is not None:
            try:
                shard.close()
            except BaseException:
                # e.g. disk full / file size limit while finishing the shard: leave no half-written file
                shard.abort()
                try:
                    shard.path.unlink()
                except OSError:
                    pass
                raise
            fut = None
            if not self._exiting:
                try:
                    fut = self._finisher.submit(self._finish_file, shard)
                except RuntimeError:  # interpreter shutdown: executors refuse new work
                    self._exiting = True
            if fut is None:  # finish here, synchronously
                fut = Future()
                try:
                    fut.set_result(self._finish_file(shard))
                except BaseException as e:  # noqa: BLE001 - raised by _apply_finished, like the finisher's
                    fut.set_exception(e)
            self._finishing.append(fut)
        self._steps_since_commit = 0
        self._last_commit = time.monotonic()
        if wait or final:
            self._apply_finished(wait=True, final=final)

    def _finish_file(self, shard: ShardWriter) -> ShardRecord:
        """(finisher thread) Make a closed shard durable and checksum it; both release the GIL."""
        if self.policy.fsync:
            with open(shard.path, "rb+") as f:
                os.fsync(f.fileno())
        return ShardRecord(
            file=f"{SHARD_DIR}/{shard.path.name}", n_obs_rows=shard.rows["obs"], n_step_rows=shard.rows["step"],
            n_segments=shard.n_segments, n_episodes_ended=shard.n_ended, size=shard.path.stat().st_size,
            checksum=file_checksum(shard.path),
        )

    def _apply_finished(self, wait: bool, final: bool = False) -> None:
        """List finished shards (in commit order) in the manifest and save it."""
        added = False
        while self._finishing and (wait or self._finishing[0].done()):
            rec = self._finishing.pop(0).result()  # raises what the finisher raised
            self.manifest.shards.append(rec)
            self.stats["committed_shards"] += 1
            self.stats["bytes"] += rec.size
            added = True
        if added or final:
            self._save_manifest(final)
        if final:
            self._finisher.shutdown(wait=not self._exiting)

    def _save_manifest(self, final: bool) -> None:
        self.manifest.closed = final
        with self._info_lock:
            extra = dict(self._extra_info)
        self.manifest.info = {"steps": self.stats["steps"], "episodes": self.stats["episodes"], "run": self.run,
                              **extra}
        self.manifest.save(self.path)


def _chunk_bytes(shard: ShardWriter | None, kind: str, name: str, a: np.ndarray, compression: Any) -> int:
    """Bytes of one chunk of column ``kind/name`` (existing in ``shard``, or as the shard would create it
    for rows like ``a``): what a partly filled last chunk may add on disk."""
    row = int(np.prod(a.shape[1:], dtype=np.int64)) * (16 if a.dtype.kind == "O" else a.dtype.itemsize)
    row = max(1, row)
    ds = shard._ds.get(f"{kind}/{name}") if shard is not None else None
    if ds is not None and ds.chunks:
        return int(ds.chunks[0]) * row
    if row >= AUTO_MIN_ROW_BYTES and a.dtype.kind in "biuf" and compression != "lzf":
        return max(1, _CHUNK_BYTES // row) * row
    need = max(1, len(a))
    return int(max(1, min(_CHUNK_BYTES // row, 1 << 16, max(64, 1 << int(need).bit_length())))) * row


#: A shard's new large-row bytes after which the writer starts syncing them in the background.
SYNC_AHEAD_BYTES = 64 << 20

_LIVE: weakref.WeakSet[DatasetWriter] = weakref.WeakSet()


def _obs_row_keys(block: Block) -> np.ndarray:
    """The episode key of every obs row of a block (-1 where no piece covers it), for coded columns."""
    keys = np.full(block.n_obs, -1, np.int64)
    if isinstance(block.pieces, np.ndarray):
        for key, o0, on, _s0, _sn in block.pieces.tolist():
            keys[o0:o0 + on] = key
    else:
        for p in block.pieces:
            keys[p.obs_start:p.obs_start + p.obs_n] = p.key
    return keys


def prepare_exit() -> None:
    """Interpreter exit: live writers finish shards synchronously from now on (no executors)."""
    for w in list(_LIVE):
        w._exiting = True


@atexit.register
def _close_live_writers() -> None:
    """At interpreter exit, commit what open writers hold (a normal exit without close() loses nothing)."""
    prepare_exit()
    for w in list(_LIVE):
        if w.closed or w.failed:
            continue
        try:
            w.close(timeout=60)
        except Exception as e:  # noqa: BLE001
            logger.error("gym_aquacollect: closing writer for {} at exit failed: {}", w.path, e)


def _after_fork_in_child() -> None:
    """In a forked child the writer threads do not exist: make every inherited writer refuse work (its
    ``check`` explains) instead of silently queueing data nobody writes. The parent's files are untouched."""
    for w in list(_LIVE):
        if not w.closed:
            w.failed = True
            w.error = RuntimeError("forked")
            w._finishing = []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def handle_sigterm(enable: bool = True) -> None:
    """Make SIGTERM behave like Ctrl-C: it raises ``KeyboardInterrupt`` in the main thread, so the exit
    path stores every finished episode and the open ones (truncated, ``interrupted: "exit"``).

    SLURM, Kubernetes and most job schedulers send SIGTERM before they kill a job. A library does not
    take over signals by default: call this once from the main thread (or set the environment variable
    ``AQUACOLLECT_HANDLE_SIGTERM=1`` before the first recording wrapper is created).
    ``enable=False`` restores the default action.

    Example:
        >>> import signal
        >>> handle_sigterm()
        >>> signal.getsignal(signal.SIGTERM).__name__
        '_sigterm_as_interrupt'
        >>> handle_sigterm(False)
        >>> signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        True
    """
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt if enable else signal.SIG_DFL)


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum} (SIGTERM)")


def maybe_handle_sigterm_from_env() -> None:
    """Install :func:`handle_sigterm` when ``AQUACOLLECT_HANDLE_SIGTERM`` is set to 1/true/yes (main thread
    only; a no-op elsewhere)."""
    if os.environ.get("AQUACOLLECT_HANDLE_SIGTERM", "").strip().lower() in ("1", "true", "yes", "on") \
            and threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        handle_sigterm()
