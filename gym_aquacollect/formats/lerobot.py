"""LeRobotDataset v3.0: write one from any dataset and read one back, with pyarrow and PyAV (no lerobot import).

Contents:
    * :func:`write_lerobot` - write a LeRobotDataset v3.0 directory (what ``ds.to_lerobot(out)`` and
      ``aquacollect export DIR --format lerobot --out OUT`` call).
    * :func:`read_lerobot` - open a LeRobotDataset v3.0 directory as a
      :class:`~gym_aquacollect.data.memory.MemoryDataset` (``load_dataset(dir)`` uses it).
    * :func:`is_lerobot_dir`, :func:`lerobot_features` (the feature mapping, without writing anything).

Layout written (as lerobot 0.4.4 writes it)::

    meta/info.json              codebase_version "v3.0", fps, features, paths, totals
    meta/stats.json             min/max/mean/std/count/q01/q10/q50/q90/q99 per feature
    meta/tasks.parquet          task (index) -> task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode: frame range, video from/to timestamps
    data/chunk-000/file-000.parquet            one row per frame, all episodes
    videos/<key>/chunk-000/file-000.mp4        one stream per camera, all episodes one after the other

Files roll over to ``file-001`` ... at LeRobot's size limits (100 MB of data, 200 MB of video per file).

Mapping (frame ``t`` of an episode is observation ``o_t``, the action taken in it and what followed):
    * a flat Box (or Discrete, MultiDiscrete, MultiBinary) observation is ``observation.state``; a uint8
      ``(H, W, C)`` Box observation with ``C`` in 1, 3, 4 and ``H, W >= 32`` is the video feature
      ``observation.image`` (smaller uint8 grids, e.g. MiniGrid's 7x7x3, stay exact vector features);
    * in a Dict (or Tuple) observation, image-like leaves become ``observation.images.<key>`` video features
      and the other leaves ``observation.<key>`` (nested keys joined with ``.``); Text leaves are refused;
    * the action is ``action`` (Box flattened, Discrete an int64, Dict/Tuple actions flattened as
      ``gymnasium.spaces.flatten`` does); rewards ``next.reward``; terminations ``next.done`` and
      truncations ``next.truncated`` (booleans);
    * plus LeRobot's ``timestamp`` (``frame_index / fps``), ``frame_index``, ``episode_index``, ``index``
      and ``task_index``.

Fidelity: LeRobot has no slot for an episode's final observation ``o_T``; it is kept for the non-video
features in the episodes table (``aquacollect/final_observation``), and video features repeat the last
frame on import (``metadata["final_frame"] == "repeated"``). Float observations and actions are written
as float32. Video is lossy at the default settings (AV1, ``crf=30``): smooth frames come back within about
2 grey levels; per-pixel noise does not survive. Video features are always declared with 3 channels
(what LeRobot decodes); grey frames are stored as the luma plane and come back as one channel on import,
RGBA frames lose their alpha (a warning says so). Our spaces, env spec and per-episode metadata are stored
under ``aquacollect`` keys that LeRobot ignores, so :func:`read_lerobot` restores them exactly otherwise.

Example:
    >>> import json, tempfile
    >>> import numpy as np
    >>> from gymnasium import spaces
    >>> from gym_aquacollect.formats._common import MemoryDataset, MemoryEpisode
    >>> ep = MemoryEpisode(0, np.arange(8, dtype=np.float32).reshape(4, 2), np.array([0, 1, 0]),
    ...                    np.ones(3), np.array([False, False, True]), np.zeros(3, bool))
    >>> ds = MemoryDataset([ep], spaces.Box(-9, 9, (2,)), spaces.Discrete(2))
    >>> out = write_lerobot(ds, tempfile.mkdtemp() + "/lr", fps=10, task="balance", progress=False)
    >>> info = json.loads((out / "meta" / "info.json").read_text())
    >>> info["codebase_version"], info["total_frames"], sorted(info["features"])[:3]
    ('v3.0', 3, ['action', 'episode_index', 'frame_index'])
    >>> back = read_lerobot(out)
    >>> back[0].observations.tolist(), back[0].actions.tolist(), back[0].metadata["task"]
    ([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]], [0, 1, 0], 'balance')

Size: over 500 lines because LeRobot v3.0 writing and reading (parquet + video) follow one description of the layout.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from tqdm.auto import tqdm

from gym_aquacollect.data.memory import (
    ExportError,
    LazyEpisodes,
    MemoryDataset,
    MemoryEpisode,
    atomic_path,
    env_spec_json,
    episodes_of,
    flatten_batch,
    get_leaf,
    leaf_paths,
    set_leaf,
    unflatten_batch,
)
from gym_aquacollect.logs import logger
from gym_aquacollect.schema.spaces import deserialize_space, serialize_space
from gym_aquacollect.storage.safety import dataset_file, read_regular_file
from gym_aquacollect.storage.video import (
    VideoError,
    VideoSettings,
    VideoStreamWriter,
    check_frame_shape,
    decode_frames,
)

__all__ = ["write_lerobot", "read_lerobot", "is_lerobot_dir", "lerobot_features", "CODEBASE_VERSION"]

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILE_MB = 100
VIDEO_FILE_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
_INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
_STAT_SAMPLE_FRAMES = 64  # per episode and camera, for the image statistics


def _pa() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - pyarrow is in the lerobot extra
        raise ImportError("LeRobot export/import needs pyarrow and PyAV: pip install 'gym_aquacollect[lerobot]'") from e
    return pa, pq


# ------------------------------------------------------------------------------------------------
# Feature mapping
# ------------------------------------------------------------------------------------------------
@dataclass
class _Feature:
    key: str                       # the LeRobot feature name
    source: str                    # "obs" or "action"
    path: tuple[str, ...]          # leaf path inside the observation
    space: spaces.Space
    video: bool
    shape: tuple[int, ...]         # LeRobot shape
    dtype: str                     # LeRobot dtype
    channels: int = 3              # video: channels of the recorded frames

    def info(self) -> dict[str, Any]:
        if self.video:
            return {"dtype": "video", "shape": list(self.shape), "names": ["height", "width", "channels"]}
        names = None if self.shape == (1,) else [f"{self.key}_{i}" for i in range(self.shape[0])]
        return {"dtype": self.dtype, "shape": list(self.shape), "names": names}


def _is_image(space: spaces.Space) -> bool:
    """uint8 ``(H, W, C)``, C in 1/3/4, at least 32x32 (Minari's rule: smaller uint8 grids such as
    MiniGrid's 7x7x3 encoding are data, not pictures, and stay exact as vector features)."""
    return (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
            and space.shape[2] in (1, 3, 4) and space.shape[0] >= 32 and space.shape[1] >= 32)


def _vector_feature(key: str, source: str, path: tuple[str, ...], space: spaces.Space) -> _Feature:
    where = f"{source}{'/' + '/'.join(path) if path else ''}"
    if isinstance(space, spaces.Box):
        n = int(np.prod(space.shape)) if space.shape else 1
        dtype = "float32" if space.dtype.kind == "f" else ("bool" if space.dtype == np.bool_ else "int64")
    elif isinstance(space, spaces.Discrete):
        n, dtype = 1, "int64"
    elif isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        n, dtype = int(np.prod(space.shape)), "int64"
    elif isinstance(space, spaces.Text):
        raise ExportError(f"{where}: Text spaces have no LeRobot feature type; drop the key (e.g. with a "
                          "gymnasium FilterObservation wrapper) before recording or exporting")
    else:
        raise ExportError(f"{where}: {type(space).__name__} spaces cannot be exported to LeRobot")
    if n == 0:
        raise ExportError(f"{where}: the space {space} has no elements")
    return _Feature(key, source, path, space, False, (n,), dtype)


def lerobot_features(observation_space: spaces.Space, action_space: spaces.Space) -> list[_Feature]:
    """The LeRobot features the spaces map to (see the module docstring); raises :class:`ExportError`.

    Example:
        >>> from gymnasium import spaces
        >>> obs = spaces.Dict({"camera": spaces.Box(0, 255, (64, 64, 3), np.uint8),
        ...                    "joints": spaces.Box(-1, 1, (7,))})
        >>> [(f.key, f.shape) for f in lerobot_features(obs, spaces.Box(-1, 1, (7,)))]
        [('observation.images.camera', (64, 64, 3)), ('observation.joints', (7,)), ('action', (7,))]
    """
    feats: list[_Feature] = []
    if isinstance(observation_space, (spaces.Dict, spaces.Tuple)):
        for path, leaf in leaf_paths(observation_space):
            name = ".".join(path)
            if _is_image(leaf):
                h, w, c = leaf.shape
                feats.append(_Feature(f"observation.images.{name}", "obs", path, leaf, True, (h, w, 3), "video", c))
            else:
                feats.append(_vector_feature(f"observation.{name}", "obs", path, leaf))
    elif _is_image(observation_space):
        h, w, c = observation_space.shape
        feats.append(_Feature("observation.image", "obs", (), observation_space, True, (h, w, 3), "video", c))
    else:
        feats.append(_vector_feature("observation.state", "obs", (), observation_space))
    if isinstance(action_space, (spaces.Dict, spaces.Tuple)):
        leaf_paths(action_space)  # raises for unsupported leaves
        n = spaces.flatdim(action_space)
        feats.append(_Feature("action", "action", (), action_space, False, (n,), "float32"))
    else:
        feats.append(_vector_feature("action", "action", (), action_space))
    seen: set[str] = set()
    for f in feats:
        if f.key in seen:
            raise ExportError(f"two observation keys map to the LeRobot feature {f.key!r}; rename one of them")
        seen.add(f.key)
    return feats


def _column(f: _Feature, value: Any, n: int) -> np.ndarray:
    """``(n, *shape)`` values of a non-video feature, in its LeRobot dtype."""
    if f.source == "action" and isinstance(f.space, (spaces.Dict, spaces.Tuple)):
        arr = flatten_batch(f.space, value, n)
    else:
        arr = np.asarray(value).reshape(n, -1)
    return arr.astype({"float32": np.float32, "int64": np.int64, "bool": np.bool_}[f.dtype], copy=False)


def _restore(f: _Feature, col: np.ndarray) -> Any:
    """Inverse of :func:`_column` for one feature (``col`` is ``(n, *shape)``)."""
    n = col.shape[0]
    if f.source == "action" and isinstance(f.space, (spaces.Dict, spaces.Tuple)):
        return unflatten_batch(f.space, col)
    if isinstance(f.space, spaces.Box):
        return col.reshape((n, *f.space.shape)).astype(f.space.dtype, copy=False)
    if isinstance(f.space, spaces.Discrete):
        return col.reshape(n).astype(f.space.dtype, copy=False)
    return col.reshape((n, *f.space.shape)).astype(f.space.dtype, copy=False)


# ------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------
def _stats(x: np.ndarray, count: int | None = None, image: bool = False) -> dict[str, Any]:
    """LeRobot's per-feature statistics: vectors per dimension; images per channel in [0, 1], shape (C, 1, 1)."""
    x = np.asarray(x, dtype=np.float64)
    if image:
        x = x.reshape(-1, x.shape[-1]) / 255.0
    else:
        x = x.reshape(x.shape[0], -1)
    out: dict[str, Any] = {
        "min": x.min(axis=0), "max": x.max(axis=0), "mean": x.mean(axis=0), "std": x.std(axis=0),
    }
    for q in QUANTILES:
        out[f"q{int(round(q * 100)):02d}"] = np.quantile(x, q, axis=0)
    shape = (-1, 1, 1) if image else (-1,)
    res = {k: v.reshape(shape).tolist() for k, v in out.items()}
    res["count"] = [int(count if count is not None else x.shape[0])]
    return res


def _sample_frames(frames: np.ndarray) -> np.ndarray:
    step = max(1, math.ceil(len(frames) / _STAT_SAMPLE_FRAMES))
    s = frames[::step]
    h, w = s.shape[1:3]
    k = max(1, max(h, w) // 150)  # about 150 pixels a side, as LeRobot samples them
    return s[:, ::k, ::k]


# ------------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------------
def _env_fps(dataset: Any) -> tuple[float | None, str]:
    meta = getattr(dataset, "metadata", None) or {}
    desc = meta.get("env_description") or {}
    if desc.get("render_fps"):
        return float(desc["render_fps"]), "the recorded env's metadata['render_fps']"
    if meta.get("fps"):
        return float(meta["fps"]), "the dataset metadata's fps"
    env_id = desc.get("id")
    if env_id:
        try:  # the local registry only: the entry point's class attribute, no env is built
            import gymnasium as gym
            from gymnasium.envs.registration import load_env_creator

            spec = gym.registry.get(env_id)
            if spec is not None and isinstance(spec.entry_point, str):
                creator = load_env_creator(spec.entry_point)
                fps = (getattr(creator, "metadata", None) or {}).get("render_fps")
                if fps:
                    return float(fps), f"metadata['render_fps'] of {env_id} in the local registry"
        except Exception as e:  # noqa: BLE001 - a broken registry entry only loses the default
            logger.debug(f"could not read render_fps of {env_id}: {e}")
    return None, ""


def _resolve_fps(dataset: Any, fps: float | None) -> int:
    where = "fps="
    if fps is None:
        fps, where = _env_fps(dataset)
        if fps is None:
            raise ExportError("LeRobot needs the recording's frame rate and the env recorded no "
                              "metadata['render_fps']; pass fps=N (aquacollect export ... --fps N)")
    if fps <= 0 or abs(fps - round(fps)) > 1e-6 * max(1.0, fps):
        raise ExportError(f"LeRobot stores an integer fps; {where} gives {fps:g}: pass fps=N (--fps N) "
                          "with the integer rate to declare")
    return int(round(fps))


def _episode_task(ep: Any, dataset: Any, task: str | None) -> str:
    if task is not None:
        return str(task)
    meta = getattr(ep, "metadata", None) or {}
    for d in (meta, meta.get("run") or {}, getattr(dataset, "metadata", None) or {},
              (getattr(dataset, "metadata", None) or {}).get("metadata") or {}):
        if isinstance(d, dict) and isinstance(d.get("task"), str) and d["task"]:
            return d["task"]
    raise ExportError(f"episode {getattr(ep, 'id', '?')} has no task: LeRobot stores a task text per episode; "
                      "pass task='...' (aquacollect export ... --task TEXT) or record with metadata={'task': ...}")


def _next_file(chunk: int, file: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file == CHUNKS_SIZE - 1 else (chunk, file + 1)


def _fixed(pa: Any, arr: np.ndarray, dtype: str) -> Any:
    """A pyarrow column: a plain column for one value per row, else ``fixed_size_list<dtype>[n]``."""
    typ = {"float32": pa.float32(), "int64": pa.int64(), "bool": pa.bool_()}[dtype]
    if arr.ndim == 1 or arr.shape[1] == 1:
        return pa.array(arr.reshape(-1), type=typ)
    return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1), type=typ), arr.shape[1])


def _json_safe(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda o: o.tolist() if hasattr(o, "tolist") else repr(o)))


def write_lerobot(dataset: Any, out: str | os.PathLike, *, fps: float | None = None, task: str | None = None,
                  vcodec: str = "libsvtav1", crf: int | None = 30, gop: int = 2, preset: int | str | None = 12,
                  pix_fmt: str = "yuv420p", robot_type: str | None = None, overwrite: bool = False,
                  progress: bool = True) -> Path:
    """Write ``dataset`` as a LeRobotDataset v3.0 directory ``out``; returns its path.

    Args:
        dataset: any dataset (a gym_aquacollect ``Dataset``, an imported one, a collector).
        out: the dataset root to create (``LeRobotDataset(repo_id, root=out)`` opens it).
        fps: frames per second; default the recorded env's ``metadata["render_fps"]`` (an error if neither).
        task: the task text of every episode; default each episode's ``metadata["task"]`` (or the run's).
        vcodec, crf, gop, preset, pix_fmt: video encoder settings; the defaults are LeRobot's (SVT-AV1,
            quality 30, a keyframe every 2 frames, preset 12, yuv420p). ``vcodec="h264"`` uses libx264.
            They are recorded in ``meta/info.json`` (``aquacollect.encoder``).
        robot_type: LeRobot's ``robot_type`` (default the env id).
        overwrite: replace an existing ``out``.
        progress: show a progress bar.

    Raises:
        ExportError: a space has no LeRobot form, no fps or task is known, or frames cannot be encoded.
        FileExistsError: ``out`` exists and ``overwrite`` is False (nothing is written).

    The directory is written under a temporary name and renamed when complete.
    """
    pa, pq = _pa()
    settings = VideoSettings(vcodec=vcodec, crf=crf, gop=gop, preset=preset, pix_fmt=pix_fmt)
    if settings.lossless_codec:
        raise ExportError(f"vcodec={vcodec!r}: LeRobot reads MP4 video (libsvtav1 or h264); ffv1 is for "
                          "gym_aquacollect's own video columns")
    feats = lerobot_features(dataset.observation_space, dataset.action_space)
    for f in feats:
        if f.video:
            try:
                check_frame_shape(tuple(f.space.shape), settings, f"observation/{'/'.join(f.path) or '<root>'}",
                                  drop_alpha=True)
            except VideoError as e:
                raise ExportError(str(e)) from None
            if f.channels == 4:
                logger.warning(f"{f.key}: RGBA frames lose their alpha channel in LeRobot's yuv420p video")
    fps_i = _resolve_fps(dataset, fps)
    desc = (getattr(dataset, "metadata", None) or {}).get("env_description") or {}
    feat_info = {f.key: f.info() for f in feats}
    feat_info.update({
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
        "next.truncated": {"dtype": "bool", "shape": [1], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    })
    vector_keys = [f.key for f in feats if not f.video] + ["next.reward", "next.done", "next.truncated"]
    video_feats = [f for f in feats if f.video]

    with atomic_path(out, overwrite=overwrite, is_dir=True) as tmp:
        tmp.mkdir(parents=True)
        tasks: dict[str, int] = {}
        ep_rows: list[dict[str, Any]] = []
        all_vec: dict[str, list[np.ndarray]] = {k: [] for k in vector_keys}
        all_idx: dict[str, list[np.ndarray]] = {k: [] for k in _INDEX_FEATURES}
        img_samples: dict[str, list[np.ndarray]] = {f.key: [] for f in video_feats}
        data_pos, data_writer, data_bytes = (0, 0), None, 0
        vid_pos = {f.key: (0, 0) for f in video_feats}
        vid_writer: dict[str, VideoStreamWriter] = {}
        vid_frames = {f.key: 0 for f in video_feats}
        total = 0
        try:
            source = episodes_of(dataset)
            n_eps = len(dataset) if hasattr(dataset, "__len__") else None
            for ep in tqdm(source, total=n_eps, desc="lerobot export", unit="ep",
                           disable=None if progress else True, leave=False):
                T = len(ep)
                if T == 0:
                    continue
                ep_index = len(ep_rows)
                t = _episode_task(ep, dataset, task)
                task_index = tasks.setdefault(t, len(tasks))
                obs, acts = ep.observations, ep.actions
                cols: dict[str, np.ndarray] = {}
                final: dict[str, Any] = {}
                for f in feats:
                    if f.video:
                        continue
                    if f.source == "obs":
                        leaf = np.asarray(get_leaf(obs, f.path))
                        full = _column(f, leaf, len(leaf))
                        cols[f.key], final[f.key] = full[:T], full[T].tolist()
                    else:
                        cols[f.key] = _column(f, acts, T)
                cols["next.reward"] = np.asarray(ep.rewards, dtype=np.float32).reshape(T, 1)
                cols["next.done"] = np.asarray(ep.terminations, dtype=bool).reshape(T, 1)
                cols["next.truncated"] = np.asarray(ep.truncations, dtype=bool).reshape(T, 1)
                frame_index = np.arange(T, dtype=np.int64)
                idx = {"timestamp": (frame_index / fps_i).astype(np.float32), "frame_index": frame_index,
                       "episode_index": np.full(T, ep_index, np.int64),
                       "index": np.arange(total, total + T, dtype=np.int64),
                       "task_index": np.full(T, task_index, np.int64)}
                row: dict[str, Any] = {"episode_index": ep_index, "tasks": [t], "length": T}
                # -- data parquet (rolls over at LeRobot's file size)
                arrays = [_fixed(pa, cols[k], feat_info[k]["dtype"]) for k in vector_keys]
                arrays += [pa.array(idx[k]) for k in _INDEX_FEATURES]
                table = pa.table(arrays, names=vector_keys + list(_INDEX_FEATURES))
                if data_writer is not None and data_bytes + table.nbytes >= DATA_FILE_MB * 1024 * 1024:
                    data_writer.close()
                    data_writer, data_bytes, data_pos = None, 0, _next_file(*data_pos)
                if data_writer is None:
                    p = tmp / DATA_PATH.format(chunk_index=data_pos[0], file_index=data_pos[1])
                    p.parent.mkdir(parents=True, exist_ok=True)
                    data_writer = pq.ParquetWriter(p, table.schema, compression="snappy")
                data_writer.write_table(table)
                data_bytes += table.nbytes
                row.update({"data/chunk_index": data_pos[0], "data/file_index": data_pos[1],
                            "dataset_from_index": total, "dataset_to_index": total + T})
                # -- videos (one stream per camera; roll over at LeRobot's file size)
                for f in video_feats:
                    frames = np.asarray(get_leaf(obs, f.path))[:T]
                    w = vid_writer.get(f.key)
                    if w is not None:
                        path = tmp / VIDEO_PATH.format(video_key=f.key, chunk_index=vid_pos[f.key][0],
                                                       file_index=vid_pos[f.key][1])
                        if path.exists() and path.stat().st_size >= VIDEO_FILE_MB * 1024 * 1024:
                            w.close()
                            w, vid_frames[f.key], vid_pos[f.key] = None, 0, _next_file(*vid_pos[f.key])
                    if w is None:
                        path = tmp / VIDEO_PATH.format(video_key=f.key, chunk_index=vid_pos[f.key][0],
                                                       file_index=vid_pos[f.key][1])
                        path.parent.mkdir(parents=True, exist_ok=True)
                        w = vid_writer[f.key] = VideoStreamWriter(path, settings, fps=fps_i, shape=f.space.shape,
                                                                  where=f.key, drop_alpha=True)
                    start = vid_frames[f.key]
                    w.write(frames)
                    vid_frames[f.key] += T
                    row.update({f"videos/{f.key}/chunk_index": vid_pos[f.key][0],
                                f"videos/{f.key}/file_index": vid_pos[f.key][1],
                                f"videos/{f.key}/from_timestamp": start / fps_i,
                                f"videos/{f.key}/to_timestamp": (start + T) / fps_i})
                    sample = _sample_frames(frames)
                    sample = np.repeat(sample, 3, axis=-1) if f.channels == 1 else sample[..., :3]
                    img_samples[f.key].append(sample)
                    st = _stats(sample, T, image=True)
                    for k, v in st.items():
                        row[f"stats/{f.key}/{k}"] = v
                for k in vector_keys:
                    all_vec[k].append(cols[k])
                    for s, v in _stats(cols[k]).items():
                        row[f"stats/{k}/{s}"] = v
                for k in _INDEX_FEATURES:
                    all_idx[k].append(idx[k])
                    for s, v in _stats(idx[k].reshape(-1, 1)).items():
                        row[f"stats/{k}/{s}"] = v
                row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
                row["aquacollect/metadata"] = json.dumps(_json_safe(dict(getattr(ep, "metadata", {}) or {})))
                row["aquacollect/final_observation"] = json.dumps(final)
                ep_rows.append(row)
                total += T
        finally:
            if data_writer is not None:
                data_writer.close()
            for w in vid_writer.values():
                w.close()
        if not ep_rows:
            raise ExportError("the dataset has no episode with at least one step; nothing to export")

        # -- meta/episodes, tasks, stats, info
        ep_path = tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(ep_rows), ep_path, compression="snappy")
        task_names = sorted(tasks, key=tasks.get)
        _write_tasks(pa, pq, tmp / "meta" / "tasks.parquet", task_names)
        stats: dict[str, Any] = {}
        for k in vector_keys:
            stats[k] = _stats(np.concatenate(all_vec[k]))
        for k in _INDEX_FEATURES:
            stats[k] = _stats(np.concatenate(all_idx[k]).reshape(-1, 1))
        for f in video_feats:
            pooled = np.concatenate([s.reshape(-1, 3) for s in img_samples[f.key]])
            stats[f.key] = _stats(pooled, total, image=True)
        (tmp / "meta" / "stats.json").write_text(json.dumps(stats, indent=4))
        for f in video_feats:
            h, w, _ = f.shape
            feat_info[f.key]["info"] = {
                "video.height": h, "video.width": w, "video.codec": "av1" if settings.vcodec == "libsvtav1" else "h264",
                "video.pix_fmt": settings.pix_fmt, "video.is_depth_map": False, "video.fps": fps_i,
                "video.channels": 3, "has_audio": False}
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type if robot_type is not None else desc.get("id"),
            "total_episodes": len(ep_rows), "total_frames": total, "total_tasks": len(tasks),
            "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": VIDEO_FILE_MB,
            "fps": fps_i, "splits": {"train": f"0:{len(ep_rows)}"},
            "data_path": DATA_PATH, "video_path": VIDEO_PATH if video_feats else None,
            "features": feat_info,
            "aquacollect": {
                "observation_space": serialize_space(dataset.observation_space),
                "action_space": serialize_space(dataset.action_space),
                "env_spec": env_spec_json(dataset),
                "env_description": _json_safe(desc),
                "features": {f.key: {"source": f.source, "path": list(f.path), "channels": f.channels}
                             for f in feats},
                "encoder": settings.to_json() if video_feats else None,
            },
        }
        (tmp / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    logger.info(f"wrote LeRobotDataset v3.0 {out}: {len(ep_rows)} episodes, {total} frames, {len(tasks)} task(s), "
                f"{len(video_feats)} video feature(s) at {fps_i} fps")
    return Path(out)


def _write_tasks(pa: Any, pq: Any, path: Path, names: list[str]) -> None:
    """``meta/tasks.parquet`` as pandas writes a frame indexed by ``task`` (LeRobot reads it with pandas)."""
    table = pa.table({"task_index": pa.array(np.arange(len(names), dtype=np.int64)), "task": pa.array(names)})
    pandas_meta = {
        "index_columns": ["task"], "column_indexes": [],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.0",
    }
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    pq.write_table(table, path)


# ------------------------------------------------------------------------------------------------
# Import
# ------------------------------------------------------------------------------------------------
def is_lerobot_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a LeRobotDataset root (``meta/info.json`` with a ``codebase_version``)."""
    p = Path(path)
    info = p / "meta" / "info.json"
    if not (p.is_dir() and info.is_file()):
        return False
    try:
        return "codebase_version" in json.loads(info.read_text())
    except (OSError, ValueError):
        return False


def _infer_features(info: dict[str, Any]) -> tuple[list[_Feature], spaces.Space, spaces.Space]:
    """Features and spaces of a dataset written by LeRobot itself (no ``aquacollect`` section)."""
    skip = set(_INDEX_FEATURES) | {"next.reward", "next.done", "next.truncated", "next.success"}
    obs_feats: list[_Feature] = []
    action: _Feature | None = None
    for key, ft in info["features"].items():
        if key in skip:
            continue
        shape = tuple(int(x) for x in ft["shape"])
        if not shape or len(shape) > 4 or min(shape) < 1 or int(np.prod(shape, dtype=np.float64)) > 1 << 26:
            raise ExportError(f"meta/info.json: feature {key!r} declares shape {list(shape)[:6]}; refusing a shape "
                              "that is empty, over 4 dims or over 2**26 values per frame (corrupt or hostile)")
        dt = ft["dtype"]
        if dt == "image":
            raise ExportError(f"feature {key!r} is stored as images (PNG) in the parquet files; gym_aquacollect reads "
                              "LeRobot video features only (re-encode the dataset with LeRobot to videos)")
        if dt == "video":
            names = ft.get("names") or []
            if list(names[:1]) == ["channels"] or (len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4)):
                shape = (shape[1], shape[2], shape[0])
            c = int(ft.get("info", {}).get("video.channels", shape[2]))
            space = spaces.Box(0, 255, (shape[0], shape[1], 3), np.uint8)
            obs_feats.append(_Feature(key, "obs", (), space, True, (shape[0], shape[1], 3), "video", c))
            continue
        if dt in ("string",):
            continue
        np_dt = np.dtype(dt)
        lo, hi = (-np.inf, np.inf) if np_dt.kind == "f" else (np.iinfo(np.int64).min, np.iinfo(np.int64).max)
        if np_dt == np.bool_:
            lo, hi = 0, 1
        space = spaces.Box(lo, hi, shape, np_dt if np_dt.kind in "fb" else np.int64)
        if key == "action":
            action = _Feature(key, "action", (), space, False, (int(np.prod(shape)),), dt)
        elif key.startswith("observation"):
            obs_feats.append(_Feature(key, "obs", (), space, False, (int(np.prod(shape)),), dt))
    if action is None:
        raise ExportError("the LeRobot dataset has no 'action' feature; gym_aquacollect datasets need actions")
    if not obs_feats:
        raise ExportError("the LeRobot dataset has no observation.* feature")
    if len(obs_feats) == 1 and obs_feats[0].key in ("observation.state", "observation.image"):
        obs_space = obs_feats[0].space
    else:
        names: dict[str, spaces.Space] = {}
        for f in obs_feats:
            name = f.key
            for prefix in ("observation.images.", "observation."):
                if name.startswith(prefix) and name[len(prefix):]:
                    name = name[len(prefix):]
                    break
            if name in names:
                name = f.key
            f.path = (name,)
            names[name] = f.space
        obs_space = spaces.Dict(names)
    return obs_feats + [action], obs_space, action.space


def _path_template(template: Any, allowed: set[str], root: Path) -> str:
    """A ``data_path``/``video_path`` template from ``info.json``, checked before ``str.format`` runs it: only
    LeRobot's own fields, no attribute or item lookups, no conversions, small integer widths."""
    import re
    import string

    ok = isinstance(template, str) and len(template) < 512
    try:
        for _lit, field, spec, conv in (string.Formatter().parse(template) if ok else ()):
            if field is not None and (field not in allowed or conv or not re.fullmatch(r"(0?[1-9])?d?", spec or "")):
                ok = False
    except ValueError:
        ok = False
    if not ok:
        raise ExportError(f"{root}/meta/info.json: path template {str(template)[:80]!r} is not one LeRobot writes "
                          f"(fields {sorted(allowed)}, formats like '03d'); refusing to use it")
    return template


def _read_tasks(pq: Any, path: Path) -> list[str]:
    t = pq.read_table(path)
    col = "task" if "task" in t.column_names else next((c for c in t.column_names if c != "task_index"), None)
    if col is None or "task_index" not in t.column_names:
        raise ExportError(f"{path}: no task / task_index column")
    names = [str(x) for x in t.column(col).to_pylist()]
    order = np.asarray(t.column("task_index").to_pylist(), dtype=np.int64)
    if len(order) and (order.min() < 0 or order.max() >= len(order) or len(np.unique(order)) != len(order)):
        raise ExportError(f"{path}: task_index values must be 0..{len(order) - 1}, each once (LeRobot numbers "
                          f"tasks that way); got {np.unique(order)[:5].tolist()}...; the file is corrupt")
    out = [""] * (int(order.max()) + 1 if len(order) else 0)
    for i, n in zip(order.tolist(), names):
        out[i] = n
    return out


def read_lerobot(path: str | os.PathLike) -> MemoryDataset:
    """Open a LeRobotDataset v3.0 directory (written by LeRobot or by :func:`write_lerobot`) as a dataset.

    Episodes load lazily (video decoded with PyAV when an episode is read). Each episode has ``T`` steps for
    ``T`` frames: observations ``o_0 .. o_T`` (the final observation as stored by :func:`write_lerobot`, else
    the last frame repeated, said by ``metadata["final_frame"] == "repeated"``), actions, ``next.reward``
    as rewards (zeros if absent), ``next.done`` as terminations and ``next.truncated`` as truncations (a
    dataset without either ends every episode truncated). ``metadata["task"]`` holds the episode's task.

    Raises:
        ExportError: the directory is not v3.0 (LeRobot converts v2.1 datasets with its
            ``convert_dataset_v21_to_v30`` script) or holds features gym_aquacollect cannot represent.
    """
    pa, pq = _pa()
    root = Path(path)
    info = json.loads(read_regular_file(dataset_file(root, "meta/info.json", "LeRobot meta/info.json")))
    version = str(info.get("codebase_version"))
    if not version.startswith("v3"):
        raise ExportError(f"{root}: LeRobotDataset {version}; gym_aquacollect reads v3.0 only (convert it with "
                          "lerobot's `python -m lerobot.datasets.v30.convert_dataset_v21_to_v30`)")
    fps = int(info["fps"])
    aq = info.get("aquacollect")
    if aq:
        obs_space = deserialize_space(aq["observation_space"])
        act_space = deserialize_space(aq["action_space"])
        feats = lerobot_features(obs_space, act_space)
    else:
        feats, obs_space, act_space = _infer_features(info)
    tasks = _read_tasks(pq, dataset_file(root, "meta/tasks.parquet", "LeRobot tasks file"))
    ep_files = [dataset_file(root, p.relative_to(root), "LeRobot episodes file")
                for p in sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))]
    if not ep_files:
        raise ExportError(f"{root}: no meta/episodes/chunk-*/file-*.parquet")
    ep_table = pa.concat_tables([pq.read_table(p, columns=[c for c in pq.read_schema(p).names
                                                           if not c.startswith("stats/")]) for p in ep_files],
                                promote_options="default")
    episodes = sorted(ep_table.to_pylist(), key=lambda r: r["episode_index"])
    data_path = _path_template(info.get("data_path") or DATA_PATH, {"chunk_index", "file_index"}, root)
    video_path = _path_template(info.get("video_path") or VIDEO_PATH, {"video_key", "chunk_index", "file_index"}, root)
    cache: dict[tuple[int, int], Any] = {}
    data_cols = [f.key for f in feats if not f.video] + [
        k for k in ("next.reward", "next.done", "next.truncated") if k in info["features"]] + ["episode_index"]

    real_root = root.resolve()

    def inside(rel: str) -> Path:
        """``root / rel``, refused if it leaves the dataset directory (a dataset never reads outside it) or is
        not a regular file (a FIFO would hang the reader)."""
        p = (root / rel).resolve()
        if p != real_root and real_root not in p.parents:
            raise ExportError(f"{root}: meta/info.json points at {rel!r}, outside the dataset directory; refusing "
                              "to read it")
        return dataset_file(root, rel, "LeRobot data/video file")

    def table_for(chunk: int, file: int) -> dict[str, np.ndarray]:
        key = (chunk, file)
        if key not in cache:
            if len(cache) > 4:
                cache.pop(next(iter(cache)))
            p = inside(data_path.format(chunk_index=int(chunk), file_index=int(file)))
            t = pq.read_table(p, columns=data_cols)
            cols = {}
            for name in data_cols:
                c = t.column(name).combine_chunks()
                if pa.types.is_fixed_size_list(c.type) or pa.types.is_list(c.type):
                    n = len(c)
                    cols[name] = c.flatten().to_numpy(zero_copy_only=False).reshape(n, -1)
                else:
                    cols[name] = c.to_numpy(zero_copy_only=False).reshape(len(c), -1)
            cache[key] = cols
        return cache[key]

    def load(i: int) -> MemoryEpisode:
        row = episodes[i]
        ep_idx = int(row["episode_index"])
        cols = table_for(int(row["data/chunk_index"]), int(row["data/file_index"]))
        sel = np.flatnonzero(cols["episode_index"][:, 0] == ep_idx)
        T = len(sel)
        if T == 0 or T != int(row.get("length", T)):
            raise ExportError(f"{root}: episode {ep_idx} has {T} frames in its data file but length {row.get('length')}")
        final = json.loads(row.get("aquacollect/final_observation") or "{}")
        meta = json.loads(row.get("aquacollect/metadata") or "{}")
        by_path: dict[tuple[str, ...], Any] = {}
        repeated = False
        actions = None
        for f in feats:
            if f.video:
                vp = inside(video_path.format(video_key=f.key, chunk_index=int(row[f"videos/{f.key}/chunk_index"]),
                                              file_index=int(row[f"videos/{f.key}/file_index"])))
                frames = decode_frames(vp, 0, T, channels=f.channels if f.channels in (1, 3) else 3,
                                       start_time=float(row[f"videos/{f.key}/from_timestamp"]), fps=fps)
                if f.channels == 4:
                    frames = np.concatenate([frames, np.full(frames.shape[:3] + (1,), 255, np.uint8)], axis=3)
                by_path[f.path] = np.concatenate([frames, frames[-1:]])
                repeated = True
                continue
            col = cols[f.key][sel]
            if f.source == "action":
                actions = _restore(f, col)
                continue
            last = np.asarray(final[f.key]).reshape(1, -1) if f.key in final else col[-1:]
            repeated = repeated or f.key not in final
            by_path[f.path] = _restore(f, np.concatenate([col, last.astype(col.dtype)]))
        obs = set_leaf(obs_space, by_path)
        rewards = cols["next.reward"][sel, 0].astype(np.float64) if "next.reward" in cols else np.zeros(T)
        has_flags = "next.done" in cols or "next.truncated" in cols
        term = cols["next.done"][sel, 0].astype(bool) if "next.done" in cols else np.zeros(T, bool)
        trunc = cols["next.truncated"][sel, 0].astype(bool) if "next.truncated" in cols else np.zeros(T, bool)
        if not has_flags:
            trunc[-1] = True
        ep_tasks = list(row.get("tasks") or [])
        meta.setdefault("task", ep_tasks[0] if ep_tasks else (tasks[0] if tasks else None))
        meta["lerobot_episode_index"] = ep_idx
        if repeated:
            meta["final_frame"] = "repeated"
        return MemoryEpisode(i, obs, actions, rewards, term, trunc, {}, meta)

    lengths = [int(r["length"]) for r in episodes]
    metadata = {"source_format": "lerobot", "codebase_version": version, "fps": fps,
                "robot_type": info.get("robot_type"), "tasks": tasks,
                "env_description": dict((aq or {}).get("env_description") or {}, render_fps=fps),
                "encoder": (aq or {}).get("encoder")}
    return MemoryDataset(LazyEpisodes(len(episodes), load), obs_space, act_space,
                         env_spec=(aq or {}).get("env_spec"), metadata=metadata, path=root, episode_lengths=lengths)
