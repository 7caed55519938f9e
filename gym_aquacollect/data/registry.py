"""The one registry of dataset readers and writers, and the late imports of the layers above ``data/``.

Contents:
    * :class:`Backend`, :class:`FunctionBackend` - a format: a ``name`` and any of
      ``export(dataset, out, **kwargs) -> path``, ``can_load(path) -> bool``, ``load(path, **kwargs) -> dataset``.
    * :func:`register_backend`, :func:`backends`, :func:`load_plugins` - register one; list them (the built-in
      formats of :mod:`gym_aquacollect.formats`, then the ``gym_aquacollect.backends`` entry points, load on
      first look-up).
    * :func:`export`, :func:`open_foreign` - write ``dataset`` in a format by name; open a foreign path with
      the first backend that recognises it (what :func:`~gym_aquacollect.data.dataset.load_dataset` falls
      back to).
    * :func:`register_loader` - the older plug-in form, a bare ``loader(path, **kwargs) -> dataset | None``;
      kept working, registered here as a backend too.
    * :func:`late_import` - the only place ``data/`` reaches the layers above it (format code, the torch and
      Ray integrations), by module name at call time, so reading a dataset never imports Ray, torch or the
      formats (``tests/test_architecture.py`` checks that).

Example:
    >>> sorted(n for n in backends() if n in ("minari", "d4rl", "npz"))
    ['d4rl', 'minari', 'npz']
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

__all__ = ["Backend", "FunctionBackend", "register_backend", "backends", "load_plugins", "export", "open_foreign",
           "register_loader", "late_import", "ENTRY_POINT_GROUP"]

log = logging.getLogger("gym_aquacollect")

ENTRY_POINT_GROUP = "gym_aquacollect.backends"

#: the modules above ``data/`` that ``data/`` may use, imported on first use only
_LATE = ("gym_aquacollect.formats", "gym_aquacollect.integrations")


@runtime_checkable
class Backend(Protocol):
    """What a format backend provides (every method is optional except ``name``)."""

    name: str


@dataclass
class FunctionBackend:
    """A backend made of plain functions (how the built-in formats register)."""

    name: str
    export: Callable[..., Path] | None = None
    can_load: Callable[[Any], bool] | None = None
    load: Callable[..., Any] | None = None
    description: str = ""


_BACKENDS: dict[str, Any] = {}
_LOADERS: list[Callable[..., Any]] = []
_PLUGINS_LOADED = False
_BUILTINS_LOADED = False


def late_import(module: str) -> ModuleType:
    """Import ``module`` (a ``gym_aquacollect.formats`` or ``gym_aquacollect.integrations`` module) now.

    Raises ``ValueError`` for any other module: ``data/`` reaches upward through this function only.
    """
    if not any(module == p or module.startswith(p + ".") for p in _LATE):
        raise ValueError(f"late_import({module!r}): only modules under {', '.join(_LATE)} are imported late")
    return importlib.import_module(module)


def _builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        late_import("gym_aquacollect.formats")  # registers the built-in formats


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
    _builtins()
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
            log.warning("gym_aquacollect backend plugin %r (%s) failed to load: %s", ep.name, ep.value, e)
    return names


def backends() -> dict[str, Any]:
    """All registered backends by name (built-ins and plugins)."""
    load_plugins()
    return dict(_BACKENDS)


def export(dataset: Any, out: str | os.PathLike | None, format: str, **kwargs: Any) -> Path:
    """Export ``dataset`` to ``out`` in ``format`` (a built-in or plugin backend name)."""
    b = backends().get(format)
    if b is None or not callable(getattr(b, "export", None)):
        known = sorted(n for n, x in backends().items() if callable(getattr(x, "export", None)))
        raise ValueError(f"unknown export format {format!r}; known formats: {', '.join(known)}")
    return b.export(dataset, out, **kwargs)


def open_foreign(source: str | os.PathLike, **kwargs: Any) -> Any | None:
    """Open ``source`` with the first backend whose ``can_load`` accepts it, then the first
    :func:`register_loader` loader that returns a dataset; None when nothing recognises it.

    ``kwargs`` go to the backend's ``load`` (e.g. ``allow_pickle=True`` for a pickle file).
    """
    if isinstance(source, (str, os.PathLike)):
        order = ["minari", "robomimic", "d4rl", "hdf5", "npz", "pickle", "lerobot"]
        bs = backends()
        for name in order + [n for n in bs if n not in order]:
            b = bs.get(name)
            can = getattr(b, "can_load", None)
            if b is None or not callable(can) or not callable(getattr(b, "load", None)):
                continue
            try:
                ok = can(source)
            except Exception as e:  # noqa: BLE001 - a sniffing plugin must not hide the other formats
                log.debug("backend %r could not inspect %s: %s", name, source, e)
                ok = False
            if ok:
                if name == "pickle":
                    return b.load(source, allow_pickle=bool(kwargs.get("allow_pickle", False)))
                if name in ("npz", "hdf5"):
                    return b.load(source)
                return b.load(source, **kwargs)
    for loader in list(_LOADERS):
        ds = loader(source, **kwargs)
        if ds is not None:
            return ds
    return None


def register_loader(loader: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``loader(path, **kwargs) -> Dataset-like | None`` for ``load_dataset``; it returns None for
    paths it does not recognise (tried after the backends' ``can_load``)."""
    if loader not in _LOADERS:
        _LOADERS.append(loader)
    return loader
