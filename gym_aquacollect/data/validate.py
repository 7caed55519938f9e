"""Structural validation of datasets: gym_aquacollect directories and the foreign formats we read.

Contents:
    * :func:`validate_dataset` - check a dataset and return a :class:`ValidationReport`.
    * :class:`ValidationReport` - ``problems`` (the dataset is broken), ``warnings`` and what was checked.

For a gym_aquacollect directory every committed shard's size and CRC32 are compared with its manifest, then
every episode is read and checked: T+1 observation rows, T rows of actions / rewards / flags, end flags only
on the last step and an end flag there. Foreign files get their format's own rules (Minari: consecutive
``episode_<i>`` and required metadata keys; D4RL: disjoint ``terminals``/``timeouts``; robomimic: 2-D
``actions``, ``num_samples`` and ``total``) and then the same per-episode checks.

Example:
    >>> import tempfile, gymnasium as gym
    >>> from gym_aquacollect import CollectingWrapper
    >>> path = tempfile.mkdtemp() + "/v"
    >>> with CollectingWrapper(gym.make("CartPole-v1"), path) as env:
    ...     _ = env.reset(seed=0)
    ...     for _ in range(20):
    ...         _ = env.step(0)
    >>> validate_dataset(path).ok
    True
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gym_aquacollect.data.memory import nested_len
from gym_aquacollect.storage.safety import check_contained

__all__ = ["validate_dataset", "ValidationReport"]


@dataclass
class ValidationReport:
    path: str
    kind: str = "unknown"
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    episodes: int = 0
    steps: int = 0
    checksums_verified: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"{self.path} ({self.kind}): {'OK' if self.ok else 'INVALID'} - {self.episodes} episodes, "
                 f"{self.steps} steps, {self.checksums_verified} shard checksums verified"]
        lines += [f"  problem: {p}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"  ... and {len(self.problems) - 50} more problems")
        lines += [f"  warning: {w}" for w in self.warnings[:20]]
        return "\n".join(lines)


def _check_episodes(ds: Any, rep: ValidationReport) -> None:
    for i in range(len(ds)):
        try:
            ep = ds[i]
            T = len(ep)
            n_obs = nested_len(ep.observations)
            n_act = nested_len(ep.actions)
            term = np.asarray(ep.terminations, dtype=bool)
            trunc = np.asarray(ep.truncations, dtype=bool)
            rewards = np.asarray(ep.rewards)
        except Exception as e:  # noqa: BLE001 - any read failure is a finding, not a crash
            rep.problems.append(f"episode {i}: cannot be read ({type(e).__name__}: {e})")
            continue
        where = f"episode {i}"
        if T == 0:
            rep.problems.append(f"{where}: has no steps")
            continue
        if n_obs != T + 1:
            rep.problems.append(f"{where}: {n_obs} observation rows, expected T+1 = {T + 1}")
        if n_act != T or len(term) != T or len(trunc) != T:
            rep.problems.append(f"{where}: actions/terminations/truncations have {n_act}/{len(term)}/{len(trunc)} "
                                f"rows, expected {T}")
            continue
        if np.any(term[:-1] | trunc[:-1]):
            rep.problems.append(f"{where}: an end flag is set before the last step "
                                f"(step {int(np.flatnonzero(term[:-1] | trunc[:-1])[0])})")
        if not (term[-1] or trunc[-1]):
            rep.problems.append(f"{where}: the last step has neither terminated nor truncated set")
        if rewards.dtype.kind == "f" and not np.all(np.isfinite(rewards)):
            rep.warnings.append(f"{where}: rewards contain NaN/inf")
        for key, val in (ep.infos or {}).items():
            if isinstance(val, dict):
                continue
            if hasattr(val, "__len__") and len(val) != T + 1:
                rep.problems.append(f"{where}: info {key!r} has {len(val)} rows, expected {T + 1}")
        rep.episodes += 1
        rep.steps += T


def _validate_ours(path: Path, rep: ValidationReport) -> None:
    """Files (metadata, manifests, shard sizes and CRC32s: :func:`~gym_aquacollect.storage.verify.
    verify_dataset`), then every episode's structure."""
    from gym_aquacollect.data.dataset import Dataset
    from gym_aquacollect.storage.manifest import read_dataset_dir
    from gym_aquacollect.storage.verify import verify_dataset

    rep.kind = "gym_aquacollect"
    files = verify_dataset(path)
    rep.problems.extend(str(p) for p in files.problems)
    rep.checksums_verified += files.shards_checked
    if files.unreferenced:
        rep.warnings.append(f"{len(files.unreferenced)} shard file(s) no manifest lists (unflushed tails of crashed "
                            "or live writers): not part of the dataset")
    if rep.problems:
        return
    for m in read_dataset_dir(path)[1]:
        if not m.closed:
            rep.warnings.append(f"writer {m.writer_id} did not close (crashed or still writing); "
                                "episodes it had not committed are not included")
    _check_episodes(Dataset(path), rep)


def _validate_minari_meta(d: Path, rep: ValidationReport) -> None:
    meta = json.loads((d / "data" / "metadata.json").read_text())
    for k in ("dataset_id", "minari_version", "data_format", "total_episodes", "total_steps"):
        if k not in meta:
            rep.problems.append(f"metadata.json: required key {k!r} is missing")
    if not ({"observation_space", "action_space"} <= set(meta) or "env_spec" in meta):
        rep.problems.append("metadata.json: needs observation_space and action_space (or an env_spec)")
    if meta.get("data_format") == "hdf5":
        with h5py.File(d / "data" / "main_data.hdf5", "r") as f:
            check_contained(f, d / "data" / "main_data.hdf5")
            keys = sorted(f.keys())
            expected = [f"episode_{i}" for i in range(int(meta.get("total_episodes", -1)))]
            if sorted(keys) != sorted(expected):
                rep.problems.append(f"main_data.hdf5: episode groups {keys[:5]}... are not episode_0.."
                                    f"episode_{len(expected) - 1} (total_episodes={meta.get('total_episodes')})")
            steps = sum(len(f[k]["rewards"]) for k in keys if "rewards" in f[k])
            if steps != meta.get("total_steps"):
                rep.problems.append(f"total_steps is {meta.get('total_steps')} but the episodes hold {steps} steps")


def _validate_d4rl(path: Path, rep: ValidationReport) -> None:
    with h5py.File(path, "r") as f:
        check_contained(f, path)
        n = len(f["rewards"])
        for k in ("observations", "actions", "terminals", "timeouts", "next_observations"):
            if k in f and len(f[k]) != n:
                rep.problems.append(f"{k}: {len(f[k])} rows, rewards has {n}")
        if "timeouts" not in f:
            rep.warnings.append("no timeouts dataset (d3rlpy's get_d4rl requires it)")
        elif np.any(f["terminals"][()] & f["timeouts"][()]):
            rep.problems.append("terminals and timeouts are both set on some rows (d3rlpy 2.8.1 rejects that)")


def _validate_robomimic(path: Path, rep: ValidationReport) -> None:
    with h5py.File(path, "r") as f:
        check_contained(f, path)
        data = f["data"]
        total = 0
        for name in data:
            g = data[name]
            if "num_samples" not in g.attrs:
                rep.problems.append(f"data/{name}: attribute num_samples is missing")
                continue
            total += int(g.attrs["num_samples"])
            if "actions" in g and g["actions"].ndim != 2:
                rep.problems.append(f"data/{name}/actions: shape {g['actions'].shape} is not 2-D (robomimic needs (T, A))")
            if "obs" in g and not isinstance(g["obs"], h5py.Group):
                rep.warnings.append(f"data/{name}/obs is a dataset, not a group of keys (robomimic needs a group)")
        if "total" in data.attrs and int(data.attrs["total"]) != total:
            rep.problems.append(f"data.attrs['total'] is {int(data.attrs['total'])} but num_samples sum to {total}")
        env_args = json.loads(data.attrs.get("env_args", "{}") or "{}")
        if "env_kwargs" not in env_args:
            rep.warnings.append("env_args has no env_kwargs (robomimic >= 0.5 requires it)")


def validate_dataset(path: str | os.PathLike, **load_kwargs: Any) -> ValidationReport:
    """Check ``path`` (any format ``load_dataset`` opens) and report every problem found."""
    from gym_aquacollect.data.registry import backends, late_import, open_foreign
    from gym_aquacollect.storage.manifest import is_dataset_dir

    resolve_minari = late_import("gym_aquacollect.formats.minari").resolve_minari

    p = Path(path)
    rep = ValidationReport(str(path))
    try:
        if is_dataset_dir(p):
            _validate_ours(p, rep)
            return rep
        d = resolve_minari(path)
        if d is not None:
            rep.kind = "minari"
            _validate_minari_meta(d, rep)
        elif backends()["robomimic"].can_load(p):
            rep.kind = "robomimic"
            _validate_robomimic(p, rep)
        elif backends()["d4rl"].can_load(p):
            rep.kind = "d4rl"
            _validate_d4rl(p, rep)
        if rep.problems:
            return rep
        ds = open_foreign(path, **load_kwargs)
        if ds is None:
            rep.problems.append("not a dataset in any known format")
            return rep
        if rep.kind == "unknown":
            rep.kind = str(getattr(ds, "metadata", {}).get("source_format", "unknown"))
        _check_episodes(ds, rep)
    except Exception as e:  # noqa: BLE001 - report, do not crash
        rep.problems.append(f"{type(e).__name__}: {e}")
    return rep
