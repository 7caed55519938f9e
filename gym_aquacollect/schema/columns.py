"""Columns whose schema is learned while recording: infos and extra per-step fields.

Contents:
    * :class:`DynamicColumns` - flattens dicts (nested to any depth) into typed columns plus a presence
      mask per key (``<prefix><key>`` and ``<prefix>_<key>``), so keys that appear on some steps only
      (``info["episode"]`` from ``RecordEpisodeStatistics``) are stored without breaking anything.
    * :func:`to_storable` - the conversion rules for one value.

Rules: the first value seen for a key fixes its column (Python bool/int/float -> bool/int64/float64,
NumPy scalars and arrays keep dtype and shape, torch tensors are moved to NumPy, str -> UTF-8 string,
lists of numbers -> arrays, ``None`` -> absent, anything else -> its JSON text, or ``repr``). A value
that cannot be stored is dropped with one warning per key and counted in :attr:`DynamicColumns.dropped`
(the count reaches the writer's manifest, ``info["dropped_info"]``): a later value that does not fit the
key's column (another shape, or a cast that would lose data), a string with a NUL character or a lone
surrogate (HDF5 cannot store them), an integer beyond int64/uint64, a dict where a value was stored
before or a value where a dict was. Infos never crash a training loop. Keys must not contain ``/`` or
start with ``_`` (Gymnasium uses ``_key`` for masks); such keys are renamed (``/`` -> ``|``) or kept
with a leading ``~``.

Columns are sized by their own rows: the owner may shrink the block when a large value appears (see
``on_new_column``), and a column that first appears late in a block starts at the row it appeared
(its ``base``), so a camera frame in an info never allocates rows sized for small values.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from gym_aquacollect.logs import logger

__all__ = ["DynamicColumns", "to_storable", "Unstorable", "clean_key", "jsonable", "concat_columns"]

_OBJ = np.dtype(object)


def _bad_text(s: str) -> bool:
    """Strings HDF5 cannot store as UTF-8: a NUL character, or a lone surrogate."""
    if "\x00" in s:
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class Unstorable(ValueError):
    """A value that cannot be stored (the message says why)."""


def to_storable(value: Any) -> np.ndarray | None:
    """Convert one value into a 0-d or n-d NumPy array (object dtype for strings), or None to skip.

    Raises :class:`Unstorable` for values that cannot be stored at all (NUL or lone surrogate in a string,
    integers beyond 64 bits, an object whose ``repr`` fails).

    Example:
        >>> to_storable(3).dtype, to_storable("a").item(), to_storable(None)
        (dtype('int64'), 'a', None)
        >>> to_storable("a\\x00b")
        Traceback (most recent call last):
        ...
        gym_aquacollect.schema.columns.Unstorable: a string with a NUL character or a lone surrogate (HDF5 stores UTF-8 text without NULs)
    """
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufc":
            return value
        if value.dtype.kind in "US":
            return _text(json.dumps(value.tolist()))
    elif isinstance(value, (bool, np.bool_)):
        return np.asarray(bool(value))
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if isinstance(value, int):
            if not -(1 << 63) <= value < (1 << 63):
                if 0 <= value < (1 << 64):
                    return np.asarray(value, dtype=np.uint64)
                raise Unstorable(f"an integer beyond 64 bits ({str(value)[:30]}...)")
            return np.asarray(value, dtype=np.int64)
        return np.asarray(value, dtype=value.dtype)
    elif isinstance(value, (float, np.floating)):
        return np.asarray(value, dtype=np.float64 if isinstance(value, float) else value.dtype)
    elif isinstance(value, str):
        return _text(value)
    elif hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor
        return to_storable(value.detach().cpu().numpy())
    elif isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value)
            if arr.dtype.kind in "biuf":
                return arr
        except (ValueError, TypeError, OverflowError):
            pass
    try:
        return _text(json.dumps(value, allow_nan=True))
    except (TypeError, ValueError, OverflowError, RecursionError):
        pass
    try:
        return _text(repr(value))
    except Unstorable:
        raise
    except Exception as e:  # noqa: BLE001 - a broken __repr__
        raise Unstorable(f"a {type(value).__name__} whose repr() raised {type(e).__name__}") from None


def _text(s: str) -> np.ndarray:
    if _bad_text(s):
        raise Unstorable("a string with a NUL character or a lone surrogate (HDF5 stores UTF-8 text without NULs)")
    return np.asarray(s, dtype=_OBJ)


def _empty(rows: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Fill-value column: zeros, or empty strings for string columns."""
    if dtype.kind == "O":
        return np.full((rows, *shape), "", dtype=object)
    return np.zeros((rows, *shape), dtype=dtype)


def clean_key(key: Any) -> str:
    """An info key as one column-name segment: ``/`` becomes ``|``, a leading ``_`` gets ``~`` (masks stay apart)."""
    k = str(key).replace("/", "|")
    return "~" + k if k.startswith("_") else k


def _row_nbytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64)) * (8 if dtype.kind == "O" else dtype.itemsize)


class DynamicColumns:
    """Per-key columns learned on first sight, with a bool presence mask per key.

    Args:
        prefix: column name prefix (``"infos/"`` or ``"extras/"``).
        label: how warnings name these values (``"info"``).
        on_new_column: called ``on_new_column(self)`` when a key gets a column, after
            :attr:`row_nbytes` includes it and before it is allocated; returns the row the new column
            starts at (its base: the rows before it were handed over already) and may lower :attr:`rows`.

    Example:
        >>> cols = DynamicColumns("infos/")
        >>> cols.new_block(4)
        >>> cols.put(0, {"x": 1.5, "s": "a\\x00b", "d": {"y": 2}})
        >>> cols.put(1, {"x": {"oops": 1}, "d": 3})
        >>> sorted(cols.columns(0, 2)), cols.dropped
        (['infos/_x', 'infos/d/_y', 'infos/d/y', 'infos/x'], {'s': 1, 'x': 1, 'd': 1})
    """

    def __init__(self, prefix: str, label: str = "info", on_new_column: Callable[[DynamicColumns], int] | None = None
                 ) -> None:
        self.prefix = prefix
        self.label = label
        self.specs: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self.cols: dict[str, np.ndarray] = {}
        self.masks: dict[str, np.ndarray] = {}
        self.base: dict[str, int] = {}  # columns that start at a row > 0 of this block
        self.rows = 0
        self.row_nbytes = 0
        self.dropped: dict[str, int] = {}
        self._warned: set[str] = set()
        self._groups: set[str] = set()  # names used as dicts (their values are sub-keys)
        self._on_new = on_new_column

    @property
    def nbytes(self) -> int:
        """Memory of this block's columns and masks."""
        return sum(c.nbytes for c in self.cols.values()) + sum(m.nbytes for m in self.masks.values())

    def new_block(self, rows: int) -> None:
        """Start fresh arrays of ``rows`` rows (zeros, masks False) for every known key."""
        self.rows = rows
        self.base = {}
        self.cols = {k: _empty(rows, dt, shape) for k, (dt, shape) in self.specs.items()}
        self.masks = {k: np.zeros(rows, dtype=bool) for k in self.specs}

    def _drop(self, name: str, why: str) -> None:
        self.dropped[name] = self.dropped.get(name, 0) + 1
        if name not in self._warned:
            self._warned.add(name)
            logger.warning(
                "gym_aquacollect: {} key {!r}: {}; such values are not recorded (counted in the dataset "
                "manifest under 'dropped_{}'). Keep the key's type fixed, or rename the key when its type changes.",
                self.label, name, why, self.label,
            )

    def put(self, row: int, values: dict[str, Any], path: str = "") -> None:
        """Store ``values`` (a possibly nested dict) in row ``row``; never raises for odd values."""
        for key, value in values.items():
            name = path + clean_key(key)
            if isinstance(value, dict):
                if name in self.specs:
                    self._drop(name, f"a dict where {self.specs[name][0]} {self.specs[name][1]} values were stored")
                elif value:
                    self._groups.add(name)
                    self.put(row, value, name + "/")
                continue
            col = self.cols.get(name)
            if col is not None and type(value) is float and col.dtype.kind == "f" and col.ndim == 1 \
                    and not (self.base and name in self.base):  # hot path
                col[row] = value
                self.masks[name][row] = True
                continue
            try:
                arr = to_storable(value)
            except Unstorable as e:
                self._drop(name, str(e))
                continue
            if arr is None:
                continue
            if col is None:
                if name in self._groups:
                    self._drop(name, f"a {arr.dtype} value where a dict was stored")
                    continue
                if name in self.specs:  # known key, not yet in this block (cannot happen) - be safe
                    col = self._add(name, *self.specs[name])
                else:
                    col = self._add(name, arr.dtype, arr.shape)
            self._store(name, col, row, arr)

    def _add(self, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        if name not in self.specs:
            self.specs[name] = (dtype, shape)
            self.row_nbytes += _row_nbytes(dtype, shape)
        base = self._on_new(self) if self._on_new is not None else 0
        col = _empty(max(1, self.rows - base), dtype, shape)
        if base:
            self.base[name] = base
        self.cols[name] = col
        self.masks[name] = np.zeros(max(self.rows, base + 1), dtype=bool)
        return col

    def _store(self, name: str, col: np.ndarray, row: int, arr: np.ndarray) -> None:
        ok = arr.shape == col.shape[1:] and (
            arr.dtype == col.dtype
            or (col.dtype.kind == "O") == (arr.dtype.kind == "O")
            and np.can_cast(arr.dtype, col.dtype, casting="same_kind")
        )
        if not ok:
            dt, shape = self.specs[name]
            self._drop(name, f"changed from {dt} {shape} to {arr.dtype} {arr.shape}")
            return
        try:
            col[row - self.base.get(name, 0)] = arr.item() if col.dtype.kind == "O" and arr.ndim == 0 else arr
        except (ValueError, TypeError, OverflowError) as e:  # e.g. a uint64 beyond int64 into an int column
            self._drop(name, f"{type(e).__name__}: {e}")
            return
        self.masks[name][row] = True

    def columns(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Views of rows ``start:stop`` of every column and mask, keyed by full column name."""
        out: dict[str, np.ndarray] = {}
        for name, col in self.cols.items():
            b = self.base.get(name, 0)
            if b:
                if start < b:  # cannot happen: the rows before a base were handed over
                    raise AssertionError(f"{self.prefix}{name}: rows {start}:{b} were handed over already")
                out[self.prefix + name] = col[start - b:stop - b]
            else:
                out[self.prefix + name] = col[start:stop]
            head, _, tail = name.rpartition("/")
            mask_name = f"{head}/_{tail}" if head else f"_{tail}"
            out[self.prefix + mask_name] = self.masks[name][start:stop]
        return out

    def clear_row(self, row: int) -> None:
        """Forget what row ``row`` holds (its masks become False)."""
        for mask in self.masks.values():
            mask[row] = False

    def snapshot(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, int]]:
        """This block's arrays (to copy a row from after :meth:`new_block`)."""
        return dict(self.cols), dict(self.masks), dict(self.base)

    def copy_row_from(self, snap: tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, int]], src: int,
                      dst: int) -> None:
        """Copy row ``src`` of another block (a :meth:`snapshot`) into row ``dst`` of this block."""
        cols, masks, base = snap
        for name, col in cols.items():
            if masks[name][src]:
                self.cols[name][dst - self.base.get(name, 0)] = col[src - base.get(name, 0)]
                self.masks[name][dst] = True


def jsonable(x: Any) -> Any:
    """Best-effort JSON-safe copy of reset options / metadata (arrays become lists)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().numpy().tolist()
    return repr(x)


def concat_columns(parts: list[dict[str, np.ndarray]], counts: list[int]) -> dict[str, np.ndarray]:
    """Concatenate column dicts of ``counts`` rows each; a column missing from a part (an info key that
    appeared later) is filled with zeros / ``""`` there (its presence mask, also filled, is False).

    Example:
        >>> out = concat_columns([{"a": np.ones(2)}, {"a": np.ones(1), "b": np.array(["x"], object)}], [2, 1])
        >>> out["a"].tolist(), out["b"].tolist()
        ([1.0, 1.0, 1.0], ['', '', 'x'])
    """
    if len(parts) == 1:
        return parts[0]
    out: dict[str, np.ndarray] = {}
    for name in dict.fromkeys(k for p in parts for k in p):
        ref = next(p[name] for p in parts if name in p)
        cols = []
        for p, n in zip(parts, counts):
            a = p.get(name)
            if a is None:
                a = np.zeros((n, *ref.shape[1:]), dtype=ref.dtype) if ref.dtype != _OBJ \
                    else np.full((n, *ref.shape[1:]), "", _OBJ)
            cols.append(a)
        out[name] = np.concatenate(cols)
    return out
