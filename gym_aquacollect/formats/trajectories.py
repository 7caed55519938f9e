"""Trajectory files: the seed's ``export_trajectories(path, format="pickle"|"npz"|"hdf5", include_metadata=True)``.

Contents:
    * :func:`export_trajectories` - write every episode to one file in the chosen format.
    * :func:`load_trajectories` - read such a file back as a dataset; a pickle is only opened with
      ``allow_pickle=True``.
    * :func:`sniff_format` - ``"pickle"``, ``"npz"``, ``"hdf5"`` or None, from the file's first bytes.
    * :class:`UnsafePickleError` - raised for a pickle opened without ``allow_pickle=True``.

Formats:
    ``pickle``: a dict ``{"format": "gym_aquacollect.trajectories", "version", "observation_space",
    "action_space" (space JSON), "env_spec", "metadata", "episodes": [{"id", "observations", "actions",
    "rewards", "terminations", "truncations", "infos", "extras", "metadata"}, ...]}`` (nested values as in
    ``Episode``). Loading a pickle runs whatever code the file names, so only load files you trust.

    ``npz``: ``np.savez_compressed`` with a JSON header ``__aquacollect__`` and arrays
    ``episodes/<i>/{observations,actions}/<leaf>`` (``_`` for a non-nested space), ``rewards``,
    ``terminations``, ``truncations``, ``infos/<key>`` and ``extras/<key>``; readable with
    ``np.load(path)`` and ``allow_pickle=False`` (Text becomes unicode arrays).

    ``hdf5``: the Minari per-episode layout (``episode_<i>`` groups, images stored raw, extras under
    ``episode_<i>/extras``) with the header as root attributes.

``include_metadata=False`` leaves out the dataset metadata, the env spec, episode metadata and infos (the
spaces are always kept: they are needed to rebuild nested values).

Example:
    >>> import tempfile, numpy as np
    >>> from gymnasium import spaces
    >>> from gym_aquacollect.formats._common import MemoryDataset, MemoryEpisode
    >>> ep = MemoryEpisode(0, np.zeros((3, 2), np.float32), np.array([0, 1]), np.ones(2),
    ...                    np.array([False, True]), np.zeros(2, bool))
    >>> ds = MemoryDataset([ep], spaces.Box(-1, 1, (2,)), spaces.Discrete(2))
    >>> p = export_trajectories(ds, tempfile.mkdtemp() + "/t.pkl")
    >>> try:
    ...     load_trajectories(p)
    ... except UnsafePickleError:
    ...     print("refused")
    refused
    >>> len(load_trajectories(p, allow_pickle=True))
    1
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

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
from gym_aquacollect.schema.spaces import space_from_json, space_to_json
from gym_aquacollect.storage.safety import check_contained

__all__ = ["export_trajectories", "load_trajectories", "sniff_format", "UnsafePickleError", "FORMATS"]

FORMATS = ("pickle", "npz", "hdf5")
MAGIC = "gym_aquacollect.trajectories"
VERSION = 1


class UnsafePickleError(ValueError):
    """A pickle file was about to be loaded without ``allow_pickle=True``."""


def sniff_format(path: str | os.PathLike) -> str | None:
    """The trajectory format of ``path`` from its first bytes (without parsing or unpickling anything)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except (OSError, IsADirectoryError):
        return None
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz"
    if head[:1] == b"\x80" or Path(path).suffix in (".pkl", ".pickle"):
        return "pickle"
    return None


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return repr(v)


def _header(dataset: Any, include_metadata: bool) -> dict[str, Any]:
    h = {"format": MAGIC, "version": VERSION,
         "observation_space": space_to_json(dataset.observation_space),
         "action_space": space_to_json(dataset.action_space)}
    if include_metadata:
        h["env_spec"] = env_spec_json(dataset)
        h["metadata"] = _json_safe(dict(getattr(dataset, "metadata", None) or {}))
    return h


def export_trajectories(dataset: Any, path: str | os.PathLike, format: str = "pickle",
                        include_metadata: bool = True, *, overwrite: bool = True) -> Path:
    """Write all episodes of ``dataset`` to ``path`` as ``"pickle"``, ``"npz"`` or ``"hdf5"``."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    final = Path(path)
    header = _header(dataset, include_metadata)
    n = 0
    with atomic_path(final, overwrite=overwrite) as tmp:
        if format == "pickle":
            eps = []
            for ep in tqdm(episodes_of(dataset), desc="pickle", unit="ep", disable=None, leave=False):
                d = {"id": int(ep.id), "observations": ep.observations, "actions": ep.actions,
                     "rewards": np.asarray(ep.rewards), "terminations": np.asarray(ep.terminations),
                     "truncations": np.asarray(ep.truncations),
                     "extras": dict(getattr(ep, "extras", None) or {})}
                if include_metadata:
                    d["infos"] = ep.infos
                    d["metadata"] = dict(ep.metadata or {})
                eps.append(d)
            header["episodes"] = eps
            n = len(eps)
            with open(tmp, "wb") as fh:
                pickle.dump(header, fh, protocol=pickle.HIGHEST_PROTOCOL)
        elif format == "npz":
            arrays: dict[str, np.ndarray] = {}
            ep_meta = []
            for ep in tqdm(episodes_of(dataset), desc="npz", unit="ep", disable=None, leave=False):
                pre = f"episodes/{n}/"
                for label, space, value in (("observations", dataset.observation_space, ep.observations),
                                            ("actions", dataset.action_space, ep.actions)):
                    for p, leaf in leaf_paths(space):
                        v = get_leaf(value, p)
                        arrays[pre + label + "/" + ("/".join(p) or "_")] = (
                            np.array(list(v), dtype=str) if isinstance(leaf, spaces.Text) else np.asarray(v))
                arrays[pre + "rewards"] = np.asarray(ep.rewards)
                arrays[pre + "terminations"] = np.asarray(ep.terminations, dtype=bool)
                arrays[pre + "truncations"] = np.asarray(ep.truncations, dtype=bool)
                for k, v in (getattr(ep, "extras", None) or {}).items():
                    arrays[pre + "extras/" + k] = np.asarray(v)
                if include_metadata:
                    for k, v in flatten_infos(ep.infos or {}).items():
                        arr = np.asarray(v)
                        if arr.dtype.kind == "O":
                            if not all(isinstance(x, str) for x in arr.ravel()):
                                logger.warning(f"episode {ep.id}: info {k!r} holds Python objects; left out of npz")
                                continue
                            arr = arr.astype(str)
                        arrays[pre + "infos/" + k] = arr
                    ep_meta.append({"id": int(ep.id), "metadata": _json_safe(dict(ep.metadata or {}))})
                else:
                    ep_meta.append({"id": int(ep.id)})
                n += 1
            header["episodes"] = ep_meta
            arrays["__aquacollect__"] = np.array(json.dumps(header))
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        else:
            from gym_aquacollect.formats.minari import write_episode_groups

            with h5py.File(tmp, "w", track_order=True) as f:
                n, _ = write_episode_groups(f, dataset, dataset.observation_space, dataset.action_space,
                                            jpeg_quality=None, record_infos=include_metadata, extras=True,
                                            desc="hdf5")
                if not include_metadata:
                    for i in range(n):
                        for k in ("seed", "env_index", "success"):
                            f[f"episode_{i}"].attrs.pop(k, None)
                        for k in [k for k in f[f"episode_{i}"].attrs if k.startswith("options/")]:
                            del f[f"episode_{i}"].attrs[k]
                for k, v in header.items():
                    f.attrs[k] = v if k in ("format", "version") else json.dumps(v)
                f.attrs["total_episodes"] = n
    logger.info(f"wrote {n} episodes to {final} ({format})")
    return final


def _check_header(h: Any, path: Path) -> dict:
    if not isinstance(h, dict) or h.get("format") != MAGIC:
        raise ValueError(f"{path} is not a gym_aquacollect trajectory file (no {MAGIC!r} header)")
    return h


def load_trajectories(path: str | os.PathLike, *, allow_pickle: bool = False) -> MemoryDataset:
    """Read a file written by :func:`export_trajectories` as a dataset.

    Raises:
        UnsafePickleError: ``path`` is a pickle and ``allow_pickle`` is False. Nothing is unpickled.
    """
    path = Path(path)
    fmt = sniff_format(path)
    if fmt == "pickle":
        if not allow_pickle:
            raise UnsafePickleError(
                f"{path} is a pickle file; unpickling can run arbitrary code, so it is refused by default. "
                "If you trust where this file came from, pass allow_pickle=True (or export with format='npz' "
                "or 'hdf5', which need no pickle)."
            )
        with open(path, "rb") as fh:
            h = _check_header(pickle.load(fh), path)  # noqa: S301 - the caller opted in with allow_pickle=True
        obs_space, act_space = space_from_json(h["observation_space"]), space_from_json(h["action_space"])
        eps = [MemoryEpisode(int(d["id"]), d["observations"], d["actions"], np.asarray(d["rewards"]),
                             np.asarray(d["terminations"]), np.asarray(d["truncations"]),
                             infos=d.get("infos") or {}, metadata=d.get("metadata") or {},
                             extras=d.get("extras") or {}) for d in h["episodes"]]
        return MemoryDataset(eps, obs_space, act_space, env_spec=h.get("env_spec"),
                             metadata={**(h.get("metadata") or {}), "source_format": "pickle"}, path=path)
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as z:
            h = _check_header(json.loads(str(z["__aquacollect__"])), path)
            files = {k: z[k] for k in z.files if k != "__aquacollect__"}
        obs_space, act_space = space_from_json(h["observation_space"]), space_from_json(h["action_space"])
        eps = []
        for i, em in enumerate(h["episodes"]):
            pre = f"episodes/{i}/"

            def value(label: str, space: spaces.Space, pre=pre) -> Any:
                by_path = {}
                for p, leaf in leaf_paths(space):
                    arr = files[pre + label + "/" + ("/".join(p) or "_")]
                    by_path[p] = [str(x) for x in arr] if isinstance(leaf, spaces.Text) else arr
                return set_leaf(space, by_path)

            infos = unflatten_infos({k[len(pre) + 6:]: v for k, v in files.items() if k.startswith(pre + "infos/")})
            extras = {k[len(pre) + 7:]: v for k, v in files.items() if k.startswith(pre + "extras/")}
            eps.append(MemoryEpisode(int(em["id"]), value("observations", obs_space), value("actions", act_space),
                                     files[pre + "rewards"], files[pre + "terminations"], files[pre + "truncations"],
                                     infos=infos, metadata=em.get("metadata") or {}, extras=extras))
        return MemoryDataset(eps, obs_space, act_space, env_spec=h.get("env_spec"),
                             metadata={**(h.get("metadata") or {}), "source_format": "npz"}, path=path)
    if fmt == "hdf5":
        from gym_aquacollect.formats.minari import read_episode_group

        with h5py.File(path, "r") as f:
            check_contained(f, path)  # a file from a stranger must not read other files
            if f.attrs.get("format") != MAGIC:
                raise ValueError(f"{path} is not a gym_aquacollect trajectory file (root attribute format != {MAGIC!r})")
            h = {k: (f.attrs[k] if k in ("format", "version", "total_episodes") else json.loads(f.attrs[k]))
                 for k in f.attrs}
            n = int(h["total_episodes"])
        obs_space, act_space = space_from_json(h["observation_space"]), space_from_json(h["action_space"])

        def load(i: int) -> MemoryEpisode:
            with h5py.File(path, "r") as f:
                ep = read_episode_group(f[f"episode_{i}"], obs_space, act_space, jpeg=False, index=i)
            if ep.metadata.get("source_episode_id") is not None:
                ep.id = int(ep.metadata.pop("source_episode_id"))
            return ep

        meta = h.get("metadata") or {}
        return MemoryDataset(LazyEpisodes(n, load), obs_space, act_space, env_spec=h.get("env_spec"),
                             metadata={**meta, "source_format": "hdf5-trajectories"}, path=path)
    raise ExportError(f"{path}: not a pickle, npz or HDF5 trajectory file")
