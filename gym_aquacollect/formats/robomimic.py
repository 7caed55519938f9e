"""robomimic / Isaac Lab demo HDF5 (teacher-student and imitation learning).

Contents:
    * :func:`write_robomimic` - write ``/data/demo_<k>`` groups that robomimic's ``SequenceDataset`` and
      Isaac Lab's ``HDF5DatasetFileHandler`` read.
    * :func:`read_robomimic` - open a robomimic or Isaac Lab demo file as a dataset.
    * :func:`is_robomimic_file` - whether an HDF5 file has the ``/data/demo_<int>`` layout.

Layout written (T = steps of the demo)::

    /                      attrs format_version = int64 1 (Isaac Lab 3.0: XYZW quaternions / no root_pose)
    /data                  attrs total = sum of num_samples, env_args = JSON {"env_name", "type": 2, "env_kwargs"}
    /data/demo_<k>         attrs num_samples = T, success (if known), seed (if known), source_episode_id
    /data/demo_<k>/obs/<key>        o_0 .. o_{T-1}; a Dict space gives one key per entry (nested Dicts nest),
                                    a Tuple ``_index_<i>``, any other space the key ``obs_key`` ("observation")
    /data/demo_<k>/next_obs/<key>   o_1 .. o_T
    /data/demo_<k>/actions          (T, A) 2-D: Box actions reshaped, Discrete (T, 1), Dict/Tuple flattened
                                    with ``gymnasium.spaces.flatten``; with ``actions="teacher"`` the teacher's
    /data/demo_<k>/rewards, dones   (T,) float64 / uint8 (dones = terminated or truncated)
    /data/demo_<k>/terminated, truncated   (T,) bool, for gym_aquacollect's reader
    /data/demo_<k>/executed_actions (T, ...) the executed actions, when ``actions="teacher"``
    /data/demo_<k>/extras/<name>    other per-step columns (e.g. ``teacher_actions``, privileged obs)
    /mask/train, /mask/valid        demo names (bytes), a seeded split
    /aquacollect/...                our spaces, env spec and infos layout for an exact import

Isaac Lab's handler turns every leaf into a torch tensor, so Text observations (strings) are not readable
there; robomimic reads every leaf as float32.

Example:
    >>> import tempfile, h5py, numpy as np
    >>> from gymnasium import spaces
    >>> from gym_aquacollect.formats._common import MemoryDataset, MemoryEpisode
    >>> ep = MemoryEpisode(0, np.zeros((3, 2), np.float32), np.zeros((2, 1), np.float32), np.ones(2),
    ...                    np.array([False, True]), np.zeros(2, bool), metadata={"success": True})
    >>> path = write_robomimic(MemoryDataset([ep], spaces.Box(-1, 1, (2,)), spaces.Box(-1, 1, (1,))),
    ...                        tempfile.mkdtemp() + "/demo.hdf5")
    >>> with h5py.File(path) as f:
    ...     int(f["data"].attrs["total"]), f["data/demo_0/obs/observation"].shape, bool(f["data/demo_0"].attrs["success"])
    (2, (2, 2), True)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from gymnasium import spaces
from tqdm.auto import tqdm

from gym_aquacollect.data.memory import (
    ExportError,
    MemoryDataset,
    MemoryEpisode,
    atomic_path,
    env_spec_json,
    episode_success,
    episodes_of,
    flatten_batch,
    get_leaf,
    leaf_paths,
    set_leaf,
    unflatten_batch,
)
from gym_aquacollect.logs import logger
from gym_aquacollect.schema.spaces import space_from_json, space_to_json
from gym_aquacollect.storage.safety import check_contained

__all__ = ["write_robomimic", "read_robomimic", "is_robomimic_file"]

DEFAULT_OBS_KEY = "observation"


def _obs_keys(space: spaces.Space, obs_key: str) -> list[tuple[str, tuple[str, ...], spaces.Space]]:
    """``(hdf5 key, leaf path, leaf space)`` for the obs group."""
    out = []
    for path, leaf in leaf_paths(space):
        out.append(("/".join(path) if path else obs_key, path, leaf))
    return out


def _actions_2d(space: spaces.Space, value: Any, T: int) -> np.ndarray:
    if isinstance(space, (spaces.Dict, spaces.Tuple)):
        return flatten_batch(space, value, T).astype(np.float32)
    if isinstance(space, spaces.Text):
        raise ExportError("Text actions cannot be written as robomimic's 2-D actions array")
    arr = np.asarray(value)
    return arr.reshape(T, -1)


def _leaf_array(space: spaces.Space, value: Any) -> np.ndarray:
    if isinstance(space, spaces.Text):
        return np.array(list(value), dtype=object)
    return np.asarray(value)


def _create(g: h5py.Group, name: str, arr: np.ndarray, compression: Any) -> None:
    kw: dict[str, Any] = {}
    if arr.dtype.kind == "O":
        kw["dtype"] = h5py.string_dtype("utf-8")
    elif compression and arr.size:
        kw["compression"] = compression
    g.create_dataset(name, data=arr, **kw)


def write_robomimic(
    dataset: Any,
    path: str | os.PathLike,
    *,
    only_successful: bool = False,
    actions: str = "executed",
    obs_key: str = DEFAULT_OBS_KEY,
    valid_fraction: float = 0.1,
    split_seed: int = 0,
    env_name: str | None = None,
    env_kwargs: dict | None = None,
    compression: Any = "gzip",
    overwrite: bool = False,
    episodes: Any = None,
) -> Path:
    """Write ``dataset`` as a robomimic / Isaac Lab demo file.

    Args:
        only_successful: keep only episodes whose success is known and True (``metadata["success"]`` or a
            final ``success`` / ``is_success`` info).
        actions: ``"executed"`` (what the env received) or ``"teacher"`` (the ``teacher_actions`` column
            recorded by ``CollectingWrapper(env, teacher=...)``; the executed ones go to ``executed_actions``).
        obs_key: the obs key used for a non-Dict/Tuple observation space.
        valid_fraction, split_seed: the ``mask/train`` / ``mask/valid`` split.
        env_name, env_kwargs: override what goes into ``env_args`` (default: from the env spec).
    """
    if actions not in ("executed", "teacher"):
        raise ValueError(f"actions must be 'executed' or 'teacher', got {actions!r}")
    obs_space, act_space = dataset.observation_space, dataset.action_space
    keys = _obs_keys(obs_space, obs_key)
    spec_json = env_spec_json(dataset)
    spec = json.loads(spec_json) if spec_json else {}
    env_args = {
        "env_name": env_name if env_name is not None else (spec.get("id") or ""),
        "type": 2,
        "env_kwargs": dict(env_kwargs) if env_kwargs is not None else dict(spec.get("kwargs") or {}),
    }
    final = Path(path)
    names: list[str] = []
    total = 0
    with atomic_path(final, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format_version"] = np.int64(1)
            data = f.create_group("data")
            data.attrs["total"] = np.int64(0)
            data.attrs["env_args"] = json.dumps(env_args)
            for ep in tqdm(episodes if episodes is not None else episodes_of(dataset), desc="robomimic",
                           unit="ep", disable=None, leave=False):
                T = len(ep)
                if T == 0:
                    continue
                success = episode_success(ep)
                if only_successful and success is not True:
                    continue
                name = f"demo_{len(names)}"
                where = f"episode {getattr(ep, 'id', len(names))}"
                g = data.create_group(name)
                for key, p, leaf in keys:
                    try:
                        col = _leaf_array(leaf, get_leaf(ep.observations, p))
                    except (KeyError, IndexError, TypeError) as e:
                        raise ExportError(f"{where}: observations lack {key!r} ({e})") from e
                    if len(col) != T + 1:
                        raise ExportError(f"{where}: observation {key!r} has {len(col)} rows, expected {T + 1}")
                    _create(g, f"obs/{key}", col[:-1], compression)
                    _create(g, f"next_obs/{key}", col[1:], compression)
                executed = _actions_2d(act_space, ep.actions, T)
                extras = dict(getattr(ep, "extras", None) or {})
                if actions == "teacher":
                    if "teacher_actions" not in extras:
                        raise ExportError(f"{where}: actions='teacher' but the episode has no 'teacher_actions' "
                                          "column; record with CollectingWrapper(env, teacher=policy)")
                    teacher = np.asarray(extras["teacher_actions"])
                    g.create_dataset("actions", data=teacher.reshape(T, -1))
                    g.create_dataset("executed_actions", data=executed)
                else:
                    g.create_dataset("actions", data=executed)
                term = np.asarray(ep.terminations, dtype=bool)
                trunc = np.asarray(ep.truncations, dtype=bool).copy()
                if not (term[-1] or trunc[-1]):
                    trunc[-1] = True
                g.create_dataset("rewards", data=np.asarray(ep.rewards, dtype=np.float64))
                g.create_dataset("dones", data=(term | trunc).astype(np.uint8))
                g.create_dataset("terminated", data=term)
                g.create_dataset("truncated", data=trunc)
                for k, v in extras.items():
                    arr = np.asarray(v)
                    _create(g, f"extras/{k}", arr.astype(object) if arr.dtype.kind == "U" else arr, compression)
                g.attrs["num_samples"] = np.int64(T)
                if success is not None:
                    g.attrs["success"] = np.bool_(success)
                meta = getattr(ep, "metadata", None) or {}
                if meta.get("seed") is not None:
                    g.attrs["seed"] = int(meta["seed"])
                if meta.get("env_index") is not None:
                    g.attrs["env_index"] = int(meta["env_index"])
                if getattr(ep, "id", None) is not None:
                    g.attrs["source_episode_id"] = np.int64(ep.id)
                if meta.get("options"):
                    try:
                        g.attrs["options"] = json.dumps(meta["options"])
                    except TypeError:
                        logger.warning(f"{where}: reset options are not JSON-serializable; left out")
                total += T
                data.attrs["total"] = np.int64(total)
                names.append(name)
            if not names:
                if only_successful:
                    raise ExportError("no successful episodes to export (success is known from metadata['success'] "
                                      "or a final 'success'/'is_success' info)")
                raise ExportError("no episodes with steps to export")
            rng = np.random.default_rng(split_seed)
            n_valid = int(round(valid_fraction * len(names))) if len(names) > 1 else 0
            valid = set(rng.choice(len(names), size=n_valid, replace=False).tolist()) if n_valid else set()
            f.create_dataset("mask/train", data=np.array([n for i, n in enumerate(names) if i not in valid], dtype="S"))
            f.create_dataset("mask/valid", data=np.array([n for i, n in enumerate(names) if i in valid], dtype="S"))
            a = f.create_group("aquacollect")
            a.attrs["observation_space"] = space_to_json(obs_space)
            a.attrs["action_space"] = space_to_json(act_space)
            a.attrs["obs_key"] = obs_key
            a.attrs["actions"] = actions
            if spec_json:
                a.attrs["env_spec"] = spec_json
    logger.info(f"wrote robomimic file {final} ({len(names)} demos, {total} steps)")
    return final


def is_robomimic_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an HDF5 file with a ``/data`` group of ``demo_<int>`` groups."""
    try:
        with h5py.File(path, "r") as f:
            data = f.get("data")
            return isinstance(data, h5py.Group) and all(
                k.startswith("demo_") and k[5:].isdigit() for k in data.keys()) and (
                "env_args" in data.attrs or len(data) > 0)
    except (OSError, ValueError):
        return False


def _read_tree(node: Any, prefix: str = "") -> dict[str, np.ndarray]:
    if isinstance(node, h5py.Dataset):
        return {prefix: node[()]}
    out: dict[str, np.ndarray] = {}
    for k, v in node.items():
        out.update(_read_tree(v, f"{prefix}/{k}" if prefix else k))
    return out


def _decode(arr: np.ndarray) -> Any:
    if arr.dtype.kind in "OS":
        return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in arr]
    return arr


def _leaf_box(arr: np.ndarray) -> spaces.Space:
    if arr.dtype == np.uint8:
        return spaces.Box(0, 255, arr.shape[1:], np.uint8)
    dtype = arr.dtype if arr.dtype.kind == "f" else np.float32
    return spaces.Box(-np.inf, np.inf, arr.shape[1:], dtype)


def read_robomimic(path: str | os.PathLike, *, filter_key: str | None = None) -> MemoryDataset:
    """Open a robomimic / Isaac Lab demo file (``filter_key``: only the demos listed in ``mask/<filter_key>``).

    Observations are ``obs`` rows plus the last ``next_obs`` row; without ``next_obs`` (Isaac Lab's recorder
    does not store it) the last recorded obs becomes the final observation and the demo is one step shorter.
    Without ``rewards`` / ``dones`` (Isaac Lab) rewards are 0 and the demo ends terminated if it succeeded,
    truncated otherwise.
    """
    path = Path(path)
    with h5py.File(path, "r") as f:
        check_contained(f, path)  # a file from a stranger must not read other files
        if "data" not in f:
            raise ValueError(f"{path} is not a robomimic / Isaac Lab file: no /data group")
        data = f["data"]
        names = sorted((k for k in data.keys() if k.startswith("demo_")), key=lambda n: int(n[5:]))
        if filter_key is not None:
            names = sorted((x.decode() for x in f[f"mask/{filter_key}"][()]), key=lambda n: int(n[5:]))
        env_args = json.loads(data.attrs.get("env_args", "{}") or "{}")
        a = f.get("aquacollect")
        ours = isinstance(a, h5py.Group)
        obs_space = space_from_json(a.attrs["observation_space"]) if ours else None
        act_space = space_from_json(a.attrs["action_space"]) if ours else None
        obs_key = str(a.attrs["obs_key"]) if ours else DEFAULT_OBS_KEY
        actions_mode = str(a.attrs.get("actions", "executed")) if ours else "executed"
        spec = str(a.attrs["env_spec"]) if ours and "env_spec" in a.attrs else None
        episodes = []
        for name in names:
            g = data[name]
            obs_node = g["obs"]
            if isinstance(obs_node, h5py.Dataset):
                obs_tree = {obs_key: obs_node[()]}
                nxt_tree = {obs_key: g["next_obs"][()]} if "next_obs" in g else None
            else:
                obs_tree = _read_tree(obs_node)
                nxt_tree = _read_tree(g["next_obs"]) if "next_obs" in g else None
            acts = g["executed_actions"][()] if actions_mode == "teacher" and "executed_actions" in g else g["actions"][()]
            T = int(g.attrs.get("num_samples", len(acts)))
            if nxt_tree is not None:
                cols = {k: np.concatenate([v[:T], nxt_tree[k][T - 1:T]]) if v.dtype.kind not in "OS" else
                        np.concatenate([v[:T], nxt_tree[k][T - 1:T]]).astype(object) for k, v in obs_tree.items()}
            else:
                cols = {k: v[:T] for k, v in obs_tree.items()}
                T -= 1
                acts = acts[:T]
                if T <= 0:
                    continue
            success = bool(g.attrs["success"]) if "success" in g.attrs else None
            rewards = np.asarray(g["rewards"][()], dtype=np.float64)[:T] if "rewards" in g else np.zeros(T)
            if "terminated" in g and "truncated" in g:
                term = np.asarray(g["terminated"][()], dtype=bool)[:T]
                trunc = np.asarray(g["truncated"][()], dtype=bool)[:T]
            else:
                dones = np.asarray(g["dones"][()], dtype=bool)[:T] if "dones" in g else np.zeros(T, bool)
                term, trunc = dones.copy(), np.zeros(T, bool)
                if not term[-1]:
                    if success:
                        term[-1] = True
                    else:
                        trunc[-1] = True
            if obs_space is None:
                if len(cols) == 1 and obs_key in cols:
                    obs_space = _leaf_box(cols[obs_key])
                else:
                    obs_space = _dict_space_from_tree({k: _leaf_box(v) for k, v in cols.items()})
            if act_space is None:
                act_space = spaces.Box(-np.inf, np.inf, acts.shape[1:], acts.dtype if acts.dtype.kind == "f" else np.float32)
            by_path = {}
            for key, p, _leaf in _obs_keys(obs_space, obs_key):
                by_path[p] = _decode(cols[key])
            obs_val = set_leaf(obs_space, by_path)
            if isinstance(act_space, (spaces.Dict, spaces.Tuple)):
                act_val = unflatten_batch(act_space, np.asarray(acts))
            else:
                act_val = np.asarray(acts).reshape((T, *act_space.shape)).astype(act_space.dtype, copy=False)
            extras = {k: v[:T] for k, v in _read_tree(g["extras"]).items()} if "extras" in g else {}
            for k in ("processed_actions",):
                if k in g:
                    extras[k] = g[k][()][:T]
            if actions_mode == "teacher" and "teacher_actions" not in extras:
                extras["teacher_actions"] = g["actions"][()][:T]
            meta = {"seed": int(g.attrs["seed"]) if "seed" in g.attrs else None,
                    "options": json.loads(g.attrs["options"]) if "options" in g.attrs else None,
                    "terminated": bool(term[-1]), "truncated": bool(trunc[-1]), "demo": name}
            if success is not None:
                meta["success"] = success
            for k in ("env_index", "source_episode_id"):
                if k in g.attrs:
                    meta[k] = int(g.attrs[k])
            episodes.append(MemoryEpisode(len(episodes), obs_val, act_val, rewards, term, trunc,
                                          metadata=meta, extras=extras))
        root_meta = {"source_format": "robomimic", "env_args": env_args}
        if "format_version" in f.attrs:
            root_meta["format_version"] = int(f.attrs["format_version"])
    if obs_space is None:
        raise ValueError(f"{path} holds no readable demos")
    return MemoryDataset(episodes, obs_space, act_space, env_spec=spec, metadata=root_meta, path=path)


def _dict_space_from_tree(flat: dict[str, spaces.Space]) -> spaces.Dict:
    tree: dict = {}
    for key, s in flat.items():
        parts = key.split("/")
        d = tree
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = s

    def build(d):
        return spaces.Dict({k: build(v) if isinstance(v, dict) else v for k, v in d.items()})

    return build(tree)
