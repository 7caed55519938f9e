"""Minari datasets (HDF5 layout, minari 0.5.3 / 0.5.4), written and read without importing Minari.

Contents:
    * :func:`write_minari` - write a Minari dataset directory (``<root>/<id>/data/{main_data.hdf5,metadata.json}``).
    * :func:`to_minari` - the same into the user's Minari root (``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``).
    * :func:`read_minari` - open a Minari dataset (id or directory) as a :class:`~gym_aquacollect.data.memory.MemoryDataset`.
    * :func:`minari_space_json` / :func:`minari_space_from_json` - spaces serialized the way Minari does.
    * :func:`is_image_space`, :func:`validate_dataset_id`, :func:`minari_root`, :func:`resolve_minari`.
    * :func:`write_episode_groups` / :func:`read_episode_group` - the per-episode HDF5 layout, also used by
      :mod:`gym_aquacollect.formats.trajectories` for its ``hdf5`` format (without JPEG).

Fidelity: every leaf for which Minari's ``is_image_space`` holds (a uint8 ``Box`` of shape ``(H, W)`` or
``(H, W, 3)`` with ``H, W >= 32`` and bounds exactly 0..255) is stored as one JPEG per row, because Minari's
reader decodes such leaves with Pillow. JPEG is lossy (and Pillow subsamples colour 4:2:0): measured on
84x84x3 frames, a smooth frame comes back with a mean absolute error of 0.2 grey levels (max 6) at the default
``jpeg_quality=95`` (1.3, max 23, at Minari's own quality 75), while per-pixel noise is destroyed (mean error
~47 at either quality). Fine detail, single-pixel features and exact colours are not preserved; every other
leaf is bit-exact. Pass ``jpeg_encoding=False`` to store images raw and losslessly: the dataset then declares
``"jpeg_encoding": false`` and ``minari_version "0.5.4"``, so only minari >= 0.5.4 reads it. Image-like spaces
with 1, 2, 4 or more channels cannot be JPEG-encoded and need ``jpeg_encoding=False``.

Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from gymnasium import spaces
    >>> from gym_aquacollect.formats._common import MemoryDataset, MemoryEpisode
    >>> ep = MemoryEpisode(0, np.zeros((3, 2), np.float32), np.array([0, 1]), np.ones(2),
    ...                    np.array([False, True]), np.zeros(2, bool))
    >>> ds = MemoryDataset([ep], spaces.Box(-1, 1, (2,)), spaces.Discrete(2))
    >>> root = tempfile.mkdtemp()
    >>> path = write_minari(ds, root, "aqua/doc-v0")
    >>> sorted(os.listdir(path / "data"))
    ['main_data.hdf5', 'metadata.json']
    >>> back = read_minari(path)
    >>> len(back), back[0].observations.shape
    (1, (3, 2))

Size: over 500 lines because Minari's layout is written and read in one place so that both directions follow the same rules (spaces, infos, env spec).
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
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
    flatten_infos,
    get_leaf,
    leaf_paths,
    set_leaf,
    unflatten_infos,
)
from gym_aquacollect.logs import logger
from gym_aquacollect.storage.manifest import DatasetFormatError
from gym_aquacollect.storage.safety import check_contained, dataset_file, read_regular_file

__all__ = [
    "write_minari",
    "to_minari",
    "read_minari",
    "minari_space_json",
    "minari_space_from_json",
    "is_image_space",
    "validate_dataset_id",
    "minari_root",
    "resolve_minari",
    "clean_env_spec",
    "write_episode_groups",
    "read_episode_group",
]

#: Written into metadata.json: both minari 0.5.3 and 0.5.4 accept it.
MINARI_VERSION = "0.5.3"
DATASET_ID_RE = re.compile(r"^(?:(?P<namespace>[-_\w][-_\w/]*[-_\w]+)/)?(?P<dataset>[-_\w]+?)(?:-v(?P<version>\d+))$")


# ------------------------------------------------------------------------------------------------
# Spaces
# ------------------------------------------------------------------------------------------------
def _space_dict(space: spaces.Space, where: str) -> dict[str, Any]:
    if isinstance(space, spaces.Box):
        return {"type": "Box", "dtype": str(space.dtype), "shape": list(space.shape),
                "low": space.low.tolist(), "high": space.high.tolist()}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "dtype": "int64", "start": int(space.start), "n": int(space.n)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "dtype": str(space.dtype), "nvec": space.nvec.tolist(),
                "start": space.start.tolist()}
    if isinstance(space, spaces.MultiBinary):
        n = space.n
        return {"type": "MultiBinary", "n": [int(x) for x in n] if isinstance(n, (tuple, list, np.ndarray)) else int(n)}
    if isinstance(space, spaces.Text):
        return {"type": "Text", "max_length": int(space.max_length), "min_length": int(space.min_length),
                "charset": "".join(space.character_list)}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "subspaces": {k: _space_dict(s, f"{where}/{k}") for k, s in space.spaces.items()}}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "subspaces": [_space_dict(s, f"{where}/_index_{i}") for i, s in enumerate(space.spaces)]}
    raise ExportError(f"{where}: Minari cannot serialize {type(space).__name__} spaces ({space}); "
                      "only Box, Discrete, MultiDiscrete, MultiBinary, Text, Dict and Tuple")


def minari_space_json(space: spaces.Space, where: str = "space") -> str:
    """The space as Minari's ``serialize_space`` writes it (a JSON string; infinite bounds as ``Infinity``)."""
    return json.dumps(_space_dict(space, where))


def _space_from_dict(d: dict[str, Any]) -> spaces.Space:
    kind = d["type"]
    if kind == "Box":
        dtype = np.dtype(d["dtype"])
        return spaces.Box(np.array(d["low"], dtype=dtype), np.array(d["high"], dtype=dtype), tuple(d["shape"]), dtype)
    if kind == "Discrete":
        return spaces.Discrete(int(d["n"]), start=int(d.get("start", 0)))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(d["nvec"], dtype=d.get("dtype", "int64"), start=d.get("start"))
    if kind == "MultiBinary":
        return spaces.MultiBinary(d["n"])
    if kind == "Text":
        return spaces.Text(max_length=d["max_length"], min_length=d["min_length"], charset=d["charset"])
    if kind == "Dict":
        return spaces.Dict({k: _space_from_dict(s) for k, s in d["subspaces"].items()})
    if kind == "Tuple":
        return spaces.Tuple([_space_from_dict(s) for s in d["subspaces"]])
    raise ValueError(f"unknown Minari space type {kind!r}")


def minari_space_from_json(text: str | dict) -> spaces.Space:
    """Inverse of :func:`minari_space_json`."""
    return _space_from_dict(json.loads(text) if isinstance(text, str) else text)


def is_image_space(space: spaces.Space) -> bool:
    """Minari's predicate for leaves that are stored as JPEG."""
    return (
        isinstance(space, spaces.Box)
        and len(space.shape) in (2, 3)
        and space.shape[0] >= 32
        and space.shape[1] >= 32
        and space.dtype == np.uint8
        and bool(np.all(space.low == 0))
        and bool(np.all(space.high == 255))
    )


def _jpeg_ok(space: spaces.Box) -> bool:
    return len(space.shape) == 2 or space.shape[2] == 3


# ------------------------------------------------------------------------------------------------
# Ids and roots
# ------------------------------------------------------------------------------------------------
def validate_dataset_id(dataset_id: str) -> str:
    """Raise ``ValueError`` unless ``dataset_id`` is ``[namespace/]name-v<N>`` as Minari parses it."""
    m = DATASET_ID_RE.match(dataset_id)
    if m is None:
        raise ValueError(
            f"invalid Minari dataset id {dataset_id!r}: use '[namespace/]name-v<N>' with letters, digits, '-' "
            "and '_' (a namespace needs at least 2 characters), e.g. 'aquacollect/cartpole/random-v0'"
        )
    return dataset_id


def minari_root() -> Path:
    """The Minari datasets root: ``$MINARI_DATASETS_PATH`` or Minari's default ``~/.minari/datasets``."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def resolve_minari(source: str | os.PathLike) -> Path | None:
    """The dataset directory (holding ``data/metadata.json``) for a Minari id or path, or None."""
    p = Path(source)
    candidates = [p, p.parent] if p.name == "data" else [p]
    if p.name == "metadata.json":
        candidates = [p.parent.parent]
    for c in candidates:
        if (c / "data" / "metadata.json").is_file():
            return c
    if isinstance(source, str) and not os.path.isabs(source) and not p.exists():
        c = minari_root() / source
        if (c / "data" / "metadata.json").is_file():
            return c
    return None


def clean_env_spec(spec_json: str | None) -> str | None:
    """An env spec JSON that ``EnvSpec.from_json`` accepts, with gym_aquacollect's own recording wrappers
    removed from ``additional_wrappers`` (replaying the spec must not record again); None if unusable."""
    if not spec_json:
        return None
    try:
        d = json.loads(spec_json)
    except ValueError:
        logger.warning("env_spec is not valid JSON; it is left out of the export")
        return None
    if not isinstance(d, dict) or "id" not in d:
        return None
    d.setdefault("additional_wrappers", [])
    d["additional_wrappers"] = [
        w for w in d["additional_wrappers"]
        if not str(w.get("entry_point", "")).startswith("gym_aquacollect")
    ]
    for key in ("namespace", "name", "version"):
        d.pop(key, None)
    try:
        from gymnasium.envs.registration import EnvSpec

        return EnvSpec.from_json(json.dumps(d)).to_json()
    except Exception as e:  # noqa: BLE001 - any failure means "do not ship this spec"
        logger.warning(f"env_spec cannot be round-tripped through EnvSpec.from_json ({e}); it is left out")
        return None


# ------------------------------------------------------------------------------------------------
# Per-episode HDF5 groups (the Minari layout)
# ------------------------------------------------------------------------------------------------
def _jpeg_column(frames: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image  # noqa: PLC0415 - optional dependency (the minari extra)

    out = np.empty(len(frames), dtype=object)
    for i, frame in enumerate(frames):
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(frame)).save(buf, format="JPEG", quality=quality)
        out[i] = np.frombuffer(buf.getvalue(), dtype=np.uint8)
    return out


def _write_leaf(group: h5py.Group, name: str, space: spaces.Space, data: Any, jpeg: int | None, where: str) -> None:
    if isinstance(space, spaces.Text):
        group.create_dataset(name, data=np.array(list(data), dtype=object), dtype=h5py.string_dtype("utf-8"))
        return
    arr = np.asarray(data)
    if jpeg is not None and is_image_space(space):
        group.create_dataset(name, data=_jpeg_column(arr, jpeg), dtype=h5py.vlen_dtype(np.uint8))
        return
    group.create_dataset(name, data=arr, chunks=True if arr.size else None, maxshape=(None, *arr.shape[1:]))


def _write_space_value(group: h5py.Group, name: str, space: spaces.Space, value: Any, jpeg: int | None, where: str):
    for path, leaf in leaf_paths(space):
        full = "/".join((name, *path))
        try:
            data = get_leaf(value, path)
        except (KeyError, IndexError, TypeError) as e:
            raise ExportError(f"{where}: value has no leaf {'/'.join(path)!r} required by {space} ({e})") from e
        _write_leaf(group, full, leaf, data, jpeg, f"{where}/{'/'.join(path)}")


def _info_array(value: Any) -> np.ndarray | None:
    if isinstance(value, list) and value and isinstance(value[0], str):
        return np.array(value, dtype=object)
    arr = np.asarray(value)
    if arr.dtype.kind in "biufc":
        return arr
    if arr.dtype.kind == "U":
        return arr.astype(object)
    if arr.dtype.kind in "OS" and all(isinstance(x, (str, bytes)) for x in arr.ravel()):
        return arr
    return None


def _attr_value(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return np.bool_(v)
    if isinstance(v, (int, np.integer)):
        v = int(v)
        return np.int64(v) if -(2**63) <= v < 2**63 else np.uint64(v)
    if isinstance(v, (float, np.floating, str, bytes)):
        return v
    arr = np.asarray(v)
    return arr if arr.dtype.kind in "biuf" else None


def write_episode_groups(
    f: h5py.File,
    dataset: Any,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    *,
    jpeg_quality: int | None,
    record_infos: bool = True,
    extras: bool = False,
    episodes: Any = None,
    desc: str = "episodes",
) -> tuple[int, int]:
    """Write ``episode_<i>`` groups (consecutive from 0) into ``f``; returns ``(episodes, steps)``.

    ``jpeg_quality=None`` stores image leaves raw. ``extras=True`` also writes the episodes' extra per-step
    columns (e.g. ``teacher_actions``) under ``extras/`` (Minari ignores unknown datasets).
    """
    n_eps = n_steps = 0
    source = episodes if episodes is not None else episodes_of(dataset)
    for ep in tqdm(source, desc=desc, unit="ep", disable=None, leave=False):
        T = len(ep)
        if T == 0:
            continue
        g = f.create_group(f"episode_{n_eps}")
        where = f"episode {getattr(ep, 'id', n_eps)}"
        _check_rows(ep.observations, T + 1, f"{where} observations")
        _check_rows(ep.actions, T, f"{where} actions")
        _write_space_value(g, "observations", observation_space, ep.observations, jpeg_quality, f"{where} observations")
        _write_space_value(g, "actions", action_space, ep.actions, jpeg_quality, f"{where} actions")
        rewards = np.asarray(ep.rewards, dtype=np.float64)
        term = np.asarray(ep.terminations, dtype=bool).copy()
        trunc = np.asarray(ep.truncations, dtype=bool).copy()
        if not (term[-1] or trunc[-1]):
            trunc[-1] = True  # an episode closed mid-way ends truncated (Minari's rule)
        g.create_dataset("rewards", data=rewards)
        g.create_dataset("terminations", data=term)
        g.create_dataset("truncations", data=trunc)
        ig = g.create_group("infos")
        if record_infos:
            for key, value in flatten_infos(getattr(ep, "infos", None) or {}).items():
                arr = _info_array(value)
                if arr is None or arr.ndim == 0 or arr.shape[0] != T + 1:
                    logger.warning(f"{where}: info {key!r} is not an array of {T + 1} rows of numbers or strings; "
                                   "it is left out of the export")
                    continue
                if arr.dtype.kind == "O":
                    ig.create_dataset(key, data=arr, dtype=h5py.string_dtype("utf-8"))
                else:
                    ig.create_dataset(key, data=arr)
        if extras:
            for key, value in (getattr(ep, "extras", None) or {}).items():
                g.create_dataset(f"extras/{key}", data=np.asarray(value))
        meta = getattr(ep, "metadata", None) or {}
        g.attrs["id"] = np.int64(n_eps)
        g.attrs["total_steps"] = np.int64(T)
        seed = _attr_value(meta.get("seed"))
        if seed is not None:
            g.attrs["seed"] = seed
        for k, v in flatten_infos(meta.get("options") or {}, "options/").items():
            av = _attr_value(v)
            if av is None:
                logger.warning(f"{where}: reset option {k!r} of type {type(v).__name__} is left out of the export")
            else:
                g.attrs[k] = av
        for k in ("env_index", "success"):
            av = _attr_value(meta.get(k))
            if av is not None:
                g.attrs[k] = av
        src_id = getattr(ep, "id", None)
        if src_id is not None:
            g.attrs["source_episode_id"] = np.int64(src_id)
        g.attrs["rewards_sum"] = float(rewards.sum())
        g.attrs["rewards_mean"] = float(rewards.mean())
        g.attrs["rewards_std"] = float(rewards.std())
        g.attrs["rewards_max"] = float(rewards.max())
        g.attrs["rewards_min"] = float(rewards.min())
        n_eps += 1
        n_steps += T
    return n_eps, n_steps


def _check_rows(value: Any, n: int, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _check_rows(v, n, f"{where}/{k}")
    elif isinstance(value, tuple):
        for i, v in enumerate(value):
            _check_rows(v, n, f"{where}/_index_{i}")
    elif len(value) != n:
        raise ExportError(f"{where}: expected {n} rows, got {len(value)}")


def _read_leaf(ds: h5py.Dataset, space: spaces.Space, jpeg: bool) -> Any:
    if isinstance(space, spaces.Text):
        return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in ds[()]]
    if jpeg and is_image_space(space):  # one JPEG per row: vlen bytes, or fixed (rows, L) when all equal length
        from PIL import Image  # noqa: PLC0415

        rows = ds[()]
        out = np.empty((len(rows), *space.shape), dtype=np.uint8)
        for i, b in enumerate(rows):
            out[i] = np.asarray(Image.open(io.BytesIO(np.asarray(b, dtype=np.uint8).tobytes())), dtype=np.uint8)
        return out
    return ds[()]


def _read_value(node: Any, space: spaces.Space, jpeg: bool) -> Any:
    by_path = {}
    for path, leaf in leaf_paths(space):
        ds = node["/".join(path)] if path else node
        by_path[path] = _read_leaf(ds, leaf, jpeg)
    return set_leaf(space, by_path)


def _read_group_tree(g: h5py.Group, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in g.items():
        if isinstance(v, h5py.Group):
            out.update(_read_group_tree(v, f"{prefix}{k}/"))
        else:
            arr = v[()]
            if isinstance(arr, np.ndarray) and arr.dtype.kind in "OS":
                arr = np.array([x.decode("utf-8") if isinstance(x, bytes) else x for x in arr.ravel()],
                               dtype=object).reshape(arr.shape)
            out[f"{prefix}{k}"] = arr
    return out


def read_episode_group(g: h5py.Group, observation_space, action_space, *, jpeg: bool, index: int) -> MemoryEpisode:
    """Read one ``episode_<i>`` group written in the Minari layout."""
    obs = _read_value(g["observations"], observation_space, jpeg)
    act = _read_value(g["actions"], action_space, jpeg)
    term = np.asarray(g["terminations"][()], dtype=bool)
    trunc = np.asarray(g["truncations"][()], dtype=bool)
    infos = unflatten_infos(_read_group_tree(g["infos"])) if "infos" in g else {}
    extras = _read_group_tree(g["extras"]) if "extras" in g else {}
    attrs = dict(g.attrs)
    meta: dict[str, Any] = {}
    options = {k[len("options/"):]: _plain(v) for k, v in attrs.items() if k.startswith("options/")}
    meta["seed"] = int(attrs["seed"]) if "seed" in attrs else None
    meta["options"] = unflatten_infos(options) if options else None
    meta["terminated"] = bool(term[-1]) if len(term) else False
    meta["truncated"] = bool(trunc[-1]) if len(trunc) else False
    for k in ("env_index", "success", "source_episode_id"):
        if k in attrs:
            meta[k] = _plain(attrs[k])
    return MemoryEpisode(index, obs, act, np.asarray(g["rewards"][()], dtype=np.float64), term, trunc,
                         infos=infos, metadata=meta, extras=extras)


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


# ------------------------------------------------------------------------------------------------
# Whole datasets
# ------------------------------------------------------------------------------------------------
def write_minari(
    dataset: Any,
    root: str | os.PathLike,
    dataset_id: str,
    *,
    jpeg_encoding: bool = True,
    jpeg_quality: int = 95,
    overwrite: bool = False,
    record_infos: bool = True,
    episodes: Any = None,
    **metadata: Any,
) -> Path:
    """Write ``dataset`` as the Minari dataset ``<root>/<dataset_id>`` and return its directory.

    ``metadata`` adds Minari's optional keys (``author``, ``author_email``, ``algorithm_name``,
    ``code_permalink``, ``description``, ``ref_min_score``, ``ref_max_score``, ``requirements``, ...).
    The directory is built under a temporary name and renamed at the end; an existing dataset is
    refused unless ``overwrite=True``.
    """
    validate_dataset_id(dataset_id)
    obs_space, act_space = dataset.observation_space, dataset.action_space
    obs_json = minari_space_json(obs_space, "observation_space")
    act_json = minari_space_json(act_space, "action_space")
    for label, space in (("observation", obs_space), ("action", act_space)):
        for path, leaf in leaf_paths(space):
            if jpeg_encoding and is_image_space(leaf) and not _jpeg_ok(leaf):
                raise ExportError(
                    f"{label} leaf {'/'.join(path) or '<root>'!r} is image-like for Minari ({leaf}) but has "
                    f"{leaf.shape[2]} channels; only (H, W) and (H, W, 3) frames can be JPEG-encoded. Pass "
                    "jpeg_encoding=False to store it raw (readable by minari >= 0.5.4 only)."
                )
    final = Path(root) / dataset_id
    with atomic_path(final, overwrite=overwrite, is_dir=True) as tmp:
        data_dir = tmp / "data"
        data_dir.mkdir(parents=True)
        with h5py.File(data_dir / "main_data.hdf5", "w", track_order=True) as f:
            n_eps, n_steps = write_episode_groups(
                f, dataset, obs_space, act_space, jpeg_quality=jpeg_quality if jpeg_encoding else None,
                record_infos=record_infos, episodes=episodes, desc="minari")
        meta: dict[str, Any] = {
            "dataset_id": dataset_id,
            "minari_version": MINARI_VERSION if jpeg_encoding else "0.5.4",
            "data_format": "hdf5",
            "total_episodes": n_eps,
            "total_steps": n_steps,
            "observation_space": obs_json,
            "action_space": act_json,
            "jpeg_encoding": bool(jpeg_encoding),
        }
        spec = clean_env_spec(env_spec_json(dataset))
        if spec is not None:
            meta["env_spec"] = spec
        meta.setdefault("algorithm_name", "gym_aquacollect")
        meta.setdefault("description", "Recorded with gym_aquacollect")
        for k, v in metadata.items():
            meta[k] = sorted(v) if isinstance(v, (set, frozenset)) else v
        meta["dataset_size"] = round(sum(p.stat().st_size for p in data_dir.iterdir()) / 1e6, 1)
        (data_dir / "metadata.json").write_text(json.dumps(meta))
    logger.info(f"wrote Minari dataset {dataset_id!r} ({n_eps} episodes, {n_steps} steps) to {final}")
    return final


def _default_dataset_id(dataset: Any) -> str:
    spec = env_spec_json(dataset)
    name = "dataset"
    if spec:
        try:
            env_id = json.loads(spec).get("id") or ""
            env_id = env_id.split(":")[-1].split("/")[-1]
            env_id = re.sub(r"-v\d+$", "", env_id)
            name = re.sub(r"[^-_\w]", "_", env_id).lower() or "dataset"
        except ValueError:
            pass
    return f"aquacollect/{name}/recorded-v0"


def to_minari(dataset: Any, dataset_id: str | None = None, *, root: str | os.PathLike | None = None,
              **kwargs: Any) -> Path:
    """Write ``dataset`` into the user's Minari root as ``dataset_id`` (``minari.load_dataset(dataset_id)`` opens
    it). The env spec is included when it round-trips through ``EnvSpec.from_json``."""
    dataset_id = dataset_id or _default_dataset_id(dataset)
    return write_minari(dataset, Path(root) if root is not None else minari_root(), dataset_id, **kwargs)


def read_minari(source: str | os.PathLike) -> MemoryDataset:
    """Open a Minari dataset (an id under the Minari root, or its directory) as a dataset."""
    d = resolve_minari(source)
    if d is None:
        raise FileNotFoundError(
            f"{source!s} is not a Minari dataset: no data/metadata.json there or under {minari_root()} "
            "(set MINARI_DATASETS_PATH to the right root)")
    meta_path = dataset_file(d, "data/metadata.json", "Minari metadata")
    meta = json.loads(read_regular_file(meta_path))
    for key in ("data_format", "total_episodes"):
        if key not in meta:
            raise ValueError(f"{meta_path}: required key {key!r} is missing")
    if meta["data_format"] != "hdf5":
        raise ValueError(f"{meta_path}: data_format {meta['data_format']!r} is not supported by this reader; "
                         "only Minari's 'hdf5' format is (convert with minari first)")
    if "observation_space" in meta and "action_space" in meta:
        obs_space = minari_space_from_json(meta["observation_space"])
        act_space = minari_space_from_json(meta["action_space"])
    else:
        from gym_aquacollect.data.env_spec import recover_environment

        # the env named by the dataset, from the local registry: the dataset's entry point never runs here
        try:
            env = recover_environment(meta.get("env_spec"))
        except (ValueError, TypeError, gym.error.Error) as e:
            raise DatasetFormatError(
                f"{meta_path}: the file stores no observation/action spaces, and its env cannot be made from the "
                f"local registry ({type(e).__name__}: {str(e)[:300]})") from None
        obs_space, act_space = env.observation_space, env.action_space
        env.close()
    jpeg = bool(meta.get("jpeg_encoding", True))
    h5_path = dataset_file(d, "data/main_data.hdf5", "Minari data file")
    n = int(meta["total_episodes"])
    lengths = []
    with h5py.File(h5_path, "r") as f:
        check_contained(f, h5_path)  # a file from a stranger must not read other files
        for i in range(n):
            if f"episode_{i}" not in f:
                raise ValueError(f"{h5_path}: group episode_{i} is missing (total_episodes is {n})")
            g = f[f"episode_{i}"]
            lengths.append(int(g.attrs["total_steps"]) if "total_steps" in g.attrs else len(g["rewards"]))

    def load(i: int) -> MemoryEpisode:
        with h5py.File(h5_path, "r") as f:
            return read_episode_group(f[f"episode_{i}"], obs_space, act_space, jpeg=jpeg, index=i)

    extra = {k: v for k, v in meta.items() if k not in ("observation_space", "action_space", "env_spec")}
    extra["source_format"] = "minari"
    return MemoryDataset(LazyEpisodes(n, load), obs_space, act_space, env_spec=meta.get("env_spec"),
                         metadata=extra, path=d, episode_lengths=lengths)
