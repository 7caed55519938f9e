"""D4RL-layout HDF5: flat arrays concatenated over episodes, as d4rl's ``get_dataset`` and d3rlpy read them.

Contents:
    * :func:`write_d4rl` - write ``observations, actions, rewards, terminals, timeouts, next_observations``.
    * :func:`read_d4rl` - open such a file as a dataset (episodes split on ``terminals | timeouts``).
    * :func:`is_d4rl_file` - whether an HDF5 file has the D4RL layout.

Layout and semantics (N = total steps):
    ``observations`` float32 (N, *obs) = o_0 .. o_{T-1} of each episode; ``next_observations`` float32 the
    o_1 .. o_T that follow (so the final observation is kept); ``actions`` (N, *act): float32 for Box
    actions, integers for Discrete ((N,)), MultiDiscrete and MultiBinary; ``rewards`` float32 (N,);
    ``terminals`` = terminated; ``timeouts`` = truncated and not terminated (disjoint, as d3rlpy 2.8.1
    requires). Every episode ends with exactly one flag: an episode closed without one gets ``timeouts`` set.

Fidelity costs: observations and rewards are cast to float32 (exact for float32 data and small integers);
Dict/Tuple observations (and actions) are flattened with ``gymnasium.spaces.flatten`` (Discrete leaves become
one-hot) and unflattened on import; a step that is both terminated and truncated is exported as terminated
only. Text spaces cannot be exported. Infos whose leaves are numbers of a fixed shape are written under
``infos/<key>`` aligned with ``observations`` (row t = the info that came with o_t); gym_aquacollect's reader
returns them as per-step ``extras`` (``infos/<key>``). Our spaces, env spec and per-episode metadata go under
``aquacollect/`` so the import is exact otherwise.

Example:
    >>> import tempfile, h5py, numpy as np
    >>> from gymnasium import spaces
    >>> from gym_aquacollect.formats._common import MemoryDataset, MemoryEpisode
    >>> ep = MemoryEpisode(0, np.arange(6, dtype=np.float32).reshape(3, 2), np.array([0, 1]), np.ones(2),
    ...                    np.array([False, True]), np.zeros(2, bool))
    >>> path = write_d4rl(MemoryDataset([ep], spaces.Box(-9, 9, (2,)), spaces.Discrete(2)),
    ...                   tempfile.mkdtemp() + "/d4rl.hdf5")
    >>> with h5py.File(path) as f:
    ...     f["observations"].shape, f["terminals"][:].tolist(), f["next_observations"][-1].tolist()
    ((2, 2), [False, True], [4.0, 5.0])
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
    flatten_infos,
    take_rows,
    unflatten_batch,
)
from gym_aquacollect.logs import logger
from gym_aquacollect.schema.spaces import space_from_json, space_to_json
from gym_aquacollect.storage.safety import check_contained

__all__ = ["write_d4rl", "read_d4rl", "is_d4rl_file", "REQUIRED_KEYS"]

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")


def _is_nested(space: spaces.Space) -> bool:
    return isinstance(space, (spaces.Dict, spaces.Tuple))


def _has_text(space: spaces.Space) -> bool:
    if isinstance(space, spaces.Text):
        return True
    if isinstance(space, spaces.Dict):
        return any(_has_text(s) for s in space.spaces.values())
    if isinstance(space, spaces.Tuple):
        return any(_has_text(s) for s in space.spaces)
    return False


def _obs_rows(space: spaces.Space, value: Any, n: int) -> np.ndarray:
    if _is_nested(space):
        return flatten_batch(space, value, n).astype(np.float32)
    return np.asarray(value).reshape((n, *space.shape)).astype(np.float32, copy=False)


def _act_rows(space: spaces.Space, value: Any, n: int) -> np.ndarray:
    if _is_nested(space):
        return flatten_batch(space, value, n).astype(np.float32)
    arr = np.asarray(value).reshape((n, *space.shape))
    if isinstance(space, spaces.Box):
        return arr.astype(np.float32, copy=False)
    return arr


class _Appender:
    """Resizable datasets appended to episode by episode."""

    def __init__(self, f: h5py.File, compression: Any) -> None:
        self.f, self.compression, self.n = f, compression, {}

    def append(self, name: str, arr: np.ndarray) -> None:
        if name not in self.f:
            chunk_rows = max(1, min(4096, (1 << 20) // max(1, arr[0].nbytes if len(arr) else 1)))
            kw: dict[str, Any] = {}
            if self.compression:
                kw["compression"] = self.compression
            self.f.create_dataset(name, shape=(0, *arr.shape[1:]), maxshape=(None, *arr.shape[1:]), dtype=arr.dtype,
                                  chunks=(chunk_rows, *arr.shape[1:]), **kw)
        ds = self.f[name]
        if ds.shape[1:] != arr.shape[1:]:
            raise ExportError(f"{name}: shape {arr.shape[1:]} differs from earlier episodes' {ds.shape[1:]}")
        start = ds.shape[0]
        ds.resize(start + len(arr), axis=0)
        ds[start:] = arr


def write_d4rl(dataset: Any, path: str | os.PathLike, *, compression: Any = "gzip", include_infos: bool = True,
               overwrite: bool = False, episodes: Any = None) -> Path:
    """Write ``dataset`` as one D4RL-layout HDF5 file at ``path`` (see the module docstring for the rules)."""
    obs_space, act_space = dataset.observation_space, dataset.action_space
    for label, space in (("observation", obs_space), ("action", act_space)):
        if _has_text(space):
            raise ExportError(f"the {label} space {space} contains a Text space, which the D4RL layout (float "
                              "arrays) cannot hold; export to Minari or robomimic instead")
    final = Path(path)
    ep_meta: list[dict[str, Any]] = []
    info_keys: dict[str, tuple] | None = None
    dropped: set[str] = set()
    with atomic_path(final, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            app = _Appender(f, compression)
            n_steps = 0
            for ep in tqdm(episodes if episodes is not None else episodes_of(dataset), desc="d4rl", unit="ep",
                           disable=None, leave=False):
                T = len(ep)
                if T == 0:
                    continue
                obs = _obs_rows(obs_space, ep.observations, T + 1)
                term = np.asarray(ep.terminations, dtype=bool)
                trunc = np.asarray(ep.truncations, dtype=bool)
                timeouts = trunc & ~term
                if not (term[-1] or timeouts[-1]):
                    timeouts = timeouts.copy()
                    timeouts[-1] = True
                app.append("observations", obs[:-1])
                app.append("next_observations", obs[1:])
                app.append("actions", _act_rows(act_space, ep.actions, T))
                app.append("rewards", np.asarray(ep.rewards, dtype=np.float32))
                app.append("terminals", term)
                app.append("timeouts", timeouts)
                if include_infos:
                    flat = {k: np.asarray(v) for k, v in flatten_infos(getattr(ep, "infos", None) or {}).items()}
                    flat = {k: v for k, v in flat.items() if v.dtype.kind in "biuf" and v.ndim >= 1 and len(v) == T + 1}
                    sig = {k: (v.dtype.str, v.shape[1:]) for k, v in flat.items()}
                    if info_keys is None:
                        info_keys = sig
                    for k in list(info_keys):
                        if sig.get(k) != info_keys[k]:
                            dropped.add(k)
                            info_keys.pop(k)
                    for k in info_keys:
                        app.append(f"infos/{k}", flat[k][:-1])
                meta = getattr(ep, "metadata", None) or {}
                ep_meta.append({
                    "id": int(getattr(ep, "id", len(ep_meta))), "length": T,
                    "seed": None if meta.get("seed") is None else int(meta["seed"]),
                    "options": _jsonable(meta.get("options")), "success": episode_success(ep),
                    "env_index": None if meta.get("env_index") is None else int(meta["env_index"]),
                    "truncated_and_terminated": bool(term[-1] and trunc[-1]),
                })
                n_steps += T
            for k in dropped:
                if f"infos/{k}" in f:
                    del f[f"infos/{k}"]
            if dropped:
                logger.warning(f"infos {sorted(dropped)} change shape, dtype or presence between episodes; "
                               "they are left out of the D4RL file")
            if n_steps == 0:
                raise ExportError("the dataset has no steps; nothing to export to D4RL")
            g = f.create_group("aquacollect")
            g.create_dataset("observation_space", data=space_to_json(obs_space))
            g.create_dataset("action_space", data=space_to_json(act_space))
            g.create_dataset("episode_metadata", data=json.dumps(ep_meta))
            spec = env_spec_json(dataset)
            if spec:
                g.create_dataset("env_spec", data=spec)
            g.attrs["observations_flattened"] = _is_nested(obs_space)
            g.attrs["actions_flattened"] = _is_nested(act_space)
            g.attrs["format"] = "d4rl"
    logger.info(f"wrote D4RL file {final} ({len(ep_meta)} episodes, {n_steps} steps)")
    return final


def _jsonable(v: Any) -> Any:
    try:
        json.dumps(v)
        return v
    except TypeError:
        return repr(v)


def is_d4rl_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an HDF5 file with D4RL's flat top-level datasets."""
    try:
        with h5py.File(path, "r") as f:
            return all(isinstance(f.get(k), h5py.Dataset) for k in REQUIRED_KEYS)
    except (OSError, ValueError):
        return False


def _str(ds: h5py.Dataset) -> str:
    v = ds[()]
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def read_d4rl(path: str | os.PathLike) -> MemoryDataset:
    """Open a D4RL-layout file. Episodes end at each ``terminals | timeouts`` row; rows after the last flag form
    a final truncated episode. Without ``next_observations`` each episode's final observation is unknown, so
    its last transition becomes the final observation (one step shorter, as d3rlpy does for timeouts)."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        check_contained(f, path)  # a file from a stranger must not read other files
        missing = [k for k in REQUIRED_KEYS if k not in f]
        if missing:
            raise ValueError(f"{path} is not a D4RL-layout file: datasets {missing} are missing")
        obs = f["observations"][()]
        act = f["actions"][()]
        rew = np.asarray(f["rewards"][()], dtype=np.float64).reshape(-1)
        term = np.asarray(f["terminals"][()], dtype=bool).reshape(-1)
        tout = np.asarray(f["timeouts"][()], dtype=bool).reshape(-1) if "timeouts" in f else np.zeros_like(term)
        nxt = f["next_observations"][()] if "next_observations" in f else None
        infos = {}
        if "infos" in f and isinstance(f["infos"], h5py.Group):
            f["infos"].visititems(lambda k, v: infos.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
        ag = f.get("aquacollect")
        obs_space = act_space = None
        spec = None
        ep_meta: list[dict] = []
        obs_flat = act_flat = False
        if isinstance(ag, h5py.Group):
            obs_space = space_from_json(_str(ag["observation_space"]))
            act_space = space_from_json(_str(ag["action_space"]))
            spec = _str(ag["env_spec"]) if "env_spec" in ag else None
            ep_meta = json.loads(_str(ag["episode_metadata"])) if "episode_metadata" in ag else []
            obs_flat = bool(ag.attrs.get("observations_flattened", False))
            act_flat = bool(ag.attrs.get("actions_flattened", False))
        root_meta = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    n = len(rew)
    for name, arr in (("observations", obs), ("actions", act), ("terminals", term), ("timeouts", tout)):
        if len(arr) != n:
            raise ValueError(f"{path}: {name} has {len(arr)} rows but rewards has {n}")
    if obs_space is None:
        obs_space = spaces.Box(-np.inf, np.inf, obs.shape[1:], np.float32)
        if act.dtype.kind in "iu" and act.ndim == 1:
            act_space = spaces.Discrete(int(act.max()) + 1 if n else 1)
        else:
            act_space = spaces.Box(-np.inf, np.inf, act.shape[1:], act.dtype if act.dtype.kind == "f" else np.float32)
    ends = list(np.flatnonzero(term | tout))
    if not ends or ends[-1] != n - 1:
        if n:
            logger.warning(f"{path}: {n - (ends[-1] + 1 if ends else 0)} rows after the last end flag form a final "
                           "truncated episode")
            ends.append(n - 1)
    if nxt is None:
        logger.warning(f"{path}: no next_observations; each episode's last transition becomes its final observation")
    episodes: list[MemoryEpisode] = []
    start = 0
    for k, end in enumerate(ends):
        sl = slice(start, end + 1)
        o = obs[sl]
        a, r, te, to = act[sl], rew[sl], term[sl].copy(), tout[sl].copy()
        if nxt is not None:
            o = np.concatenate([o, nxt[end:end + 1]], axis=0)
        else:
            a, r, te, to = a[:-1], r[:-1], te[:-1], to[:-1]
            if len(r) == 0:
                start = end + 1
                continue
            to[-1] = not te[-1]
        T = len(r)
        if not (te[-1] or to[-1]):
            to[-1] = True
        meta = dict(ep_meta[k]) if k < len(ep_meta) else {}
        if meta.pop("truncated_and_terminated", False):
            to[-1] = True
        meta.pop("length", None)
        src_id = meta.pop("id", None)
        if src_id is not None:
            meta["source_episode_id"] = src_id
        meta.update(terminated=bool(te[-1]), truncated=bool(to[-1]))
        o_val = unflatten_batch(obs_space, o) if obs_flat else o.reshape((T + 1, *obs_space.shape)).astype(
            obs_space.dtype if obs_space.dtype is not None else o.dtype, copy=False)
        a_val = unflatten_batch(act_space, a) if act_flat else a.reshape((T, *act_space.shape)).astype(
            act_space.dtype if act_space.dtype is not None else a.dtype, copy=False)
        extras = {f"infos/{key}": take_rows(v, sl)[:T] for key, v in infos.items()}
        episodes.append(MemoryEpisode(len(episodes), o_val, a_val, r, te, to, metadata=meta, extras=extras))
        start = end + 1
    metadata = {"source_format": "d4rl", **root_meta}
    return MemoryDataset(episodes, obs_space, act_space, env_spec=spec, metadata=metadata, path=path)
