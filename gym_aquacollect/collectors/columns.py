"""Columns whose schema is learned while recording: infos and extra per-step fields.

Contents:
    * :class:`DynamicColumns` - flattens dicts (nested to any depth) into typed columns plus a presence
      mask per key (``<prefix><key>`` and ``<prefix>_<key>``), so keys that appear on some steps only
      (``info["episode"]`` from ``RecordEpisodeStatistics``) are stored without breaking anything.
    * :func:`to_storable` - the conversion rules for one value.

Rules: the first value seen for a key fixes its column (Python bool/int/float -> bool/int64/float64,
NumPy scalars and arrays keep dtype and shape, torch tensors are moved to NumPy, str -> UTF-8 string,
lists of numbers -> arrays, ``None`` -> absent, anything else -> its JSON text, or ``repr`` with a
warning). A later value that cannot be stored in that column (another shape, or a cast that would lose
data) is dropped with a warning naming the key, and counted in :attr:`DynamicColumns.dropped`: infos
never crash a training loop. Keys must not contain ``/`` or start with ``_`` (Gymnasium uses
``_key`` for masks); such keys are renamed (``/`` -> ``|``) or kept with a leading ``~``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from loguru import logger

__all__ = ["DynamicColumns", "to_storable"]

_OBJ = np.dtype(object)


def to_storable(value: Any) -> np.ndarray | None:
    """Convert one value into a 0-d or n-d NumPy array (object dtype for strings), or None to skip."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufc":
            return value
        if value.dtype.kind in "US":
            return np.asarray(json.dumps(value.tolist()), dtype=_OBJ)
    elif isinstance(value, (bool, np.bool_)):
        return np.asarray(bool(value))
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return np.asarray(value, dtype=np.int64 if isinstance(value, int) else value.dtype)
    elif isinstance(value, (float, np.floating)):
        return np.asarray(value, dtype=np.float64 if isinstance(value, float) else value.dtype)
    elif isinstance(value, str):
        return np.asarray(value, dtype=_OBJ)
    elif hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor
        return to_storable(value.detach().cpu().numpy())
    elif isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value)
            if arr.dtype.kind in "biuf":
                return arr
        except (ValueError, TypeError):
            pass
    try:
        return np.asarray(json.dumps(value), dtype=_OBJ)
    except (TypeError, ValueError):
        return np.asarray(repr(value), dtype=_OBJ)


def _empty(rows: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Fill-value column: zeros, or empty strings for string columns."""
    if dtype.kind == "O":
        return np.full((rows, *shape), "", dtype=object)
    return np.zeros((rows, *shape), dtype=dtype)


def _clean_key(key: Any) -> str:
    k = str(key).replace("/", "|")
    return "~" + k if k.startswith("_") else k


class DynamicColumns:
    """Per-key columns learned on first sight, with a bool presence mask per key.

    Args:
        prefix: column name prefix (``"infos/"`` or ``"extras/"``).
        label: how warnings name these values (``"info"``).
    """

    def __init__(self, prefix: str, label: str = "info") -> None:
        self.prefix = prefix
        self.label = label
        self.specs: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self.cols: dict[str, np.ndarray] = {}
        self.masks: dict[str, np.ndarray] = {}
        self.rows = 0
        self.dropped: dict[str, int] = {}
        self._warned: set[str] = set()

    def new_block(self, rows: int) -> None:
        """Start fresh arrays of ``rows`` rows (zeros, masks False) for every known key."""
        self.rows = rows
        self.cols = {k: _empty(rows, dt, shape) for k, (dt, shape) in self.specs.items()}
        self.masks = {k: np.zeros(rows, dtype=bool) for k in self.specs}

    def put(self, row: int, values: dict[str, Any], path: str = "") -> None:
        """Store ``values`` (a possibly nested dict) in row ``row``."""
        for key, value in values.items():
            name = path + _clean_key(key)
            if isinstance(value, dict):
                if value:
                    self.put(row, value, name + "/")
                continue
            col = self.cols.get(name)
            if col is None:
                arr = to_storable(value)
                if arr is None:
                    continue
                if name in self.specs:  # known key, not yet in this block (cannot happen) - be safe
                    col = self._add(name, *self.specs[name])
                else:
                    col = self._add(name, arr.dtype, arr.shape)
                self._store(name, col, row, arr)
                continue
            if type(value) is float and col.dtype.kind == "f" and col.ndim == 1:  # hot path
                col[row] = value
                self.masks[name][row] = True
                continue
            arr = to_storable(value)
            if arr is not None:
                self._store(name, col, row, arr)

    def _add(self, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        self.specs[name] = (dtype, shape)
        col = _empty(self.rows, dtype, shape)
        self.cols[name] = col
        self.masks[name] = np.zeros(self.rows, dtype=bool)
        return col

    def _store(self, name: str, col: np.ndarray, row: int, arr: np.ndarray) -> None:
        ok = arr.shape == col.shape[1:] and (
            arr.dtype == col.dtype
            or (col.dtype.kind == "O") == (arr.dtype.kind == "O")
            and np.can_cast(arr.dtype, col.dtype, casting="same_kind")
        )
        if not ok:
            self.dropped[name] = self.dropped.get(name, 0) + 1
            if name not in self._warned:
                self._warned.add(name)
                logger.warning(
                    "gym_aquacollect: {} key {!r} changed from {} {} to {} {}; such values are not recorded "
                    "(counted in the dataset metadata under 'dropped_{}'). Keep the key's type fixed, or "
                    "rename the key when its type changes.",
                    self.label, name, self.specs[name][0], self.specs[name][1], arr.dtype, arr.shape, self.label,
                )
            return
        col[row] = arr.item() if col.dtype.kind == "O" and arr.ndim == 0 else arr
        self.masks[name][row] = True

    def columns(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Views of rows ``start:stop`` of every column and mask, keyed by full column name."""
        out: dict[str, np.ndarray] = {}
        for name, col in self.cols.items():
            out[self.prefix + name] = col[start:stop]
            head, _, tail = name.rpartition("/")
            mask_name = f"{head}/_{tail}" if head else f"_{tail}"
            out[self.prefix + mask_name] = self.masks[name][start:stop]
        return out

    def clear_row(self, row: int) -> None:
        """Forget what row ``row`` holds (its masks become False)."""
        for mask in self.masks.values():
            mask[row] = False

    def copy_row_from(self, cols: dict[str, np.ndarray], masks: dict[str, np.ndarray], src: int, dst: int) -> None:
        """Copy row ``src`` of another block's ``cols``/``masks`` into row ``dst`` of this block."""
        for name, col in cols.items():
            if masks[name][src]:
                self.cols[name][dst] = col[src]
                self.masks[name][dst] = True
