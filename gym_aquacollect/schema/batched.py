"""Per-step checks and info splitting of batched (vector / Isaac Lab / multi-agent) values.

Contents:
    * :class:`BatchedPut` / :func:`check_batch_column` - per-step validation of batched values against the
      single spaces by identity comparisons (shape, dtype, Dict key sets); a mismatch raises
      :class:`~gym_aquacollect.schema.spaces.SpaceMismatchError`.
    * :func:`split_batched_info` - a Gymnasium batched info dict as ``{column name: (values, mask)}``, with the
      info-column naming of :mod:`gym_aquacollect.schema.columns`.
    * :func:`copy_info`, :func:`teacher_columns`, :func:`info_text`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from gym_aquacollect.schema.columns import Unstorable, to_storable
from gym_aquacollect.schema.columns import clean_key as _clean_key
from gym_aquacollect.schema.nested import leaf_get
from gym_aquacollect.schema.spaces import SpaceCodec, SpaceMismatchError

__all__ = ["BatchedPut", "check_batch_column", "split_batched_info", "copy_info", "teacher_columns", "info_text",
           "leaf_get", "dtype_ok"]


def copy_info(value: Any) -> tuple[Any, int]:
    """A copy of a (batched) info dict as it is now, and the bytes its arrays hold.

    Envs may reuse their info arrays between steps; a reference kept until the writer splits the chunk
    would then see the last value for every step. Dicts, lists and arrays are copied; other values are
    immutable or kept as they are (their text is taken in the writer thread).

    Example:
        >>> a = np.zeros(2)
        >>> info, nbytes = copy_info({"x": a, "d": {"y": [1, 2]}})
        >>> a[:] = 5
        >>> info["x"].tolist(), nbytes
        ([0.0, 0.0], 32)
    """
    if isinstance(value, np.ndarray):
        out = value.copy()
        return out, out.nbytes
    if isinstance(value, dict):
        d, total = {}, 0
        for k, v in value.items():
            d[k], nb = copy_info(v)
            total += nb
        return d, total
    if isinstance(value, (list, tuple)):
        parts = [copy_info(v) for v in value]
        return type(value)(p[0] for p in parts) if isinstance(value, list) else tuple(p[0] for p in parts), \
            sum(p[1] for p in parts) + 8 * len(parts)
    if hasattr(value, "detach") and hasattr(value, "clone"):  # torch tensor
        out = value.detach().clone()
        return out, int(out.element_size() * out.nelement())
    return value, 0

_OBJ = np.dtype(object)


def split_batched_info(infos: dict[str, Any], n: int, skip: Sequence[str] = ("final_obs", "final_info"),
                       path: str = "", out: dict | None = None, parent_mask: np.ndarray | None = None,
                       bad: dict[str, str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Flatten a Gymnasium batched info dict into ``{name: (values (n, ...), mask (n,))}``.

    A key ``k`` is present for sub-env ``i`` where ``infos["_k"][i]`` is True (and its parent dict's
    mask too); keys without a mask count as present for all. Mask keys themselves are skipped. Values
    that are not one per sub-env (wrong batch length, a scalar, a mask of the wrong length) are left out
    and, when ``bad`` is given, named there with the reason.

    Example:
        >>> bad = {}
        >>> out = split_batched_info({"x": np.arange(2), "y": np.arange(3)}, 2, bad=bad)
        >>> sorted(out), bad
        (['x'], {'y': 'batch length 3, not one per sub-env (2)'})
    """
    out = {} if out is None else out
    for k, v in infos.items():
        if not isinstance(k, str):
            k = str(k)
        if k in skip or (k.startswith("_") and k[1:] in infos):
            continue
        name = path + _clean_key(k)
        try:
            m = infos.get(f"_{k}")
            mask = np.ones(n, dtype=bool) if m is None else np.asarray(m, dtype=bool).reshape(n)
        except (ValueError, TypeError):
            if bad is not None:
                bad[name] = f"its mask '_{k}' is not one bool per sub-env ({n})"
            continue
        if parent_mask is not None:
            mask = mask & parent_mask
        if isinstance(v, dict):
            split_batched_info(v, n, (), name + "/", out, mask, bad)
            continue
        try:
            arr = np.asarray(v) if not isinstance(v, np.ndarray) else v
        except (ValueError, TypeError, OverflowError) as e:
            if bad is not None:
                bad[name] = f"not an array ({type(e).__name__})"
            continue
        if arr.ndim == 0 or arr.shape[0] != n:
            if bad is not None and mask.any():
                bad[name] = f"batch length {arr.shape[0] if arr.ndim else 'none (a scalar)'}, not one per sub-env ({n})"
            continue  # not a per-sub-env value
        out[name] = (arr, mask)
    return out


def dtype_ok(src: np.dtype, dst: np.dtype, cast: bool) -> bool:
    """Whether a batched leaf of dtype ``src`` may be stored in a column of dtype ``dst``.

    Equal dtypes always; with ``dtype_policy="cast"`` also numeric values that cast without changing
    kind for the worse (float64 -> float32, int32 -> int64, int/bool -> float). Never object, str or
    complex values into a numeric column, and never float -> int (that would truncate silently)."""
    if src == dst:
        return True
    if dst.kind == "O":
        return src.kind in "OU"
    if not cast or src.kind not in "biuf" or dst.kind not in "biuf":
        return False
    return bool(np.can_cast(src, dst, "same_kind")) or (src.kind in "biu" and dst.kind in "iuf")


class BatchedPut:
    """Validating writer of one batched value (all N sub-envs) into row ``k`` of its leaf buffers.

    Per step it does identity comparisons only (``type``, ``shape``, ``dtype`` of each leaf, the key set
    of each Dict level): no loop over sub-envs. Anything that is not exactly the expected array goes
    through :meth:`check`, which accepts what NumPy may store without changing meaning (lists, allowed
    casts, see :func:`dtype_ok`) and raises :class:`~gym_aquacollect.schema.spaces.SpaceMismatchError` naming
    the key, the expected and the actual shape/dtype otherwise, so a batch that NumPy could broadcast
    (``(1, D)`` or ``(D,)`` for ``(N, D)``) is never stored.

    Example:
        >>> from gymnasium import spaces
        >>> put = BatchedPut(SpaceCodec(spaces.Box(0, 1, (3,)), "observation"), 4, "observation")
        >>> bufs = [np.zeros((2, 4, 3), np.float32)]
        >>> put(bufs, 0, np.ones((4, 3), np.float32))
        >>> put(bufs, 1, np.ones((1, 3), np.float32))
        Traceback (most recent call last):
        ...
        gym_aquacollect.schema.spaces.SpaceMismatchError: batched observation: expected shape (4, 3) dtype float32 (the single observation space batched over 4 sub-envs), got shape (1, 3) dtype float32. Check the env's single_observation_space and num_envs.
    """

    def __init__(self, codec: SpaceCodec, n: int, label: str, cast: bool = False) -> None:
        self.n, self.label, self.cast = int(n), label, bool(cast)
        self.leaves = [(leaf.path, (self.n, *leaf.shape), leaf.dtype, leaf.name) for leaf in codec.leaves]
        self.simple = codec.simple
        self.shape0, self.dtype0 = self.leaves[0][1], self.leaves[0][2]
        self.structs: list[tuple[tuple[str, ...], Any]] = []  # (path, frozenset of keys | tuple length)
        self._walk(codec.space, ())

    def _walk(self, space: Any, path: tuple[str, ...]) -> None:
        from gymnasium import spaces

        if isinstance(space, spaces.Dict):
            self.structs.append((path, frozenset(space.spaces)))
            for k, sub in space.spaces.items():
                self._walk(sub, path + (k,))
        elif isinstance(space, spaces.Tuple):
            self.structs.append((path, len(space.spaces)))
            for j, sub in enumerate(space.spaces):
                self._walk(sub, path + (f"_index_{j}",))

    def _where(self, path: tuple[str, ...]) -> str:
        name = "/".join(p[7:] if p.startswith("_index_") else p for p in path)
        return f"batched {self.label}[{name!r}]" if path else f"batched {self.label}"

    def check_structure(self, value: Any) -> None:
        """Raise unless every Dict level has exactly the space's keys (and Tuples their length)."""
        for path, want in self.structs:
            try:
                node = leaf_get(value, path)
            except (KeyError, IndexError, TypeError):
                raise SpaceMismatchError(f"{self._where(path)}: missing (expected by the space)") from None
            if isinstance(want, frozenset):
                if not hasattr(node, "keys") or len(node) != len(want) or not want.issuperset(node.keys()):
                    got = set(node.keys()) if hasattr(node, "keys") else None
                    if got is None:
                        raise SpaceMismatchError(f"{self._where(path)}: expected a dict with keys {sorted(want)}, "
                                                 f"got {type(node).__name__}")
                    raise SpaceMismatchError(
                        f"{self._where(path)}: key set does not match the Dict space: missing "
                        f"{sorted(want - got)}, unexpected {sorted(got - want, key=str)}")
            elif not isinstance(node, (tuple, list)) or len(node) != want:
                raise SpaceMismatchError(f"{self._where(path)}: expected a tuple of {want} elements, got "
                                         f"{type(node).__name__} of length {len(node) if hasattr(node, '__len__') else '?'}")

    def check(self, v: Any, shape: tuple[int, ...], dtype: np.dtype, path: tuple[str, ...]) -> np.ndarray:
        """``v`` as an array of exactly ``shape`` and a dtype allowed for ``dtype``, or a clear error."""
        arr = v if isinstance(v, np.ndarray) else np.asarray(v)
        if arr.shape != shape or not dtype_ok(arr.dtype, dtype, self.cast):
            hint = "" if arr.shape != shape or self.cast or arr.dtype.kind not in "biuf" else \
                " (dtype_policy='cast' would cast it)"
            raise SpaceMismatchError(
                f"{self._where(path)}: expected shape {shape} dtype {dtype} (the single {self.label} space "
                f"batched over {self.n} sub-envs), got shape {arr.shape} dtype {arr.dtype}{hint}. Check the "
                f"env's single_{self.label}_space and num_envs."
            )
        return arr

    def __call__(self, bufs: list[np.ndarray], k: int, value: Any) -> None:
        if self.simple:
            if type(value) is not np.ndarray or value.shape != self.shape0 or value.dtype is not self.dtype0:
                value = self.check(value, self.shape0, self.dtype0, ())
            bufs[0][k] = value
            return
        self.check_structure(value)
        for buf, (path, shape, dt, _) in zip(bufs, self.leaves):
            v = leaf_get(value, path)
            if type(v) is not np.ndarray or v.shape != shape or v.dtype is not dt:
                v = self.check(v, shape, dt, path)
            buf[k] = v

    def check_single(self, value: Any, where: str) -> None:
        """Validate one *unbatched* value (a SAME_STEP final observation) without storing it."""
        for path, shape, dt, _ in self.leaves:
            try:
                v = leaf_get(value, path) if path else value
            except (KeyError, IndexError, TypeError):
                raise SpaceMismatchError(f"{where}[{'/'.join(path)!r}]: missing (expected by the space)") from None
            if type(v) is np.ndarray and v.shape == shape[1:] and v.dtype is dt:
                continue
            arr = np.asarray(v)
            if arr.shape != shape[1:] or not dtype_ok(arr.dtype, dt, self.cast):
                name = "/".join(path)
                raise SpaceMismatchError(
                    f"{where}{f'[{name!r}]' if name else ''}: expected shape {shape[1:]} dtype {dt} (the single "
                    f"{self.label} space), got shape {arr.shape} dtype {arr.dtype}")


def check_batch_column(v: Any, n: int, name: str, kinds: str) -> None:
    """Rewards / terminations / truncations: exactly ``(n,)`` of a numeric kind (no silent broadcast)."""
    if type(v) is np.ndarray and v.shape == (n,) and v.dtype.kind in kinds:
        return
    arr = np.asarray(v)
    if arr.shape != (n,) or arr.dtype.kind not in kinds:
        raise SpaceMismatchError(
            f"batched {name}: expected shape ({n},) (one per sub-env) of kind {kinds!r}, got shape {arr.shape} "
            f"dtype {arr.dtype}. A vector env returns one {name[:-1] if name.endswith('s') else name} per sub-env."
        )


def teacher_columns(act_codec: SpaceCodec) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    """Step columns ``extras/teacher_actions[/<leaf>]`` shaped like the (single) action space."""
    return [("extras/teacher_actions" + ("/" + leaf.name if leaf.name else ""), leaf.shape, leaf.dtype)
            for leaf in act_codec.leaves]


def info_text(x: Any) -> str | None:
    """Text of one object-dtype info value ("" for None; None when it cannot be stored)."""
    try:
        arr = to_storable(x)
    except Unstorable:
        return None
    if arr is None:
        return ""
    if arr.dtype == _OBJ:
        return str(arr.item())
    return json.dumps(arr.tolist())
