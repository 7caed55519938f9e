"""Video streams for image columns: encoder settings, writing frames, decoding frames back (PyAV).

Contents:
    * :class:`VideoSettings` - codec, quality, keyframe interval (GOP) and pixel format of one stream; the
      defaults are LeRobot's (AV1 with SVT-AV1, ``crf=30``, a keyframe every 2 frames, ``yuv420p``).
      ``VideoSettings.lossless()`` is FFV1 in RGB: bit-exact frames.
    * :func:`check_frame_shape` - whether frames of a shape can be encoded with the settings (raises
      :class:`VideoError` naming the column and saying what to do).
    * :class:`VideoStreamWriter` - append ``(H, W, C)`` uint8 frames to one stream in one file.
    * :func:`decode_frames` - frames ``[start, start + count)`` of a stream, seeking to the keyframe before
      ``start`` (one GOP decoded, not the whole file).
    * :func:`require_av` - import PyAV or raise an ImportError saying which extra to install.

Frames are ``(H, W, C)`` uint8 with ``C`` in 1 (grey), 3 (RGB) or 4 (RGBA). Lossy settings use 4:2:0
chroma: grey frames are stored as the luma plane (exact up to the codec's quantisation), an alpha channel
is not stored by lossy codecs (:func:`check_frame_shape` refuses RGBA unless ``drop_alpha=True``).
FFV1 (lossless) keeps every channel, alpha included.

Example:
    >>> import tempfile, numpy as np
    >>> frames = np.random.default_rng(0).integers(0, 256, (5, 16, 20, 3), dtype=np.uint8)
    >>> path = tempfile.mkdtemp() + "/cam.mkv"
    >>> with VideoStreamWriter(path, VideoSettings.lossless(), fps=30, shape=frames.shape[1:]) as w:
    ...     w.write(frames)
    >>> back = decode_frames(path, 2, 3, channels=3, container_format="matroska")
    >>> back.shape, bool((back == frames[2:5]).all())
    ((3, 16, 20, 3), True)
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["VideoSettings", "VideoError", "VideoStreamWriter", "decode_frames", "check_frame_shape", "require_av",
           "LOSSLESS_CODECS", "DECODE_STATS"]

#: Frames decoded by :func:`decode_frames` in this process (what random access costs; bench and tests read it).
DECODE_STATS = {"frames": 0, "calls": 0}
#: Codecs whose frames come back bit-exact.
LOSSLESS_CODECS = ("ffv1",)
#: Names accepted for H.264 (PyAV's ``h264`` encoder is libx264).
_ALIASES = {"h264": "libx264", "av1": "libsvtav1"}


class VideoError(ValueError):
    """Frames cannot be encoded with the requested settings (the message names the column and the fix)."""


def require_av() -> Any:
    """``import av`` or an ImportError saying how to install it."""
    try:
        import av
    except ImportError as e:  # pragma: no cover - av is in the lerobot / video extras
        raise ImportError("video columns and LeRobot export/import need PyAV: "
                          "pip install 'gym_aquacollect[lerobot]' (av, pyarrow)") from e
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration to stderr otherwise
    return av


@dataclass(frozen=True)
class VideoSettings:
    """Encoder settings of one video stream (stored with the data so readers know what was done).

    Args:
        vcodec: ``"libsvtav1"`` (AV1, default), ``"libx264"`` / ``"h264"`` (H.264) or ``"ffv1"`` (lossless).
        crf: constant rate factor (quality; lower is better, ignored by FFV1).
        gop: keyframe interval in frames: random access decodes at most ``gop`` frames.
        preset: encoder speed preset (SVT-AV1: 0-13, default 12 as LeRobot; x264: a name such as
            ``"veryfast"``); None for the encoder's default.
        pix_fmt: ``"yuv420p"`` (lossy default); FFV1 picks an RGB / grey format itself.
        extra: further encoder options passed to FFmpeg as strings.

    Example:
        >>> VideoSettings().encoder_options()
        {'g': '2', 'crf': '30', 'preset': '12'}
        >>> VideoSettings.lossless().lossless_codec
        True
    """

    vcodec: str = "libsvtav1"
    crf: int | None = 30
    gop: int = 2
    preset: int | str | None = 12
    pix_fmt: str = "yuv420p"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vcodec", _ALIASES.get(self.vcodec, self.vcodec))
        if self.vcodec == "libx264" and self.preset == 12:
            object.__setattr__(self, "preset", None)
        if int(self.gop) < 1:
            raise VideoError(f"gop={self.gop}: the keyframe interval must be >= 1 frame")

    @classmethod
    def lossless(cls) -> VideoSettings:
        """FFV1 in RGB (or grey / RGBA): frames come back bit-exact; every frame is a keyframe."""
        return cls(vcodec="ffv1", crf=None, gop=1, preset=None, pix_fmt="auto")

    @property
    def lossless_codec(self) -> bool:
        return self.vcodec in LOSSLESS_CODECS

    @property
    def container(self) -> str:
        """File suffix: FFV1 goes in Matroska, the others in MP4 (what LeRobot and players read)."""
        return ".mkv" if self.lossless_codec else ".mp4"

    def encoder_options(self) -> dict[str, str]:
        opts: dict[str, str] = {"g": str(int(self.gop))}
        if self.crf is not None and not self.lossless_codec:
            opts["crf"] = str(self.crf)
        if self.preset is not None and self.vcodec in ("libsvtav1", "libx264"):
            opts["preset"] = str(self.preset)
        if self.lossless_codec:
            opts["level"] = "3"
        opts.update({str(k): str(v) for k, v in self.extra.items()})
        return opts

    def stream_pix_fmt(self, channels: int) -> str:
        if self.lossless_codec:
            return {1: "gray", 3: "bgr0", 4: "bgra"}[channels]
        return self.pix_fmt

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["encoder_options"] = self.encoder_options()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VideoSettings:
        return cls(**{k: d[k] for k in ("vcodec", "crf", "gop", "preset", "pix_fmt", "extra") if k in d})


def check_frame_shape(shape: tuple[int, ...], settings: VideoSettings, where: str, *,
                      drop_alpha: bool = False) -> None:
    """Raise :class:`VideoError` unless ``(H, W, C)`` frames can be encoded with ``settings``.

    Guards measured with PyAV 15.1 wheels: 4:2:0 codecs need even sizes, and SVT-AV1 needs a width of at
    least 32 and a height of at least 8 (smaller frames crash the encoder with SIGFPE, killing the process).
    """
    av = require_av()
    try:
        av.codec.Codec(settings.vcodec, "w")
    except Exception:  # noqa: BLE001 - PyAV raises several types for unknown codecs
        raise VideoError(f"{where}: this PyAV build has no {settings.vcodec!r} encoder; use libsvtav1, "
                         "libx264 or ffv1") from None
    if len(shape) != 3 or shape[2] not in (1, 3, 4):
        raise VideoError(f"{where}: frames of shape {tuple(shape)} are not (H, W, C) images with C in 1, 3, 4")
    h, w, c = (int(x) for x in shape)
    if settings.lossless_codec:
        return
    if c == 4 and not drop_alpha:
        raise VideoError(f"{where}: RGBA frames {tuple(shape)}: lossy video ({settings.vcodec}) cannot store the "
                         "alpha channel; use VideoSettings.lossless() (ffv1) or drop_alpha=True")
    if h % 2 or w % 2:
        raise VideoError(f"{where}: frame size {h}x{w} is odd; {settings.pix_fmt} video needs even height and "
                         "width (crop or pad the frames, or use the lossless ffv1 codec)")
    if settings.vcodec == "libsvtav1" and (w < 32 or h < 8):
        raise VideoError(f"{where}: frame size {h}x{w} is below SVT-AV1's minimum (width >= 32, height >= 8); "
                         "use vcodec='libx264' or the lossless ffv1 codec")


def _to_av_frame(av: Any, frame: np.ndarray, channels: int, lossless: bool) -> Any:
    if channels == 1:
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[..., 0]), format="gray")
    if channels == 4:
        if lossless:
            return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgba")
        frame = frame[..., :3]
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")


class VideoStreamWriter:
    """Encode ``(H, W, C)`` uint8 frames into one video stream of one file (``path`` or a binary file object).

    Frame ``i`` (counting every frame written) gets the presentation time ``i / fps`` seconds. The file is
    complete once :meth:`close` returns (use it as a context manager).
    """

    def __init__(self, path: str | os.PathLike | Any, settings: VideoSettings, *, fps: int | Fraction,
                 shape: tuple[int, int, int], where: str = "video", drop_alpha: bool = False,
                 container_format: str | None = None) -> None:
        av = require_av()
        check_frame_shape(tuple(shape), settings, where, drop_alpha=drop_alpha)
        self._av = av
        self.settings, self.shape, self.where = settings, tuple(int(x) for x in shape), where
        self.frames = 0
        target = str(path) if isinstance(path, (str, os.PathLike)) else path
        fmt = container_format or ("matroska" if settings.lossless_codec else "mp4")
        self._container = av.open(target, "w", format=fmt)
        s = self._container.add_stream(settings.vcodec, rate=Fraction(fps).limit_denominator(1001),
                                       options=settings.encoder_options())
        s.height, s.width = self.shape[0], self.shape[1]
        s.pix_fmt = settings.stream_pix_fmt(self.shape[2])
        self._stream = s

    def write(self, frames: np.ndarray) -> None:
        """Append frames ``(N, H, W, C)`` (or one ``(H, W, C)`` frame)."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.shape[1:] != self.shape or frames.dtype != np.uint8:
            raise VideoError(f"{self.where}: got frames {frames.dtype}{tuple(frames.shape[1:])}, the stream holds "
                             f"uint8{self.shape}")
        for f in frames:
            vf = _to_av_frame(self._av, f, self.shape[2], self.settings.lossless_codec)
            vf.pts = self.frames
            for packet in self._stream.encode(vf):
                self._container.mux(packet)
            self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoStreamWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _from_av_frame(frame: Any, channels: int) -> np.ndarray:
    if channels == 1:
        return frame.to_ndarray(format="gray")[..., None]
    if channels == 4:
        if frame.format.name in ("bgra", "rgba", "argb", "abgr", "yuva420p"):
            return frame.to_ndarray(format="rgba")
        rgb = frame.to_ndarray(format="rgb24")
        return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return frame.to_ndarray(format="rgb24")


def decode_frames(source: str | os.PathLike | Any, start: int, count: int, *, channels: int = 3,
                  start_time: float = 0.0, fps: float | None = None, container_format: str = "mp4") -> np.ndarray:
    """Frames ``start .. start + count - 1`` of the first video stream of ``source``, ``(count, H, W, C)`` uint8.

    Frame ``k`` is the one presented at ``start_time + k / fps`` (``fps`` defaults to the stream's rate):
    the reader seeks to the keyframe at or before the first wanted frame and decodes forward from there,
    so one GOP is decoded, not the whole stream.

    Raises:
        VideoError: the stream ends before ``start + count`` frames (the message names the source).

    The container format is named, never guessed from the bytes: a stream from a dataset is data, and
    FFmpeg's guessing would also accept playlists (ffconcat, HLS) that open other files.
    """
    av = require_av()
    out: list[np.ndarray | None] = [None] * count
    if count <= 0:
        return np.zeros((0, 0, 0, channels), np.uint8)
    target = str(source) if isinstance(source, (str, os.PathLike)) else source
    if container_format not in ("mp4", "matroska"):
        raise VideoError(f"{source}: container format {container_format!r} is not one gym_aquacollect reads "
                         "(mp4, matroska)")
    with av.open(target, "r", format=container_format, options={"protocol_whitelist": "file",
                                                                 "enable_drefs": "0"}) as c:
        stream = c.streams.video[0]
        if count > 8:  # frame threads pay off on long runs; a random access wants low latency
            stream.thread_type = "AUTO"
        rate = float(fps) if fps else float(stream.average_rate or stream.base_rate)
        t0 = start_time + start / rate
        tb = stream.time_base
        if t0 > 0:
            # frame `start`'s pts (to the container's rounding): the seek lands on the keyframe of its GOP
            c.seek(max(0, math.floor(t0 / tb + 0.5)), stream=stream, backward=True, any_frame=False)
        got = 0
        DECODE_STATS["calls"] += 1
        for frame in c.decode(stream):
            DECODE_STATS["frames"] += 1
            if frame.pts is None:
                continue
            k = int(round((float(frame.pts * tb) - start_time) * rate)) - start
            if k < 0:
                continue
            if k >= count:
                break
            if out[k] is None:
                out[k] = _from_av_frame(frame, channels)
                got += 1
            if got == count:
                break
    missing = [i + start for i, f in enumerate(out) if f is None]
    if missing:
        name = getattr(source, "name", source)
        raise VideoError(f"{name}: video holds no frame {missing[0]} (wanted frames {start}..{start + count - 1} "
                         f"at {rate:g} fps from t={start_time:.4f}s); the file is truncated or its timestamps differ")
    return np.stack(out)  # type: ignore[arg-type]


def video_path_suffix(settings: VideoSettings) -> str:
    return settings.container


def stream_info(path: str | os.PathLike) -> dict[str, Any]:
    """Codec name, size, pixel format, frame rate and frame count of the file's first video stream."""
    av = require_av()
    with av.open(str(Path(path)), format="mp4", options={"protocol_whitelist": "file", "enable_drefs": "0"}) as c:
        s = c.streams.video[0]
        return {"codec": s.codec_context.name, "height": s.height, "width": s.width, "pix_fmt": s.pix_fmt,
                "fps": float(s.average_rate or s.base_rate), "frames": s.frames}
