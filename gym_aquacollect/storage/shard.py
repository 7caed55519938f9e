"""Columnar HDF5 shard files: many episodes per file, one appendable chunked dataset per column.

Contents:
    * :func:`compression_kwargs` - h5py filter arguments for ``None`` / ``"lzf"`` / ``"gzip"`` / ``("gzip", level)``.
    * :class:`ShardWriter` - appends rows to the columns of one shard and keeps its episode index.
    * :class:`ShardReader` - reads an index and row ranges back, with errors that name the file.

Layout of one shard::

    /obs/<column>        rows with one entry per observation (T+1 per episode): observations, infos
    /step/<column>       rows with one entry per step (T per episode): actions, rewards, flags, extras
    /index/segments      int64 (S, 5): episode key, obs_start, obs_count, step_start, step_count
    /index/episode_key   int64 (E,)  episodes that *ended* in this shard, in the order they ended
    /index/episode_length, /index/episode_return, /index/episode_flags (bit 0 terminated, bit 1 truncated)
    /index/episode_meta  utf-8 JSON per episode (seed, options, env_index, user metadata, ...)
    /index/episode_time  float64 (E, 2): wall-clock t_start, t_end of each episode (NaN: not known); read
                         back into the metadata as ``t_start`` / ``t_end``. Shards written before it have the
                         times inside the JSON instead (both are read).

Creating HDF5 objects costs ~0.3 ms each, so a shard holds thousands of episodes in a handful of
datasets instead of one group per episode (Minari's layout). An episode that is still running when a
shard is committed continues in the next shard as another segment.

Size: over 500 lines because the HDF5 layout of one shard, its writer and its reader change together (a column's on-disk form is defined once here).
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gym_aquacollect.storage.manifest import DatasetFormatError

__all__ = ["compression_kwargs", "ShardWriter", "ShardReader", "STR_H5", "PLAIN_EPISODE_META"]

STR_H5 = h5py.string_dtype("utf-8")
_CHUNK_BYTES = 1 << 20
_SEG_COLS = 5
_BATCH_ROWS = 1 << 16  # small-row columns are written in batches of up to this many rows


#: Columns whose rows are at least this large (images, big arrays) are written chunk by chunk by
#: :class:`_DirectColumn`, off the GIL. With ``compression="auto"`` they are deflated (level 1) and
#: smaller rows (states, actions, rewards, flags) are stored raw: compression saves ~10% there
#: (CartPole) but its CPU competes with the env on small machines.
AUTO_MIN_ROW_BYTES = 1024


def compression_kwargs(compression: Any) -> dict[str, Any]:
    """Translate a user compression setting into h5py ``create_dataset`` keyword arguments.

    ``"auto"`` maps to gzip level 1 here; :class:`ShardWriter` applies it only to large rows.
    """
    if compression is None or compression is False or compression == "none":
        return {}
    if compression == "lzf":
        return {"compression": "lzf"}
    if compression == "auto":
        return {"compression": "gzip", "compression_opts": 1}
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4}
    if isinstance(compression, (tuple, list)) and len(compression) == 2 and compression[0] == "gzip":
        level = int(compression[1])
        if not 0 <= level <= 9:
            raise ValueError(f"gzip level must be 0..9, got {level}")
        return {"compression": "gzip", "compression_opts": level}
    raise ValueError(
        f"compression={compression!r} is not supported: use 'auto', None, 'lzf', 'gzip' or ('gzip', level)"
    )


_PLAIN_META = {
    (t, u): json.dumps({"seed": None, "options": None, "terminated": t, "truncated": u})
    for t in (False, True) for u in (False, True)
}


#: The metadata JSON of an episode with no seed, no options and nothing added, by its flags (bit 0
#: terminated, bit 1 truncated): what the recorders store for most episodes without building a dict.
PLAIN_EPISODE_META = {f: _PLAIN_META[(bool(f & 1), bool(f & 2))] for f in range(4)}

_TIME_KEYS = ("t_start", "t_end")


def _time_value(v: Any) -> float | None:
    """A wall-clock time the time column can hold (an int or float), else None (it stays in the JSON)."""
    t = type(v)
    if t is float or t is int or (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)):
        return float(v)
    return None


def episode_meta_json(meta: dict[str, Any]) -> tuple[str, float, float]:
    """An episode's metadata as ``(JSON text, t_start, t_end)``: the wall-clock times go to the shard's time
    column (NaN where absent) and the rest to JSON. The common case (no seed, no options, the end flags,
    the times) is a constant text, so the writer thread does no per-episode ``json.dumps`` (it held the GIL
    the env loop needs); anything else goes through ``json.dumps`` (``repr`` for odd objects)."""
    if len(meta) == 6 and meta.get("seed", 0) is None and meta.get("options", 0) is None:  # the row path
        t0, t1 = meta.get("t_start"), meta.get("t_end")
        if type(t0) is float and type(t1) is float:
            text = _PLAIN_META.get((meta.get("terminated"), meta.get("truncated")))
            if text is not None:
                return text, t0, t1
    t0, t1 = _time_value(meta.get("t_start")), _time_value(meta.get("t_end"))
    rest = meta
    if t0 is not None or t1 is not None:
        rest = {k: v for k, v in meta.items() if not ((k == "t_start" and t0 is not None) or (k == "t_end" and t1 is not None))}
    nan = float("nan")
    t0, t1 = nan if t0 is None else t0, nan if t1 is None else t1
    if len(rest) == 4 and rest.get("seed", 0) is None and rest.get("options", 0) is None:
        text = _PLAIN_META.get((rest.get("terminated"), rest.get("truncated")))
        if text is not None:
            return text, t0, t1
    return json.dumps(rest, default=repr), t0, t1


def _h5_dtype(dtype: np.dtype) -> Any:
    return STR_H5 if dtype == np.dtype(object) else dtype


class _DirectColumn:
    """A column of large rows written one whole chunk at a time without holding the GIL for the bulk.

    h5py holds the GIL inside ``H5Dwrite`` (measured: a busy Python thread stalls for the whole write),
    which would make the user's env loop pay for every byte the writer thread stores. Here rows gather
    in a chunk buffer (NumPy copies release the GIL); a full chunk is either deflated with ``zlib``
    (releases the GIL) and stored with ``write_direct_chunk`` (a short call on a small payload), or,
    uncompressed, written with ``os.pwrite`` (releases the GIL) at the file offset HDF5 allocated for it
    (early allocation, no fill). The file stays a plain chunked HDF5 dataset that any reader opens.
    """

    def __init__(self, ds: h5py.Dataset, fd: int, level: int | None) -> None:
        self.ds, self.fd, self.level = ds, fd, level
        self.chunk_rows = ds.chunks[0]
        self.buf = np.empty((self.chunk_rows, *ds.shape[1:]), dtype=ds.dtype)
        self.fill = 0
        self.chunks = 0
        self.cap = 0

    def append(self, data: np.ndarray) -> None:
        n, k, cr = len(data), 0, self.chunk_rows
        while k < n:
            take = min(cr - self.fill, n - k)
            if self.fill == 0 and take == cr and data.flags.c_contiguous:
                self._write(data[k:k + cr])
            else:
                self.buf[self.fill:self.fill + take] = data[k:k + take]
                self.fill += take
                if self.fill == cr:
                    self._write(self.buf)
                    self.fill = 0
            k += take

    def _write(self, chunk: np.ndarray, rows: int | None = None) -> None:
        start = self.chunks * self.chunk_rows
        if self.cap < start + self.chunk_rows:  # grow by ~25% (1-16 chunks): allocated space ~ data
            self.cap = start + self.chunk_rows * max(1, min(16, self.chunks // 4))
            self.ds.resize(self.cap, axis=0)
        coord = (start,) + (0,) * (chunk.ndim - 1)
        if self.level is None:
            offset = self.ds.id.get_chunk_info_by_coord(coord).byte_offset
            os.pwrite(self.fd, memoryview(np.ascontiguousarray(chunk[:rows])).cast("B"), offset)
        else:
            self.ds.id.write_direct_chunk(coord, zlib.compress(memoryview(np.ascontiguousarray(chunk)).cast("B"),
                                                               self.level))
        self.chunks += 1

    def finish(self, rows: int) -> None:
        """Write the partial last chunk and set the dataset's extent to ``rows``."""
        if self.fill:
            if self.level is None:  # raw: write the filled rows only; the rest of the chunk stays a hole
                self._write(self.buf, self.fill)
            else:
                self.buf[self.fill:] = 0
                self._write(self.buf)
            self.fill = 0
        self.ds.resize(rows, axis=0)


class ShardWriter:
    """Append-only writer for one shard file (owned by the writer thread)."""

    def __init__(self, path: Path, compression: Any = None, *, attrs: dict[str, Any] | None = None,
                 codecs: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        #: ``{"obs/<column>": ColumnCodec}``: columns stored by a codec (see :mod:`.codecs`)
        self.codecs = dict(codecs or {})
        self._coded: dict[str, Any] = {}
        self._ckw = compression_kwargs(compression)
        self._auto = compression == "auto"
        self._direct: dict[str, _DirectColumn] = {}
        self._pending: dict[str, list] = {}  # small-row columns: [start row, rows, arrays] not yet written
        self._fd: int | None = None
        # A small chunk cache: big caches make h5py's chunked writes several times slower (measured).
        self.file = h5py.File(self.path, "w", rdcc_nbytes=2 * _CHUNK_BYTES, rdcc_nslots=521)
        for k, v in (attrs or {}).items():
            self.file.attrs[k] = v
        self.rows = {"obs": 0, "step": 0}
        self._ds: dict[str, h5py.Dataset] = {}
        self._cap: dict[str, int] = {}
        self.segments: list[list[int]] = []
        self.ended: list[tuple[int, int, float, int, str]] = []
        # batched producers: blocks of segments / ended episodes (see add_segments, add_episode_ends)
        self._seg_blocks: list[np.ndarray] = []
        self._end_blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.n_segments = 0
        self.n_ended = 0
        self.nbytes = 0
        self.synced_bytes = 0  # nbytes when the writer last started a background sync (see DatasetWriter)

    # -- columns ---------------------------------------------------------------------------------------
    def _dataset(self, kind: str, name: str, arr: np.ndarray, need: int) -> h5py.Dataset:
        full = f"{kind}/{name}"
        ds = self._ds.get(full)
        if ds is None:
            row_shape, dtype = arr.shape[1:], arr.dtype
            row_bytes = max(1, int(np.prod(row_shape, dtype=np.int64)) * (16 if dtype.kind == 'O' else dtype.itemsize))
            chunk_rows = int(max(1, min(_CHUNK_BYTES // row_bytes, 1 << 16, max(64, 1 << int(need).bit_length()))))
            if row_bytes >= AUTO_MIN_ROW_BYTES and dtype.kind in "biuf" and self._ckw.get("compression") != "lzf":
                # whole chunks, off the GIL (see _DirectColumn)
                ds = self._direct_dataset(full, row_shape, dtype, int(max(1, _CHUNK_BYTES // row_bytes)), row_bytes)
                self._ds[full] = ds
                self._cap[full] = 0
                return ds
            big_enough = row_bytes >= AUTO_MIN_ROW_BYTES if self._auto else row_bytes * chunk_rows >= 256
            kw = dict(self._ckw) if big_enough and dtype.kind != "O" else {}
            # a zero-size row (an info value such as np.zeros((0, 3))): HDF5 chunks must be positive and fit
            # the maximum shape, so such dimensions are chunked by 1 with no fixed maximum (rows stay empty)
            ds = self.file.create_dataset(
                full, shape=(0, *row_shape), maxshape=(None, *(d if d else None for d in row_shape)),
                dtype=_h5_dtype(dtype), chunks=(chunk_rows, *(max(1, d) for d in row_shape)), **kw,
            )
            self._ds[full] = ds
            self._cap[full] = 0
        return ds

    def _direct_dataset(self, full: str, row_shape: tuple[int, ...], dtype: np.dtype, chunk_rows: int,
                        row_bytes: int) -> h5py.Dataset:
        level = self._ckw.get("compression_opts") if self._ckw.get("compression") == "gzip" else None
        if self._auto and row_bytes < AUTO_MIN_ROW_BYTES:
            level = None
        if level is not None:
            ds = self.file.create_dataset(full, shape=(0, *row_shape), maxshape=(None, *row_shape), dtype=dtype,
                                          chunks=(chunk_rows, *row_shape), compression="gzip",
                                          compression_opts=level)
        else:  # raw chunks: file space allocated when the extent grows, fill values never written
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_chunk((chunk_rows, *row_shape))
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
            space = h5py.h5s.create_simple((0, *row_shape), (h5py.h5s.UNLIMITED, *row_shape))
            parent, _, leaf = full.rpartition("/")
            group = self.file.require_group(parent) if parent else self.file
            ds = h5py.Dataset(h5py.h5d.create(group.id, leaf.encode(), h5py.h5t.py_create(dtype), space, dcpl=dcpl))
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY)
        self._direct[full] = _DirectColumn(ds, -1 if self._fd is None else self._fd, level)
        return ds

    def append(self, kind: str, cols: dict[str, np.ndarray], n: int, row_keys: np.ndarray | None = None) -> int:
        """Append ``n`` rows (``cols`` hold at least ``n`` rows each) to ``kind``; returns the start row.

        Columns not given keep their fill value (0 / False / "") on these rows. ``row_keys`` (the episode
        key of every row) routes rows of coded columns to one stream per episode.
        """
        start = self.rows[kind]
        end = start + n
        if n:
            for name, arr in cols.items():
                codec = self.codecs.get(f"{kind}/{name}") if self.codecs else None
                if codec is not None:
                    from gym_aquacollect.storage.codecs import CodecColumnWriter

                    col = self._coded.get(f"{kind}/{name}")
                    if col is None:
                        col = self._coded[f"{kind}/{name}"] = CodecColumnWriter(codec, arr.shape[1:], arr.dtype)
                    col.append(start, arr[:n], None if row_keys is None else row_keys[:n])
                    continue
                self._dataset(kind, name, arr, end)
                full = f"{kind}/{name}"
                direct = self._direct.get(full)
                if direct is not None:
                    if direct.chunks * direct.chunk_rows + direct.fill != start:  # rows skipped: fill zeros
                        gap = start - (direct.chunks * direct.chunk_rows + direct.fill)
                        direct.append(np.zeros((gap, *arr.shape[1:]), dtype=arr.dtype))
                    direct.append(arr[:n])
                    self.nbytes += arr[:n].nbytes
                    continue
                data = arr[:n]
                pend = self._pending.setdefault(full, [start, 0, []])
                if pend[0] + pend[1] != start:  # rows skipped for this column: write what is pending first
                    self._write_pending(full)
                    pend = self._pending.setdefault(full, [start, 0, []])
                pend[1] += n
                if pend[1] >= _BATCH_ROWS or pend[1] * max(1, data[:1].nbytes) >= _CHUNK_BYTES * 4:
                    pend[2].append(data)  # written before this call returns: no copy needed
                    self._write_pending(full)
                else:
                    pend[2].append(data.copy())  # the block's arrays go back to the user's pool after this call
                self.nbytes += data.nbytes if data.dtype.kind != 'O' else 16 * n
        self.rows[kind] = end
        return start

    def _write_pending(self, full: str) -> None:
        """Write a small-row column's buffered rows with one h5py call (h5py holds the GIL while it
        writes, so few large writes keep the user's thread running)."""
        pend = self._pending.pop(full, None)
        if not pend or not pend[1]:
            return
        start, n, parts = pend
        ds, end = self._ds[full], start + n
        if self._cap[full] < end:
            cap = max(end, self._cap[full] * 2)
            ds.resize(cap, axis=0)
            self._cap[full] = cap
        data = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if data.dtype.kind == "O":
            ds[start:end] = data
        else:  # 3-7x faster than __setitem__ (measured)
            ds.write_direct(np.ascontiguousarray(data), dest_sel=np.s_[start:end])

    def add_segment(self, key: int, obs_start: int, obs_n: int, step_start: int, step_n: int) -> None:
        last = self.segments[-1] if self.segments else None
        if (
            last is not None and last[0] == key
            and last[1] + last[2] == obs_start and last[3] + last[4] == step_start
        ):
            last[2] += obs_n
            last[4] += step_n
        else:
            self.segments.append([key, obs_start, obs_n, step_start, step_n])
            self.n_segments += 1

    def add_segments(self, rows: np.ndarray, obs0: int, step0: int) -> None:
        """Add many segments at once: int64 rows ``(key, obs_start, obs_n, step_start, step_n)`` relative
        to the block written at ``obs0`` / ``step0`` (kept as an array: no Python object per segment)."""
        if not len(rows):
            return
        self._seal_lists()
        rows = np.array(rows, dtype=np.int64, copy=True)
        rows[:, 1] += obs0
        rows[:, 3] += step0
        self._seg_blocks.append(rows)
        self.n_segments += len(rows)

    def add_episode_end(self, key: int, length: int, ret: float, flags: int, meta: dict[str, Any]) -> None:
        self.ended.append((key, length, ret, flags, *episode_meta_json(meta)))
        self.n_ended += 1

    def add_episode_ends(self, keys: np.ndarray, lengths: np.ndarray, returns: np.ndarray, flags: np.ndarray,
                         meta_json: np.ndarray, times: np.ndarray | None = None) -> None:
        """Add many finished episodes at once (columns; ``meta_json`` an object array of JSON strings, or of
        metadata dicts split here, in the writer thread, by :func:`episode_meta_json`; ``times`` (n, 2)
        wall-clock start and end, NaN where not known)."""
        n = len(keys)
        if not n:
            return
        self._seal_lists()
        t = np.full((n, 2), np.nan) if times is None else np.array(times, dtype=np.float64).reshape(n, 2)
        if any(type(m) is not str for m in meta_json):  # metadata dicts (the row path)
            texts = []
            for j, m in enumerate(meta_json):
                if type(m) is str:
                    texts.append(m)
                else:
                    text, a, b = episode_meta_json(m)
                    texts.append(text)
                    t[j, 0] = a if a == a else t[j, 0]
                    t[j, 1] = b if b == b else t[j, 1]
            meta_json = texts
        self._end_blocks.append((np.asarray(keys, np.int64), np.asarray(lengths, np.int64),
                                 np.asarray(returns, np.float64), np.asarray(flags, np.uint8),
                                 np.asarray(meta_json, dtype=object), t))
        self.n_ended += n

    def _seal_lists(self) -> None:
        """Move list-held segments / episode ends into the block lists (keeps their order)."""
        if self.segments:
            self._seg_blocks.append(np.asarray(self.segments, dtype=np.int64).reshape(-1, _SEG_COLS))
            self.segments = []
        if self.ended:
            e = self.ended
            self._end_blocks.append((np.asarray([x[0] for x in e], np.int64), np.asarray([x[1] for x in e], np.int64),
                                     np.asarray([x[2] for x in e], np.float64), np.asarray([x[3] for x in e], np.uint8),
                                     np.asarray([x[4] for x in e], dtype=object),
                                     np.array([x[5:7] for x in e], dtype=np.float64).reshape(-1, 2)))
            self.ended = []

    # -- finish ----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Trim columns to their row counts, write the index and close the file."""
        f = self.file
        for full, ds in self._ds.items():
            kind = full.split("/", 1)[0]
            direct = self._direct.get(full)
            if direct is not None:
                have = direct.chunks * direct.chunk_rows + direct.fill
                if have < self.rows[kind]:
                    direct.append(np.zeros((self.rows[kind] - have, *ds.shape[1:]), dtype=ds.dtype))
                direct.finish(self.rows[kind])
            else:
                self._write_pending(full)
                if ds.shape[0] != self.rows[kind]:
                    ds.resize(self.rows[kind], axis=0)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for full, col in self._coded.items():
            col.finish(f.require_group(f"codec/{full}"), self.rows[full.split("/", 1)[0]])
        self._seal_lists()
        seg = (np.concatenate(self._seg_blocks) if self._seg_blocks else np.zeros((0, _SEG_COLS), np.int64))
        f.create_dataset("index/segments", data=seg)
        cols = list(zip(*self._end_blocks)) if self._end_blocks else [[]] * 6
        for name, dt, parts in zip(("key", "length", "return"), (np.int64, np.int64, np.float64), cols[:3]):
            f.create_dataset(f"index/episode_{name}", data=np.concatenate(parts) if parts else np.zeros(0, dt))
        f.create_dataset("index/episode_flags", data=np.concatenate(cols[3]) if cols[3] else np.zeros(0, np.uint8))
        meta = np.concatenate(cols[4]) if cols[4] else np.zeros(0, dtype=object)
        f.create_dataset("index/episode_meta", data=meta, dtype=STR_H5)
        f.create_dataset("index/episode_time", data=np.concatenate(cols[5]) if cols[5] else np.zeros((0, 2)))
        f.attrs["n_obs_rows"] = self.rows["obs"]
        f.attrs["n_step_rows"] = self.rows["step"]
        f.flush()
        f.close()

    def abort(self) -> None:
        """Close without finishing (the file is then not part of the dataset)."""
        for col in self._coded.values():
            col.abort()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            self.file.close()
        except Exception:  # noqa: BLE001 - the file is discarded anyway
            pass


class ShardReader:
    """Read access to one committed shard. Every h5py failure becomes a :class:`DatasetFormatError`
    naming the file."""

    def __init__(self, path: Path | str) -> None:
        from gym_aquacollect.storage.safety import check_contained, check_regular

        self.path = Path(path)
        self.file = None
        try:
            check_regular(self.path, "shard file (listed in a manifest)")
            self.file = h5py.File(self.path, "r", rdcc_nbytes=16 << 20)
            check_contained(self.file, self.path)
            idx = self.file["index"]
            self.columns = {kind: self._walk(kind) for kind in ("obs", "step")}
            if "codec" in self.file:  # coded columns (video) look like datasets with dtype / shape
                from gym_aquacollect.storage.codecs import CodecColumnReader

                for kind in ("obs", "step"):
                    for name, ds in self._walk_group(f"codec/{kind}", "rows").items():
                        self.columns[kind][name] = CodecColumnReader(ds.parent)
            self._check_shapes(idx)
            self.segments = np.asarray(idx["segments"][()], dtype=np.int64).reshape(-1, _SEG_COLS)
            self.episode_key = np.asarray(idx["episode_key"][()], dtype=np.int64).reshape(-1)
            self.episode_length = np.asarray(idx["episode_length"][()], dtype=np.int64).reshape(-1)
            self.episode_return = np.asarray(idx["episode_return"][()], dtype=np.float64).reshape(-1)
            self.episode_flags = np.asarray(idx["episode_flags"][()], dtype=np.uint8).reshape(-1)
            self._meta_ds = idx["episode_meta"]
            #: (E, 2) wall-clock t_start / t_end per episode, NaN where unknown; None for older shards (then
            #: the times are inside the metadata JSON)
            self.episode_time = (np.asarray(idx["episode_time"][()], dtype=np.float64)
                                 if "episode_time" in idx else None)
            self._check_index()
        except DatasetFormatError:
            self.close()
            raise
        except FileNotFoundError:
            self.close()
            raise DatasetFormatError(f"{self.path}: shard file is missing (listed in a manifest)") from None
        except (OSError, KeyError, ValueError, RuntimeError, TypeError, OverflowError) as e:
            self.close()
            raise DatasetFormatError(
                f"{self.path}: shard file is corrupt or truncated ({type(e).__name__}: {e}). "
                "Run `aquacollect validate` on the dataset; other shards stay readable."
            ) from None

    def _rows_attr(self, kind: str) -> int:
        v = self.file.attrs.get(f"n_{kind}_rows")
        if v is None:
            raise DatasetFormatError(f"{self.path}: attribute n_{kind}_rows is missing; the shard is corrupt")
        try:
            n = int(np.asarray(v).reshape(()))
        except (TypeError, ValueError, OverflowError):
            raise DatasetFormatError(f"{self.path}: attribute n_{kind}_rows is {v!r}, not a count") from None
        if n < 0:
            raise DatasetFormatError(f"{self.path}: attribute n_{kind}_rows is negative ({n})")
        return n

    def _check_shapes(self, idx: h5py.Group) -> None:
        """Before anything is read: every column is as long as the shard's row count, no shape is absurd,
        the index tables have matching lengths."""
        from gym_aquacollect.storage.safety import check_column_shape

        self.n_rows = {kind: self._rows_attr(kind) for kind in ("obs", "step")}
        for kind, cols in self.columns.items():
            for name, ds in cols.items():
                check_column_shape(ds, self.path, f"{kind}/{name}")
                if not ds.shape or ds.shape[0] != self.n_rows[kind]:
                    raise DatasetFormatError(
                        f"{self.path}: column {kind}/{name} has shape {ds.shape} but the shard holds "
                        f"{self.n_rows[kind]} {kind} rows; the shard is corrupt")
        for name in ("segments", "episode_key", "episode_length", "episode_return", "episode_flags",
                     "episode_meta"):
            ds = idx[name]
            if not isinstance(ds, h5py.Dataset):
                raise DatasetFormatError(f"{self.path}: index/{name} is not a dataset; the shard is corrupt")
            check_column_shape(ds, self.path, f"index/{name}")
            want_kind = "O" if name == "episode_meta" else ("f" if name == "episode_return" else "iu")
            if ds.dtype.kind not in want_kind and not (name == "episode_return" and ds.dtype.kind in "iu"):
                raise DatasetFormatError(f"{self.path}: index/{name} has dtype {ds.dtype}; the shard is corrupt")
        seg = idx["segments"]
        if seg.ndim != 2 or seg.shape[1] != _SEG_COLS:
            raise DatasetFormatError(f"{self.path}: index/segments has shape {seg.shape}, expected (S, {_SEG_COLS})")
        n_ep = {name: idx[name].shape for name in ("episode_key", "episode_length", "episode_return",
                                                   "episode_flags", "episode_meta")}
        if len(set(n_ep.values())) != 1 or len(next(iter(n_ep.values()))) != 1:
            raise DatasetFormatError(f"{self.path}: the episode index tables have shapes {n_ep}; they must be "
                                     "one-dimensional and equally long; the shard is corrupt")
        if "episode_time" in idx:
            ds = idx["episode_time"]
            if not isinstance(ds, h5py.Dataset) or ds.dtype.kind != "f" or ds.shape != (n_ep["episode_key"][0], 2):
                raise DatasetFormatError(
                    f"{self.path}: index/episode_time is {getattr(ds, 'dtype', type(ds).__name__)} "
                    f"{getattr(ds, 'shape', '')}; expected float ({n_ep['episode_key'][0]}, 2); the shard is corrupt")

    def _check_index(self) -> None:
        """Segments lie inside the columns; episode lengths are not negative (cheap: index only)."""
        seg = self.segments
        if len(seg):
            n_obs, n_step = self.n_rows["obs"], self.n_rows["step"]
            o0, on, s0, sn = seg[:, 1], seg[:, 2], seg[:, 3], seg[:, 4]
            bad = ((o0 < 0) | (on < 0) | (s0 < 0) | (sn < 0) | (o0 > n_obs) | (on > n_obs - o0)
                   | (s0 > n_step) | (sn > n_step - s0))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DatasetFormatError(
                    f"{self.path}: index segment {i} {seg[i].tolist()} (key, obs start, obs count, step start, "
                    f"step count) lies outside the shard's {n_obs} observation / {n_step} step rows; the shard is "
                    "corrupt. Run `aquacollect validate`.")
        if len(self.episode_length) and int(self.episode_length.min()) < 0:
            raise DatasetFormatError(f"{self.path}: index/episode_length holds a negative length; the shard is corrupt")

    def _walk(self, kind: str) -> dict[str, h5py.Dataset]:
        out: dict[str, h5py.Dataset] = {}
        if kind not in self.file:
            return out
        if not isinstance(self.file[kind], h5py.Group):
            raise DatasetFormatError(f"{self.path}: /{kind} is not a group; the shard is corrupt")

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                out[name] = obj

        self.file[kind].visititems(visit)
        return out

    def _walk_group(self, where: str, leaf: str) -> dict[str, h5py.Dataset]:
        out: dict[str, h5py.Dataset] = {}
        if where not in self.file:
            return out

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and name.rsplit("/", 1)[-1] == leaf:
                out[name.rsplit("/", 1)[0]] = obj

        self.file[where].visititems(visit)
        return out

    def episode_meta(self, i: int) -> dict[str, Any]:
        try:
            raw = self._meta_ds[i]
            meta = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        except (ValueError, TypeError, RecursionError, OSError, RuntimeError) as e:
            raise DatasetFormatError(f"{self.path}: episode metadata row {i} is unreadable "
                                     f"({type(e).__name__}: {str(e)[:200]}); the shard is corrupt") from None
        if not isinstance(meta, dict):
            raise DatasetFormatError(f"{self.path}: episode metadata row {i} is {type(meta).__name__}, not a JSON "
                                     "object; the shard is corrupt")
        if self.episode_time is not None:
            for key, t in zip(_TIME_KEYS, self.episode_time[i].tolist()):
                if t == t and key not in meta:
                    meta[key] = t
        return meta

    def read(self, kind: str, name: str, start: int, count: int) -> np.ndarray:
        try:
            ds = self.columns[kind][name]
            if getattr(ds, "codec", None) is not None:
                from gym_aquacollect.storage.codecs import LazyFrames

                return LazyFrames([(ds, start, count)])  # type: ignore[return-value]
            if ds.dtype.kind == "O":
                return np.asarray(ds.asstr()[start:start + count], dtype=object)
            return ds[start:start + count]
        except (OSError, ValueError, RuntimeError) as e:
            raise DatasetFormatError(
                f"{self.path}: cannot read column {kind}/{name} rows {start}..{start + count} "
                f"({type(e).__name__}: {e}); the shard is corrupt"
            ) from None

    def close(self) -> None:
        if self.file is None:
            return
        try:
            self.file.close()
        except Exception:  # noqa: BLE001
            pass
