"""Exporters and importers for the formats offline-RL and imitation-learning tools read.

Contents:
    * :func:`export_for_offline_rl` - a Minari dataset and a D4RL-layout HDF5 file in one directory.
    * :func:`export_for_teacher_student` - a robomimic / Isaac Lab demo HDF5 file.
    * :func:`export` - one format by name (``minari``, ``d4rl``, ``robomimic``, ``lerobot``, ``npz``, ``pickle``, ``hdf5``
      or a plugin's name).
    * :func:`open_foreign` - open a Minari dataset (id or directory), a D4RL file, a robomimic / Isaac Lab file
      a LeRobotDataset v3.0 directory or a trajectory file as a dataset; ``load_dataset`` falls back to it.
    * :class:`Backend`, :func:`register_backend`, :func:`backends`, :func:`load_plugins` - the
      ``gym_aquacollect.backends`` entry-point group through which third-party exporters / importers plug in.

Modules: :mod:`.minari`, :mod:`.d4rl`, :mod:`.robomimic`, :mod:`.trajectories`, :mod:`.lerobot`; :mod:`._common` holds the
in-memory :class:`~gym_aquacollect.formats._common.MemoryDataset` the importers return.

Plugins: a package declares, in its ``pyproject.toml``::

    [project.entry-points."gym_aquacollect.backends"]
    csv = "my_package.aqua_csv:CsvBackend"

The entry point names an object (or a class, instantiated without arguments) with a ``name`` and any of
``export(dataset, out, **kwargs) -> path``, ``can_load(path) -> bool`` and ``load(path, **kwargs) -> dataset``.
Plugins are loaded the first time a format is looked up; ``aquacollect export --format <name>`` and
``load_dataset`` then use them. See ``examples/custom_backend.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from loguru import logger

from gym_aquacollect.formats._common import ExportError, MemoryDataset, MemoryEpisode

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
]

ENTRY_POINT_GROUP = "gym_aquacollect.backends"


@runtime_checkable
class Backend(Protocol):
    """What a format backend provides (every method is optional except ``name``)."""

    name: str


@dataclass
class _FnBackend:
    name: str
    export: Callable[..., Path] | None = None
    can_load: Callable[[Any], bool] | None = None
    load: Callable[..., Any] | None = None
    description: str = ""


_BACKENDS: dict[str, Any] = {}
_PLUGINS_LOADED = False


def register_backend(backend: Any, *, replace: bool = False) -> Any:
    """Register an exporter / importer object (see the module docstring); returns it."""
    name = getattr(backend, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"backend {backend!r} has no 'name' attribute (a non-empty str)")
    if not any(callable(getattr(backend, m, None)) for m in ("export", "load")):
        raise TypeError(f"backend {name!r} defines neither export() nor load()")
    if name in _BACKENDS and not replace and _BACKENDS[name] is not backend:
        raise ValueError(f"a backend named {name!r} is already registered; pass replace=True to override it")
    _BACKENDS[name] = backend
    return backend


def load_plugins() -> list[str]:
    """Load the ``gym_aquacollect.backends`` entry points (once); returns the names registered."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return []
    _PLUGINS_LOADED = True
    names = []
    for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, type):
                obj = obj()
            elif not hasattr(obj, "name") and callable(obj):
                obj = obj()
            register_backend(obj, replace=True)
            names.append(obj.name)
        except Exception as e:  # noqa: BLE001 - a broken plugin must not break the package
            logger.warning(f"gym_aquacollect backend plugin {ep.name!r} ({ep.value}) failed to load: {e}")
    return names


def backends() -> dict[str, Any]:
    """All registered backends by name (built-ins and plugins)."""
    load_plugins()
    return dict(_BACKENDS)


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


MINARI = register_backend(_FnBackend("minari", _export_minari, _can_load_minari, _load_minari,
                                     "Minari dataset (HDF5)"))
ROBOMIMIC = register_backend(_FnBackend("robomimic", _export_robomimic, _can_load_robomimic, _load_robomimic,
                                        "robomimic / Isaac Lab demo HDF5"))
D4RL = register_backend(_FnBackend("d4rl", _export_d4rl, _can_load_d4rl, _load_d4rl, "D4RL flat HDF5"))
NPZ = register_backend(_FnBackend("npz", *_traj("npz"), "trajectory file (npz)"))
PICKLE = register_backend(_FnBackend("pickle", *_traj("pickle"), "trajectory file (pickle; loading needs allow_pickle)"))
HDF5 = register_backend(_FnBackend("hdf5", *_traj("hdf5"), "trajectory file (hdf5)"))
LEROBOT = register_backend(_FnBackend("lerobot", _export_lerobot, _can_load_lerobot, _load_lerobot,
                                      "LeRobotDataset v3.0 directory (parquet + AV1 video)"))


# ------------------------------------------------------------------------------------------------
# Entry points used by Dataset / collectors / CLI
# ------------------------------------------------------------------------------------------------
def export(dataset: Any, out: str | os.PathLike | None, format: str, **kwargs: Any) -> Path:
    """Export ``dataset`` to ``out`` in ``format`` (a built-in or plugin backend name)."""
    b = backends().get(format)
    if b is None or not callable(getattr(b, "export", None)):
        known = sorted(n for n, x in backends().items() if callable(getattr(x, "export", None)))
        raise ValueError(f"unknown export format {format!r}; known formats: {', '.join(known)}")
    return b.export(dataset, out, **kwargs)


def open_foreign(source: str | os.PathLike, **kwargs: Any) -> Any | None:
    """Open ``source`` with the first backend whose ``can_load`` accepts it, or return None.

    ``kwargs`` go to the backend's ``load`` (e.g. ``allow_pickle=True`` for a pickle file).
    """
    order = ["minari", "robomimic", "d4rl", "hdf5", "npz", "pickle", "lerobot"]
    bs = backends()
    names = order + [n for n in bs if n not in order]
    for name in names:
        b = bs.get(name)
        can = getattr(b, "can_load", None)
        if b is None or not callable(can) or not callable(getattr(b, "load", None)):
            continue
        try:
            ok = can(source)
        except Exception as e:  # noqa: BLE001 - a sniffing plugin must not hide the other formats
            logger.debug(f"backend {name!r} could not inspect {source}: {e}")
            ok = False
        if ok:
            if name == "pickle":
                return b.load(source, allow_pickle=bool(kwargs.get("allow_pickle", False)))
            if name in ("npz", "hdf5"):
                return b.load(source)
            return b.load(source, **kwargs)
    return None


def _load_dataset_hook(path: Any, **kwargs: Any) -> Any | None:
    """The loader registered with :func:`gym_aquacollect.dataset.register_loader`."""
    if not isinstance(path, (str, os.PathLike)):
        return None
    return open_foreign(path, **kwargs)


def _register_with_load_dataset() -> None:
    from gym_aquacollect.dataset import _LOADERS, register_loader

    if _load_dataset_hook not in _LOADERS:
        register_loader(_load_dataset_hook)


_register_with_load_dataset()


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
        logger.warning("the spaces contain Text, which the D4RL layout cannot hold; no d4rl.hdf5 was written")
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
