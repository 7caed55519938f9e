"""Exporters and importers for the formats offline-RL and imitation-learning tools read.

Contents:
    * :func:`export_for_offline_rl` - a Minari dataset and a D4RL-layout HDF5 file in one directory.
    * :func:`export_for_teacher_student` - a robomimic / Isaac Lab demo HDF5 file.
    * :func:`export` - one format by name (``minari``, ``d4rl``, ``robomimic``, ``lerobot``, ``npz``, ``pickle``, ``hdf5``
      or a plugin's name).
    * :func:`open_foreign` - open a Minari dataset (id or directory), a D4RL file, a robomimic / Isaac Lab file
      a LeRobotDataset v3.0 directory or a trajectory file as a dataset; ``load_dataset`` falls back to it.
    * :class:`Backend`, :func:`register_backend`, :func:`backends`, :func:`load_plugins` - the
      ``gym_aquacollect.backends`` entry-point group through which third-party exporters / importers plug in;
      they live in the one registry, :mod:`gym_aquacollect.data.registry`, which this package fills with the
      built-in formats when it is imported.

Modules: :mod:`.minari`, :mod:`.d4rl`, :mod:`.robomimic`, :mod:`.trajectories`, :mod:`.lerobot`; the in-memory
:class:`~gym_aquacollect.data.memory.MemoryDataset` the importers return lives in :mod:`gym_aquacollect.data.memory`.

Plugins: a package declares, in its ``pyproject.toml``::

    [project.entry-points."gym_aquacollect.backends"]
    csv = "my_package.aqua_csv:CsvBackend"

The entry point names an object (or a class, instantiated without arguments) with a ``name`` and any of
``export(dataset, out, **kwargs) -> path``, ``can_load(path) -> bool`` and ``load(path, **kwargs) -> dataset``.
Plugins are loaded the first time a format is looked up; ``aquacollect export --format <name>`` and
``load_dataset`` then use them. See ``examples/custom_backend.py``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from gym_aquacollect.data.memory import ExportError, MemoryDataset, MemoryEpisode
from gym_aquacollect.data.registry import (
    ENTRY_POINT_GROUP,
    Backend,
    FunctionBackend,
    backends,
    export,
    load_plugins,
    open_foreign,
    register_backend,
)

log = logging.getLogger("gym_aquacollect")

__all__ = [
    "export_for_offline_rl",
    "export_for_teacher_student",
    "export",
    "open_foreign",
    "Backend",
    "register_backend",
    "backends",
    "load_plugins",
    "ENTRY_POINT_GROUP",
    "ExportError",
    "MemoryDataset",
    "MemoryEpisode",
    "FunctionBackend",
]

# ------------------------------------------------------------------------------------------------
# Built-in backends
# ------------------------------------------------------------------------------------------------
def _export_minari(dataset, out=None, *, dataset_id=None, **kw):
    from gym_aquacollect.formats.minari import to_minari

    return to_minari(dataset, dataset_id, root=out, **kw)


def _export_d4rl(dataset, out, **kw):
    from gym_aquacollect.formats.d4rl import write_d4rl

    return write_d4rl(dataset, out, **kw)


def _export_robomimic(dataset, out, **kw):
    from gym_aquacollect.formats.robomimic import write_robomimic

    return write_robomimic(dataset, out, **kw)


def _traj(fmt):
    def _export(dataset, out, **kw):
        from gym_aquacollect.formats.trajectories import export_trajectories

        return export_trajectories(dataset, out, format=fmt, **kw)

    def _can_load(path):
        from gym_aquacollect.formats.trajectories import sniff_format

        return Path(path).is_file() and sniff_format(path) == fmt and (fmt != "hdf5" or _is_traj_h5(path))

    def _load(path, **kw):
        from gym_aquacollect.formats.trajectories import load_trajectories

        return load_trajectories(path, **kw)

    return _export, _can_load, _load


def _is_traj_h5(path) -> bool:
    import h5py

    from gym_aquacollect.formats.trajectories import MAGIC

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == MAGIC
    except (OSError, ValueError):
        return False


def _can_load_minari(path) -> bool:
    from gym_aquacollect.formats.minari import resolve_minari

    return resolve_minari(path) is not None


def _load_minari(path, **kw):
    from gym_aquacollect.formats.minari import read_minari

    return read_minari(path)


def _export_lerobot(dataset, out, **kw):
    from gym_aquacollect.formats.lerobot import write_lerobot

    return write_lerobot(dataset, out, **kw)


def _can_load_lerobot(path) -> bool:
    from gym_aquacollect.formats.lerobot import is_lerobot_dir

    return is_lerobot_dir(path)


def _load_lerobot(path, **kw):
    from gym_aquacollect.formats.lerobot import read_lerobot

    return read_lerobot(path)


def _can_load_robomimic(path) -> bool:
    from gym_aquacollect.formats.robomimic import is_robomimic_file

    return Path(path).is_file() and is_robomimic_file(path)


def _load_robomimic(path, **kw):
    from gym_aquacollect.formats.robomimic import read_robomimic

    return read_robomimic(path, filter_key=kw.get("filter_key"))


def _can_load_d4rl(path) -> bool:
    from gym_aquacollect.formats.d4rl import is_d4rl_file

    return Path(path).is_file() and is_d4rl_file(path)


def _load_d4rl(path, **kw):
    from gym_aquacollect.formats.d4rl import read_d4rl

    return read_d4rl(path)


MINARI = register_backend(FunctionBackend("minari", _export_minari, _can_load_minari, _load_minari,
                                     "Minari dataset (HDF5)"))
ROBOMIMIC = register_backend(FunctionBackend("robomimic", _export_robomimic, _can_load_robomimic, _load_robomimic,
                                        "robomimic / Isaac Lab demo HDF5"))
D4RL = register_backend(FunctionBackend("d4rl", _export_d4rl, _can_load_d4rl, _load_d4rl, "D4RL flat HDF5"))
NPZ = register_backend(FunctionBackend("npz", *_traj("npz"), "trajectory file (npz)"))
PICKLE = register_backend(FunctionBackend("pickle", *_traj("pickle"), "trajectory file (pickle; loading needs allow_pickle)"))
HDF5 = register_backend(FunctionBackend("hdf5", *_traj("hdf5"), "trajectory file (hdf5)"))
LEROBOT = register_backend(FunctionBackend("lerobot", _export_lerobot, _can_load_lerobot, _load_lerobot,
                                      "LeRobotDataset v3.0 directory (parquet + AV1 video)"))


def export_for_offline_rl(dataset: Any, directory: str | os.PathLike, *, dataset_id: str | None = None,
                          jpeg_encoding: bool = True, overwrite: bool = False, **minari_metadata: Any) -> dict[str, Path]:
    """Write ``directory/minari/<dataset_id>`` (a Minari root: point ``MINARI_DATASETS_PATH`` at
    ``directory/minari``) and ``directory/d4rl.hdf5``; returns their paths.

    A dataset whose spaces contain Text gets no D4RL file (D4RL holds float arrays only); a warning says so.
    """
    from gym_aquacollect.formats.d4rl import _has_text, write_d4rl
    from gym_aquacollect.formats.minari import _default_dataset_id, write_minari

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dataset_id = dataset_id or _default_dataset_id(dataset)
    out: dict[str, Path] = {"minari_root": directory / "minari"}
    out["minari"] = write_minari(dataset, directory / "minari", dataset_id, jpeg_encoding=jpeg_encoding,
                                 overwrite=overwrite, **minari_metadata)
    out["minari_id"] = dataset_id  # type: ignore[assignment]
    if _has_text(dataset.observation_space) or _has_text(dataset.action_space):
        log.warning("the spaces contain Text, which the D4RL layout cannot hold; no d4rl.hdf5 was written")
    else:
        out["d4rl"] = write_d4rl(dataset, directory / "d4rl.hdf5", overwrite=overwrite)
    return out


def export_for_teacher_student(dataset: Any, directory: str | os.PathLike, *, filename: str = "demos.hdf5",
                               only_successful: bool = False, actions: str = "executed", overwrite: bool = False,
                               **kwargs: Any) -> Path:
    """Write ``directory/<filename>``: robomimic / Isaac Lab demo HDF5 (see :mod:`.robomimic`).

    ``actions="teacher"`` writes the teacher's actions (recorded with ``CollectingWrapper(env, teacher=...)``)
    as ``actions`` and keeps the executed ones as ``executed_actions``; ``only_successful=True`` keeps only
    episodes known to have succeeded.
    """
    from gym_aquacollect.formats.robomimic import write_robomimic

    return write_robomimic(dataset, Path(directory) / filename, only_successful=only_successful, actions=actions,
                           overwrite=overwrite, **kwargs)
