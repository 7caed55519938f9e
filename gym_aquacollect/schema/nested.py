"""Nested values (dicts / tuples of arrays, time-major) and the leaf-path scheme over Gymnasium spaces.

Contents:
    * :func:`leaf_paths`, :func:`get_leaf`, :func:`set_leaf` - the one leaf-path scheme: a Dict/Tuple space's
      leaves as tuples of keys (``("pos",)``, ``("_index_0", "x")``); column names are ``"/".join(path)``
      (what :class:`~gym_aquacollect.schema.spaces.SpaceCodec` names its leaves); :func:`leaf_get` is the unchecked
      per-step form of :func:`get_leaf`.
    * :func:`take_rows`, :func:`row`, :func:`concat_nested`, :func:`nested_len`, :func:`nested_equal`.
    * :func:`flatten_infos` / :func:`unflatten_infos` - nested info dicts <-> ``"a/b"`` keys.
    * :func:`flatten_batch` / :func:`unflatten_batch` - ``gymnasium.spaces.flatten`` over many rows at once.

Example:
    >>> from gymnasium import spaces
    >>> [p for p, _ in leaf_paths(spaces.Dict({"a": spaces.Discrete(2), "b": spaces.Tuple([spaces.Discrete(2)])}))]
    [('a',), ('b', '_index_0')]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

__all__ = ["ExportError", "leaf_paths", "get_leaf", "leaf_get", "set_leaf", "take_rows", "row", "concat_nested", "nested_len", "nested_equal",
           "flatten_infos", "unflatten_infos", "flatten_batch", "unflatten_batch"]


class ExportError(ValueError):
    """A dataset cannot be written in the requested format (the message says which key / space and why)."""

def leaf_paths(space: spaces.Space, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], spaces.Space]]:
    """``(path, leaf_space)`` for every leaf; Dict keys by name, Tuple elements as ``_index_<i>``."""
    if isinstance(space, spaces.Dict):
        out = []
        for k, s in space.spaces.items():
            out += leaf_paths(s, prefix + (str(k),))
        return out
    if isinstance(space, spaces.Tuple):
        out = []
        for i, s in enumerate(space.spaces):
            out += leaf_paths(s, prefix + (f"_index_{i}",))
        return out
    if isinstance(space, (spaces.Graph, spaces.Sequence, spaces.OneOf)):
        where = "/".join(prefix) or "<root>"
        raise ExportError(f"space {space} at {where!r} cannot be exported: {type(space).__name__} spaces are not supported")
    return [(prefix, space)]


def leaf_get(value: Any, path: tuple[str, ...]) -> Any:
    """The leaf at ``path`` without checks (the per-step form of :func:`get_leaf`)."""
    for p in path:
        value = value[int(p[7:])] if p.startswith("_index_") else value[p]
    return value


def get_leaf(value: Any, path: tuple[str, ...]) -> Any:
    """The leaf of a nested value at ``path`` (Dict keys, ``_index_<i>`` for Tuple elements)."""
    for p in path:
        if isinstance(value, dict):
            value = value[p]
        elif isinstance(value, (tuple, list)) and p.startswith("_index_"):
            value = value[int(p[7:])]
        else:
            raise KeyError(f"cannot descend into {type(value).__name__} with key {p!r}")
    return value


def set_leaf(space: spaces.Space, by_path: dict[tuple[str, ...], Any], prefix: tuple[str, ...] = ()) -> Any:
    """Rebuild a nested value from ``{path: column}`` following ``space``."""
    if isinstance(space, spaces.Dict):
        return {k: set_leaf(s, by_path, prefix + (str(k),)) for k, s in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(set_leaf(s, by_path, prefix + (f"_index_{i}",)) for i, s in enumerate(space.spaces))
    return by_path[prefix]


def take_rows(value: Any, index: Any) -> Any:
    """Rows ``index`` (a slice or index array) of every leaf."""
    if isinstance(value, dict):
        return {k: take_rows(v, index) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(take_rows(v, index) for v in value)
    if isinstance(value, list):
        if isinstance(index, slice):
            return value[index]
        return [value[int(i)] for i in np.asarray(index).ravel()]
    return np.asarray(value)[index]


def row(value: Any, i: int) -> Any:
    """Row ``i`` of a nested value as a fresh object (arrays copied, 0-d leaves as numpy scalars)."""
    if isinstance(value, dict):
        return {k: row(v, i) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(row(v, i) for v in value)
    if isinstance(value, list):
        return str(value[i])
    arr = np.asarray(value)
    out = arr[i]
    return out.copy() if isinstance(out, np.ndarray) else out


def concat_nested(values: Sequence[Any]) -> Any:
    """Concatenate nested values along time."""
    first = values[0]
    if isinstance(first, dict):
        return {k: concat_nested([v[k] for v in values]) for k in first}
    if isinstance(first, tuple):
        return tuple(concat_nested([v[j] for v in values]) for j in range(len(first)))
    if isinstance(first, list):
        return [s for v in values for s in v]
    return np.concatenate([np.asarray(v) for v in values], axis=0)


def nested_len(value: Any) -> int:
    if isinstance(value, dict):
        return nested_len(next(iter(value.values())))
    if isinstance(value, tuple):
        return nested_len(value[0])
    return len(value)


def nested_equal(a: Any, b: Any, *, atol: float = 0.0) -> bool:
    """Exact (or ``atol``) equality of nested values; dicts compared by key, NaN equals NaN."""
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and set(a) == set(b) and all(
            nested_equal(a[k], b[k], atol=atol) for k in a)
    if isinstance(a, tuple) or isinstance(b, tuple):
        return isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) and all(
            nested_equal(x, y, atol=atol) for x, y in zip(a, b))
    if isinstance(a, list) or isinstance(b, list):
        return list(a) == list(b)
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        return False
    if x.dtype.kind in "fc" or y.dtype.kind in "fc":
        return bool(np.allclose(x, y, rtol=0.0, atol=atol, equal_nan=True))
    return bool(np.array_equal(x, y))


def flatten_infos(infos: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": x}}`` -> ``{"a/b": x}``."""
    out: dict[str, Any] = {}
    for k, v in infos.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_infos(v, key + "/"))
        else:
            out[key] = v
    return out


def unflatten_infos(flat: dict[str, Any]) -> dict:
    """Inverse of :func:`flatten_infos`."""
    out: dict = {}
    for key, v in flat.items():
        parts = key.split("/")
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = v
    return out


# ------------------------------------------------------------------------------------------------
# gymnasium.spaces.flatten over rows
# ------------------------------------------------------------------------------------------------
def flatten_batch(space: spaces.Space, value: Any, n: int) -> np.ndarray:
    """``np.stack([gymnasium.spaces.flatten(space, row) for row in value])`` without the Python loop.

    Discrete and MultiDiscrete leaves become one-hot vectors exactly as Gymnasium flattens them.
    """
    if isinstance(space, spaces.Dict):
        parts = [flatten_batch(s, value[k], n) for k, s in space.spaces.items()]
        return np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))
    if isinstance(space, spaces.Tuple):
        parts = [flatten_batch(s, value[i], n) for i, s in enumerate(space.spaces)]
        return np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))
    if isinstance(space, spaces.Box):
        return np.asarray(value, dtype=space.dtype).reshape(n, -1)
    if isinstance(space, spaces.Discrete):
        out = np.zeros((n, int(space.n)), dtype=space.dtype)
        out[np.arange(n), np.asarray(value, dtype=np.int64) - int(space.start)] = 1
        return out
    if isinstance(space, spaces.MultiDiscrete):
        nvec = space.nvec.ravel().astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(nvec)])
        out = np.zeros((n, int(offsets[-1])), dtype=space.dtype)
        idx = np.asarray(value, dtype=np.int64).reshape(n, -1) - space.start.ravel().astype(np.int64)
        for j in range(len(nvec)):
            out[np.arange(n), offsets[j] + idx[:, j]] = 1
        return out
    if isinstance(space, spaces.MultiBinary):
        return np.asarray(value, dtype=space.dtype).reshape(n, -1)
    raise ExportError(f"cannot flatten {space} into a vector (Text and other non-numeric spaces have no flat form)")


def unflatten_batch(space: spaces.Space, flat: np.ndarray) -> Any:
    """Inverse of :func:`flatten_batch` (``gymnasium.spaces.unflatten`` over rows)."""
    n = flat.shape[0]
    if isinstance(space, (spaces.Dict, spaces.Tuple)):
        subs = list(space.spaces.items()) if isinstance(space, spaces.Dict) else list(enumerate(space.spaces))
        out, start = {}, 0
        for k, s in subs:
            d = spaces.flatdim(s)
            out[k] = unflatten_batch(s, flat[:, start:start + d])
            start += d
        return out if isinstance(space, spaces.Dict) else tuple(out[i] for i in range(len(subs)))
    if isinstance(space, spaces.Box):
        return np.asarray(flat, dtype=space.dtype).reshape((n, *space.shape))
    if isinstance(space, spaces.Discrete):
        return (np.argmax(flat, axis=1) + int(space.start)).astype(space.dtype)
    if isinstance(space, spaces.MultiDiscrete):
        nvec = space.nvec.ravel().astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(nvec)])
        cols = [np.argmax(flat[:, offsets[j]:offsets[j + 1]], axis=1) for j in range(len(nvec))]
        out = np.stack(cols, axis=1) + space.start.ravel().astype(np.int64)
        return out.astype(space.dtype).reshape((n, *space.nvec.shape))
    if isinstance(space, spaces.MultiBinary):
        return np.asarray(flat, dtype=space.dtype).reshape((n, *space.shape))
    raise ValueError(f"cannot unflatten into {space}")
