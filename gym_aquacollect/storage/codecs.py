"""Per-column storage codecs: image columns kept as video inside the shards, with random access.

Contents:
    * :class:`ColumnCodec` - the public interface a column codec implements (``name``, ``to_json``,
      ``check_space``, ``new_stream_writer``, ``decode``); :func:`codec_from_json` rebuilds one from its JSON.
    * :class:`VideoCodec` - image observations as video streams (AV1 by default, LeRobot's settings;
      ``VideoCodec.lossless()`` is FFV1: bit-exact).
    * :func:`resolve_codecs` - map ``{"camera": VideoCodec(...)}`` (observation keys) to shard column names,
      checking the spaces in the caller's thread.
    * :class:`CodecColumnWriter` / :class:`CodecColumnReader` - how :mod:`.shard` stores and reads such a
      column; :class:`LazyFrames` - what an episode's coded column is: an array-like that decodes only
      the frames indexed (one GOP per frame), or everything on ``np.asarray``.

Storage in a shard, for a column ``obs/<name>`` with a codec::

    /codec/obs/<name>/blob      uint8 (bytes,)  the encoded streams, one after the other
    /codec/obs/<name>/streams   int64 (S, 3)    byte offset, byte length, frames of each stream
    /codec/obs/<name>/rows      int64 (N, 2)    stream and frame of every obs row (-1: no frame, zeros)
    attrs: codec (JSON settings), dtype, row_shape

Each episode segment in a shard is one stream (so a vector env's sub-envs each get their own stream);
an episode that spans shards continues in a new stream in the next shard. Streams are encoded by the
writer thread as rows arrive (PyAV releases the GIL while encoding) and written when the shard is
committed: a crash loses what an uncommitted shard held, as for every other column.

Example:
    >>> import tempfile, numpy as np, gymnasium as gym
    >>> from gymnasium import spaces
    >>> from gym_aquacollect import CollectingWrapper, load_dataset
    >>> class Cam(gym.Env):
    ...     observation_space = spaces.Dict({"camera": spaces.Box(0, 255, (32, 48, 3), np.uint8)})
    ...     action_space = spaces.Discrete(2)
    ...     def reset(self, *, seed=None, options=None):
    ...         self.t = 0
    ...         return {"camera": np.full((32, 48, 3), 0, np.uint8)}, {}
    ...     def step(self, a):
    ...         self.t += 1
    ...         return {"camera": np.full((32, 48, 3), 10 * self.t, np.uint8)}, 1.0, self.t == 5, False, {}
    >>> path = tempfile.mkdtemp() + "/cam"
    >>> with CollectingWrapper(Cam(), path, codecs={"camera": VideoCodec.lossless()}) as env:
    ...     _ = env.reset(seed=0)
    ...     for _ in range(5):
    ...         _ = env.step(0)
    >>> frames = load_dataset(path)[0].observations["camera"]
    >>> type(frames).__name__, frames.shape, int(frames[3][0, 0, 0])
    ('LazyFrames', (6, 32, 48, 3), 30)
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

from gym_aquacollect.storage.manifest import DatasetFormatError
from gym_aquacollect.storage.video import (
    VideoError,
    VideoSettings,
    VideoStreamWriter,
    check_frame_shape,
    decode_frames,
)

__all__ = ["ColumnCodec", "VideoCodec", "codec_from_json", "resolve_codecs", "CodecColumnWriter",
           "CodecColumnReader", "LazyFrames", "CODEC_GROUP"]

CODEC_GROUP = "codec"
_RATE = 30  # the nominal frame rate inside stored streams (frames are addressed by index)


class ColumnCodec:
    """Interface of a per-column storage codec (subclass it; :class:`VideoCodec` is the built-in one).

    A codec encodes the rows of one column, one stream per episode segment, in the writer thread, and
    decodes any row range back. Its settings are JSON (``to_json``), stored in ``aquacollect.json`` and in
    every shard, and ``codec_from_json`` rebuilds it for reading.
    """

    name: str = ""

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def check_space(self, space: spaces.Space, where: str) -> None:
        """Raise ValueError (naming ``where``) unless rows of ``space`` can be coded."""
        raise NotImplementedError

    def new_stream_writer(self, fileobj: io.BytesIO, row_shape: tuple[int, ...]) -> Any:
        """An object with ``write(rows)`` and ``close()`` that encodes into ``fileobj``."""
        raise NotImplementedError

    def decode(self, stream: Any, start: int, count: int, row_shape: tuple[int, ...]) -> np.ndarray:
        """Rows ``start .. start + count - 1`` of one stream (``stream``: a seekable binary file object)."""
        raise NotImplementedError


class VideoCodec(ColumnCodec):
    """Image rows ``(H, W, C)`` uint8 (``C`` in 1, 3, 4) stored as video.

    Args:
        vcodec: ``"libsvtav1"`` (AV1, default), ``"libx264"`` / ``"h264"`` or ``"ffv1"`` (lossless).
        crf: quality (lower is better); 30 is LeRobot's default.
        gop: keyframe interval; reading one frame decodes at most ``gop`` frames.
        preset: encoder speed preset (SVT-AV1 12 by default, as LeRobot).

    Lossy settings return frames close to, not equal to, the recorded ones (see the README's video
    figures); ``VideoCodec.lossless()`` returns them bit-exact.

    Example:
        >>> VideoCodec().to_json()["vcodec"], VideoCodec.lossless().is_lossless
        ('libsvtav1', True)
    """

    name = "video"

    def __init__(self, vcodec: str = "libsvtav1", crf: int | None = 30, gop: int = 2, preset: int | str | None = 12,
                 **extra: Any) -> None:
        self.settings = VideoSettings(vcodec=vcodec, crf=crf, gop=gop, preset=preset,
                                      pix_fmt="auto" if vcodec == "ffv1" else "yuv420p", extra=dict(extra))

    @classmethod
    def lossless(cls) -> VideoCodec:
        """FFV1 (RGB, grey or RGBA as recorded): bit-exact frames, every frame a keyframe."""
        return cls(vcodec="ffv1", crf=None, gop=1, preset=None)

    @property
    def is_lossless(self) -> bool:
        return self.settings.lossless_codec

    def __repr__(self) -> str:
        s = self.settings
        return f"VideoCodec(vcodec={s.vcodec!r}, crf={s.crf}, gop={s.gop}, preset={s.preset!r})"

    def to_json(self) -> dict[str, Any]:
        return {"codec": self.name, **self.settings.to_json()}

    def check_space(self, space: spaces.Space, where: str) -> None:
        if not (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3):
            raise VideoError(f"{where}: VideoCodec stores uint8 (H, W, C) image columns; the space is {space}")
        check_frame_shape(tuple(space.shape), self.settings, where)

    def new_stream_writer(self, fileobj: io.BytesIO, row_shape: tuple[int, ...]) -> VideoStreamWriter:
        return VideoStreamWriter(fileobj, self.settings, fps=_RATE, shape=tuple(row_shape))  # type: ignore[arg-type]

    def decode(self, stream: Any, start: int, count: int, row_shape: tuple[int, ...]) -> np.ndarray:
        if isinstance(stream, (bytes, bytearray)):
            stream = io.BytesIO(stream)
        return decode_frames(stream, start, count, channels=int(row_shape[2]), fps=_RATE,
                             container_format="matroska" if self.settings.lossless_codec else "mp4")


def codec_from_json(d: Mapping[str, Any]) -> ColumnCodec:
    """Rebuild a codec from its ``to_json()`` (only built-in codec names; nothing is imported by name)."""
    if d.get("codec") == "video":
        s = VideoSettings.from_json(dict(d))
        return VideoCodec(vcodec=s.vcodec, crf=s.crf, gop=s.gop, preset=s.preset, **dict(s.extra))
    raise ValueError(f"unknown column codec {d.get('codec')!r} in the dataset; this gym_aquacollect knows 'video'")


def resolve_codecs(codecs: Mapping[str, ColumnCodec] | None, observation_space: spaces.Space) -> dict[str, ColumnCodec]:
    """``{observation key: codec}`` -> ``{"obs/observations/<key>": codec}``, checking every space.

    Keys are Dict observation keys (nested ones joined with ``/``); ``""`` or ``"observation"`` names a
    non-Dict image observation.
    """
    out: dict[str, ColumnCodec] = {}
    for key, codec in (codecs or {}).items():
        if not isinstance(codec, ColumnCodec):
            raise TypeError(f"codecs[{key!r}] is {type(codec).__name__}; give a ColumnCodec such as VideoCodec()")
        space: Any = observation_space
        parts = [p for p in str(key).split("/") if p] if key not in ("", "observation", "observations") else []
        for p in parts:
            if not isinstance(space, spaces.Dict) or p not in space.spaces:
                known = list(observation_space.spaces) if isinstance(observation_space, spaces.Dict) else []
                raise KeyError(f"codecs: observation key {key!r} does not exist (observation keys: {known})")
            space = space.spaces[p]
        codec.check_space(space, f"codecs[{key!r}]")
        out["obs/observations" + "".join("/" + p for p in parts)] = codec
    return out


# ------------------------------------------------------------------------------------------------
# Shard side
# ------------------------------------------------------------------------------------------------
class CodecColumnWriter:
    """Encodes one coded column of one shard: a stream per episode key, rows mapped to (stream, frame)."""

    def __init__(self, codec: ColumnCodec, row_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.codec, self.row_shape, self.dtype = codec, tuple(row_shape), np.dtype(dtype)
        self._open: dict[int, list] = {}  # key -> [stream id, writer, buffer, frames]
        self._streams: list[list] = []  # [writer, buffer, frames]
        self._rows: list[tuple[int, np.ndarray]] = []  # (start row, int64 (n, 2))

    def append(self, start: int, data: np.ndarray, keys: np.ndarray | None) -> None:
        n = len(data)
        if keys is None:
            keys = np.full(n, -1, np.int64)
        mapping = np.empty((n, 2), np.int64)
        i = 0
        while i < n:
            j = i + 1
            while j < n and keys[j] == keys[i]:
                j += 1
            key = int(keys[i])
            st = self._open.get(key)
            if st is None:
                buf = io.BytesIO()
                st = [len(self._streams), self.codec.new_stream_writer(buf, self.row_shape), buf, 0]
                self._streams.append(st)
                self._open[key] = st
            st[1].write(np.ascontiguousarray(data[i:j]))
            mapping[i:j, 0] = st[0]
            mapping[i:j, 1] = np.arange(st[3], st[3] + (j - i))
            st[3] += j - i
            i = j
        self._rows.append((start, mapping))

    def finish(self, group: Any, n_rows: int) -> None:
        """Close every stream and write blob / streams / rows into ``group`` (an h5py group)."""
        parts, table, off = [], [], 0
        for st in self._streams:
            st[1].close()
            b = st[2].getvalue()
            parts.append(np.frombuffer(b, np.uint8))
            table.append((off, len(b), st[3]))
            off += len(b)
        rows = np.full((n_rows, 2), -1, np.int64)
        for start, m in self._rows:
            rows[start:start + len(m)] = m[: max(0, n_rows - start)]
        group.create_dataset("blob", data=np.concatenate(parts) if parts else np.zeros(0, np.uint8))
        group.create_dataset("streams", data=np.asarray(table, np.int64).reshape(-1, 3))
        group.create_dataset("rows", data=rows)
        group.attrs["codec"] = json.dumps(self.codec.to_json())
        group.attrs["dtype"] = self.dtype.str
        group.attrs["row_shape"] = list(self.row_shape)

    def abort(self) -> None:
        for st in self._streams:
            try:
                st[1].close()
            except Exception:  # noqa: BLE001 - discarded anyway
                pass


class CodecColumnReader:
    """Read side of a coded column; looks like an h5py dataset (``dtype``, ``shape``) to the reader.

    Everything it reads from the shard is checked before use (a dataset may come from a stranger): the
    codec must be a built-in one, frames uint8 ``(H, W, C)`` of a sane size, the ``rows``/``streams`` index
    tables two-dimensional with declared sizes the file can hold (they are read on first use, not when the
    shard opens), stream extents inside the blob; a stream that does not decode raises
    :class:`~gym_aquacollect.storage.manifest.DatasetFormatError` naming the file.
    """

    def __init__(self, group: Any) -> None:
        from .safety import check_column_shape

        self.group = group
        self.path = str(group.file.filename)
        where = f"{self.path}: coded column {group.name}"
        try:
            self.codec = codec_from_json(json.loads(group.attrs["codec"]))
            self.dtype = np.dtype(str(group.attrs["dtype"]))
            self.row_shape = tuple(int(x) for x in group.attrs["row_shape"])
        except (KeyError, TypeError, ValueError, RecursionError) as e:
            raise DatasetFormatError(f"{where} has unreadable codec attributes ({type(e).__name__}: {e})") from None
        if self.dtype != np.uint8 or len(self.row_shape) != 3 or self.row_shape[2] not in (1, 3, 4) or not (
                0 < self.row_shape[0] <= 1 << 14 and 0 < self.row_shape[1] <= 1 << 14):
            raise DatasetFormatError(f"{where} declares frames {self.dtype} {self.row_shape}; coded columns hold "
                                     "uint8 (H, W, C) frames, C in 1/3/4, sides up to 16384")
        self._rows_ds, self._streams_ds, self._blob = group["rows"], group["streams"], group["blob"]
        for name, ds, cols in (("rows", self._rows_ds, 2), ("streams", self._streams_ds, 3)):
            check_column_shape(ds, self.path, f"{group.name}/{name}")
            if ds.ndim != 2 or ds.shape[1] != cols or ds.dtype.kind not in "iu":
                raise DatasetFormatError(f"{where}: {name} table has shape {ds.shape} dtype {ds.dtype}, expected "
                                         f"(N, {cols}) integers")
        if self._blob.ndim != 1 or self._blob.dtype != np.uint8:
            raise DatasetFormatError(f"{where}: blob has shape {self._blob.shape} dtype {self._blob.dtype}")
        self.shape = (int(self._rows_ds.shape[0]), *self.row_shape)
        self._rows: np.ndarray | None = None
        self._streams: np.ndarray | None = None

    @property
    def rows(self) -> np.ndarray:
        """``(stream, frame)`` of every shard row (read on first use)."""
        if self._rows is None:
            self._rows = np.asarray(self._rows_ds[()], dtype=np.int64)
        return self._rows

    @property
    def streams(self) -> np.ndarray:
        """``(offset, length, frames)`` of every stream in the blob (read and checked on first use)."""
        if self._streams is None:
            st = np.asarray(self._streams_ds[()], dtype=np.int64)
            n = int(self._blob.shape[0])
            if len(st) and ((st[:, 0] < 0) | (st[:, 1] < 0) | (st[:, 0] > n) | (st[:, 1] > n - st[:, 0])).any():
                raise DatasetFormatError(f"{self.path}: coded column {self.group.name} lists a stream outside its "
                                         f"{n}-byte blob; the shard is corrupt")
            self._streams = st
        return self._streams

    def _stream(self, s: int) -> io.RawIOBase:
        if not 0 <= s < len(self.streams):
            raise DatasetFormatError(f"{self.path}: coded column {self.group.name} row names stream {s} of "
                                     f"{len(self.streams)}; the shard is corrupt")
        off, n, _ = (int(x) for x in self.streams[s])
        return _DatasetSlice(self._blob, off, n)

    def decode_rows(self, rows: np.ndarray) -> np.ndarray:
        """The given shard rows (any order), decoding consecutive frames of a stream together."""
        out = np.zeros((len(rows), *self.row_shape), self.dtype)
        if not len(rows):
            return out
        m = self.rows[rows]
        order = np.lexsort((m[:, 1], m[:, 0]))
        i = 0
        while i < len(order):
            s = m[order[i], 0]
            if s < 0:
                i += 1
                continue
            j = i + 1
            while j < len(order) and m[order[j], 0] == s and m[order[j], 1] <= m[order[j - 1], 1] + 1:
                j += 1
            f0, f1 = int(m[order[i], 1]), int(m[order[j - 1], 1])
            try:
                frames = self.codec.decode(self._stream(int(s)), f0, f1 - f0 + 1, self.row_shape)
            except DatasetFormatError:
                raise
            except Exception as e:  # noqa: BLE001 - FFmpeg/PyAV raise many kinds for bad bytes
                raise DatasetFormatError(
                    f"{self.path}: coded column {self.group.name}, stream {int(s)} frames {f0}..{f1} do not decode "
                    f"({type(e).__name__}: {e}); the shard is corrupt. Run `aquacollect validate`.") from None
            if frames.shape[1:] != self.row_shape:
                raise DatasetFormatError(f"{self.path}: coded column {self.group.name}, stream {int(s)} decodes to "
                                         f"frames {frames.shape[1:]}, not the declared {self.row_shape}")
            for k in order[i:j]:
                out[k] = frames[int(m[k, 1]) - f0]
            i = j
        return out


class _DatasetSlice(io.RawIOBase):
    """A read-only, seekable file over bytes ``[offset, offset + length)`` of a 1-D uint8 HDF5 dataset: the
    decoder reads the container index and the GOP it needs, not the whole stream."""

    def __init__(self, ds: Any, offset: int, length: int) -> None:
        self.ds, self.offset, self.length, self.pos = ds, offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = max(0, {0: pos, 1: self.pos + pos, 2: self.length + pos}[whence])
        return self.pos

    def readinto(self, b: Any) -> int:
        n = max(0, min(len(b), self.length - self.pos))
        if n:
            a = self.offset + self.pos
            b[:n] = self.ds[a:a + n].tobytes()
            self.pos += n
        return n


class LazyFrames:
    """The frames of a coded column over some rows: indexing decodes only what it returns.

    ``frames[t]`` decodes one frame (at most one GOP), ``frames[a:b]`` that range, ``np.asarray(frames)``
    everything. ``len``, ``shape``, ``dtype`` and ``ndim`` need no decoding.
    """

    lazy_frames = True

    def __init__(self, parts: list[tuple[CodecColumnReader, int, int]]) -> None:
        self.parts = [p for p in parts if p[2] > 0]
        self._n = sum(p[2] for p in self.parts)
        first = parts[0][0]
        self.dtype, self.row_shape = first.dtype, first.row_shape

    @classmethod
    def concat(cls, items: list[LazyFrames]) -> LazyFrames:
        return cls([p for it in items for p in it.parts])

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._n, *self.row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    def __len__(self) -> int:
        return self._n

    def _decode(self, idx: np.ndarray) -> np.ndarray:
        out = np.zeros((len(idx), *self.row_shape), self.dtype)
        base = 0
        for col, start, count in self.parts:
            sel = np.flatnonzero((idx >= base) & (idx < base + count))
            if len(sel):
                out[sel] = col.decode_rows(start + idx[sel] - base)
            base += count
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            head, rest = key[0], key[1:]
            return self[head][(slice(None),) * (0 if np.isscalar(head) else 1) + rest] if rest else self[head]
        if isinstance(key, (int, np.integer)):
            i = int(key) + (self._n if key < 0 else 0)
            if not 0 <= i < self._n:
                raise IndexError(f"frame {key} out of range for {self._n} frames")
            return self._decode(np.asarray([i]))[0]
        if isinstance(key, slice):
            return self._decode(np.arange(self._n)[key])
        idx = np.asarray(key)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return self._decode(np.where(idx < 0, idx + self._n, idx).astype(np.int64))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self._decode(np.arange(self._n))
        return a if dtype is None else a.astype(dtype, copy=False)

    def __iter__(self):
        return iter(np.asarray(self))

    def __repr__(self) -> str:
        return f"LazyFrames(shape={self.shape}, dtype={self.dtype})"
