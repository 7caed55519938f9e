"""The one place that maps (nested) Gymnasium spaces to flat columns and back.

Contents:
    * :class:`Leaf` - one flat column of a space: its path, dtype and per-row shape.
    * :class:`SpaceCodec` - flattens values of a space into column rows (validating them) and rebuilds
      nested values (dict / tuple / list of str) from columns.
    * :func:`serialize_space` / :func:`deserialize_space` - JSON-safe descriptions of spaces.
    * :class:`SpaceMismatchError` - raised when a value does not match its space.

Column naming: a Dict key ``k`` adds ``/k`` to the path, a Tuple element ``i`` adds ``/_index_i``
(Minari's convention), so ``Dict(pos=Box(3), t=Tuple(Discrete(5), Text(8)))`` gives the columns
``pos``, ``t/_index_0`` and ``t/_index_1``. A non-nested space has one column named ``""``.

Example:
    >>> import numpy as np
    >>> from gymnasium import spaces
    >>> codec = SpaceCodec(spaces.Dict({"pos": spaces.Box(-1, 1, (3,)), "n": spaces.Discrete(4)}))
    >>> [leaf.name for leaf in codec.leaves]
    ['n', 'pos']
    >>> cols = codec.allocate(2)
    >>> codec.write(cols, 0, {"pos": np.zeros(3, np.float32), "n": 2})
    >>> codec.read([c[:1] for c in cols])["n"].tolist()
    [2]
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

__all__ = [
    "Leaf",
    "SpaceCodec",
    "SpaceMismatchError",
    "serialize_space",
    "deserialize_space",
    "space_to_json",
    "space_from_json",
    "STR_DTYPE",
]

#: Marker dtype for Text leaves (stored as variable-length UTF-8 strings).
STR_DTYPE = np.dtype(object)


class SpaceMismatchError(ValueError):
    """A value does not match the space it is recorded under (shape, dtype or key set)."""


@dataclass(frozen=True)
class Leaf:
    """One flat column of a (possibly nested) space."""

    path: tuple[str, ...]
    dtype: np.dtype
    shape: tuple[int, ...]
    space: spaces.Space

    @property
    def name(self) -> str:
        return "/".join(self.path)

    @property
    def is_text(self) -> bool:
        return isinstance(self.space, spaces.Text)

    @property
    def row_nbytes(self) -> int:
        if self.is_text:
            return 16
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _leaf_dtype_shape(space: spaces.Space) -> tuple[np.dtype, tuple[int, ...]]:
    if isinstance(space, spaces.Box):
        return np.dtype(space.dtype), tuple(space.shape)
    if isinstance(space, spaces.Discrete):
        return np.dtype(space.dtype or np.int64), ()
    if isinstance(space, spaces.MultiDiscrete):
        return np.dtype(space.dtype), tuple(space.nvec.shape)
    if isinstance(space, spaces.MultiBinary):
        return np.dtype(space.dtype), tuple(space.shape)
    if isinstance(space, spaces.Text):
        return STR_DTYPE, ()
    raise TypeError(
        f"space {space!r} is not supported: gym_aquacollect records Box, Discrete, MultiDiscrete, "
        "MultiBinary, Text and Dict/Tuple of those. Wrap the env with a wrapper that maps it to one of these "
        "(e.g. gymnasium.wrappers.FlattenObservation)."
    )


def _where(label: str, path: tuple[str, ...]) -> str:
    return f"{label}[{'/'.join(path)!r}]" if path else label


def _make_writer(leaf: Leaf, label: str, cast: bool) -> Callable[[np.ndarray, int, Any], None]:
    """A fast validating row writer for one leaf: ``put(column, row, value)``."""
    shape, dtype, where = leaf.shape, leaf.dtype, _where(label, leaf.path)
    space = leaf.space

    if isinstance(space, spaces.Text):

        def put_text(col: np.ndarray, i: int, v: Any) -> None:
            if not isinstance(v, str):
                raise SpaceMismatchError(f"{where}: expected a str for {space}, got {type(v).__name__} {v!r:.60}")
            col[i] = v

        return put_text

    if isinstance(space, spaces.Discrete):
        lo, hi = int(space.start), int(space.start) + int(space.n)

        def put_discrete(col: np.ndarray, i: int, v: Any) -> None:
            t = type(v)
            if t is np.int64 or t is np.int32:  # what Discrete.sample() and most policies return
                v = int(v)
            elif t is not int:
                if isinstance(v, (np.integer, np.ndarray)) and np.ndim(v) == 0 and np.asarray(v).dtype.kind in "iu":
                    v = int(v)
                elif isinstance(v, np.ndarray) and v.size == 1 and v.dtype.kind in "iu" and cast:
                    v = int(v.reshape(()))
                else:
                    raise SpaceMismatchError(
                        f"{where}: expected an integer for {space}, got {type(v).__name__} "
                        f"{getattr(v, 'shape', '')} {getattr(v, 'dtype', '')} {v!r:.60}".replace("  ", " ")
                    )
            if not lo <= v < hi:
                raise SpaceMismatchError(f"{where}: value {v} is outside {space} (expected {lo} <= value < {hi})")
            col[i] = v

        return put_discrete

    def put_array(col: np.ndarray, i: int, v: Any) -> None:
        if type(v) is np.ndarray and (v.dtype is dtype or v.dtype == dtype) and v.shape == shape:
            col[i] = v
            return
        arr = np.asarray(v)
        if arr.shape != shape:
            raise SpaceMismatchError(
                f"{where}: expected shape {shape} for {space}, got shape {arr.shape} (dtype {arr.dtype}). "
                "Check the env's observation/action shapes against its declared space."
            )
        if arr.dtype != dtype:
            ok = cast or (
                not isinstance(v, np.ndarray)
                and np.can_cast(arr.dtype, dtype, casting="same_kind")
                and (arr.dtype.kind == dtype.kind or (arr.dtype.kind in "iub" and dtype.kind in "iuf"))
            )
            if not ok:
                raise SpaceMismatchError(
                    f"{where}: expected dtype {dtype} for {space}, got {arr.dtype}. Fix the env so it returns "
                    f"the space's dtype, or pass dtype_policy='cast' to cast values on record."
                )
        col[i] = arr

    return put_array


class SpaceCodec:
    """Flatten values of ``space`` into columns and rebuild them.

    Args:
        space: the (possibly nested) space.
        label: how error messages name this space (``"observation"``, ``"action"``).
        cast: when True, arrays of the right shape but another dtype are cast instead of rejected.
    """

    def __init__(self, space: spaces.Space, label: str = "value", *, cast: bool = False) -> None:
        self.space = space
        self.label = label
        self.leaves: list[Leaf] = []
        self._collect(space, ())
        self._writers = [_make_writer(leaf, label, cast) for leaf in self.leaves]
        self.simple = len(self.leaves) == 1 and self.leaves[0].path == ()
        self._put = self._build_put(space, ())

    # -- structure -----------------------------------------------------------------------------------
    def _collect(self, space: spaces.Space, path: tuple[str, ...]) -> None:
        if isinstance(space, spaces.Dict):
            if not space.spaces:
                raise TypeError(f"{_where(self.label, path)}: an empty Dict space cannot be recorded")
            for key, sub in space.spaces.items():
                if not isinstance(key, str) or "/" in key or key.startswith("_index_"):
                    raise TypeError(
                        f"{_where(self.label, path)}: Dict key {key!r} is not supported (keys must be str "
                        "without '/' and not start with '_index_')"
                    )
                self._collect(sub, path + (key,))
        elif isinstance(space, spaces.Tuple):
            for i, sub in enumerate(space.spaces):
                self._collect(sub, path + (f"_index_{i}",))
        else:
            dtype, shape = _leaf_dtype_shape(space)
            self.leaves.append(Leaf(path, dtype, shape, space))

    def _build_put(self, space: spaces.Space, path: tuple[str, ...]):
        """Build ``put(cols_list, row, value)`` walking the structure once at set-up."""
        if isinstance(space, spaces.Dict):
            keys = list(space.spaces)
            subs = [self._build_put(space.spaces[k], path + (k,)) for k in keys]
            keyset = set(keys)
            where = _where(self.label, path)

            def put_dict(cols, i, v):
                if not isinstance(v, dict) and not hasattr(v, "keys"):
                    raise SpaceMismatchError(f"{where}: expected a dict with keys {sorted(keyset)}, got {type(v).__name__}")
                if len(v) != len(keyset) or not keyset.issuperset(v.keys()):
                    missing = sorted(keyset - set(v.keys()))
                    extra = sorted(set(v.keys()) - keyset, key=str)
                    raise SpaceMismatchError(
                        f"{where}: key set does not match the Dict space: missing {missing}, unexpected {extra}"
                    )
                for k, sub in zip(keys, subs):
                    sub(cols, i, v[k])

            return put_dict
        if isinstance(space, spaces.Tuple):
            subs = [self._build_put(s, path + (f"_index_{j}",)) for j, s in enumerate(space.spaces)]
            n, where = len(subs), _where(self.label, path)

            def put_tuple(cols, i, v):
                if not isinstance(v, (tuple, list)) or len(v) != n:
                    raise SpaceMismatchError(
                        f"{where}: expected a tuple of {n} elements, got {type(v).__name__} of length "
                        f"{len(v) if hasattr(v, '__len__') else '?'}"
                    )
                for x, sub in zip(v, subs):
                    sub(cols, i, x)

            return put_tuple
        idx = next(j for j, leaf in enumerate(self.leaves) if leaf.path == path)
        writer = self._writers[idx]

        def put_leaf(cols, i, v):
            writer(cols[idx], i, v)

        return put_leaf

    @property
    def names(self) -> list[str]:
        return [leaf.name for leaf in self.leaves]

    @property
    def row_nbytes(self) -> int:
        return sum(leaf.row_nbytes for leaf in self.leaves)

    # -- writing -------------------------------------------------------------------------------------
    def allocate(self, rows: int) -> list[np.ndarray]:
        """Empty column arrays for ``rows`` rows, in :attr:`leaves` order."""
        return [np.empty((rows, *leaf.shape), dtype=leaf.dtype) for leaf in self.leaves]

    def write(self, cols: list[np.ndarray], row: int, value: Any) -> None:
        """Validate ``value`` against the space and copy it into row ``row`` of ``cols``."""
        self._put(cols, row, value)

    def leaf_writer(self) -> Callable[[np.ndarray, int, Any], None]:
        """For a non-nested space: the validating writer of its single column (fast path)."""
        assert self.simple
        return self._writers[0]

    def check(self, value: Any) -> None:
        """Raise :class:`SpaceMismatchError` unless ``value`` fits the space."""
        self._put(self.allocate(1), 0, value)

    # -- reading -------------------------------------------------------------------------------------
    def read(self, columns: list[np.ndarray] | dict[str, np.ndarray]) -> Any:
        """Rebuild the nested value (leading axis = rows) from columns (a list in leaf order or a
        dict keyed by leaf name)."""
        if isinstance(columns, dict):
            columns = [columns[leaf.name] for leaf in self.leaves]
        by_path = {leaf.path: (leaf, col) for leaf, col in zip(self.leaves, columns)}
        return self._rebuild(self.space, (), by_path)

    def _rebuild(self, space, path, by_path):
        if isinstance(space, spaces.Dict):
            return {k: self._rebuild(s, path + (k,), by_path) for k, s in space.spaces.items()}
        if isinstance(space, spaces.Tuple):
            return tuple(self._rebuild(s, path + (f"_index_{j}",), by_path) for j, s in enumerate(space.spaces))
        leaf, col = by_path[path]
        if leaf.is_text:
            return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in col]
        if getattr(col, "lazy_frames", False) and col.dtype == leaf.dtype:
            return col  # a coded (video) column: decoded on indexing
        return np.asarray(col, dtype=leaf.dtype)


# ---------------------------------------------------------------------------------------------------
# Serialization (JSON-safe dicts). Box bounds that are uniform are stored as a scalar to keep the JSON
# small for image spaces; otherwise as nested lists. Infinite bounds use the strings "inf"/"-inf".
# ---------------------------------------------------------------------------------------------------
def _num(x: float) -> Any:
    if np.isposinf(x):
        return "inf"
    if np.isneginf(x):
        return "-inf"
    return x.item() if hasattr(x, "item") else x


def _bound(arr: np.ndarray) -> Any:
    flat = np.asarray(arr).ravel()
    if flat.size and np.all(flat == flat[0]):
        return _num(flat[0])
    return [_num(x) for x in flat]


def _unbound(v: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    def conv(x: Any) -> Any:
        return float(x) if isinstance(x, str) else x

    if isinstance(v, list):
        return np.asarray([conv(x) for x in v], dtype=np.float64).reshape(shape).astype(dtype)
    return np.full(shape, conv(v), dtype=np.float64).astype(dtype)


#: The most elements one Box may describe when read from a file (refused before anything is allocated).
MAX_SPACE_ELEMENTS = 1 << 31


def _checked_shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > 32 or not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in shape):
        raise ValueError(f"Box shape {str(shape)[:100]} is not a list of at most 32 non-negative integers")
    total = 1
    for n in shape:
        total *= n
    if total > MAX_SPACE_ELEMENTS:
        raise ValueError(f"Box shape {tuple(shape)} has {total} elements, more than the {MAX_SPACE_ELEMENTS} a "
                         "space read from a file may have")
    return tuple(shape)


def serialize_space(space: spaces.Space) -> dict[str, Any]:
    """A JSON-safe dict describing ``space`` (round-trips through :func:`deserialize_space`)."""
    if isinstance(space, spaces.Box):
        return {"type": "Box", "dtype": str(space.dtype), "shape": list(space.shape),
                "low": _bound(space.low), "high": _bound(space.high)}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "dtype": str(space.dtype), "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "dtype": str(space.dtype), "nvec": space.nvec.tolist(),
                "start": space.start.tolist()}
    if isinstance(space, spaces.MultiBinary):
        n = space.n
        return {"type": "MultiBinary", "n": list(n) if isinstance(n, (tuple, list, np.ndarray)) else int(n)}
    if isinstance(space, spaces.Text):
        return {"type": "Text", "min_length": int(space.min_length), "max_length": int(space.max_length),
                "charset": "".join(space.character_list)}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "subspaces": {k: serialize_space(s) for k, s in space.spaces.items()}}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "subspaces": [serialize_space(s) for s in space.spaces]}
    raise TypeError(f"cannot serialize space {space!r}: unsupported space type {type(space).__name__}")


def deserialize_space(d: dict[str, Any]) -> spaces.Space:
    """Inverse of :func:`serialize_space`."""
    if not isinstance(d, dict):
        raise ValueError(f"a space description must be a JSON object, got {type(d).__name__}")
    kind = d.get("type")
    if kind == "Box":
        shape, dtype = _checked_shape(d["shape"]), np.dtype(d["dtype"])
        return spaces.Box(_unbound(d["low"], shape, dtype), _unbound(d["high"], shape, dtype), shape, dtype)
    if kind == "Discrete":
        return spaces.Discrete(d["n"], start=d.get("start", 0), dtype=np.dtype(d.get("dtype", "int64")))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(np.asarray(d["nvec"]), dtype=np.dtype(d.get("dtype", "int64")),
                                    start=np.asarray(d.get("start", 0)))
    if kind == "MultiBinary":
        n = d["n"]
        return spaces.MultiBinary(list(n) if isinstance(n, list) else n)
    if kind == "Text":
        return spaces.Text(d["max_length"], min_length=d.get("min_length", 1), charset=d["charset"])
    if kind == "Dict":
        return spaces.Dict({k: deserialize_space(s) for k, s in d["subspaces"].items()})
    if kind == "Tuple":
        return spaces.Tuple([deserialize_space(s) for s in d["subspaces"]])
    raise ValueError(f"cannot deserialize space description {json.dumps(d)[:200]}: unknown type {kind!r}")


def space_to_json(space: spaces.Space) -> str:
    return json.dumps(serialize_space(space))


def space_from_json(text: str) -> spaces.Space:
    return deserialize_space(json.loads(text))
