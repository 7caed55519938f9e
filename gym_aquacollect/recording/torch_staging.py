"""Device-side staging of batched torch tensors (Isaac Lab): the torch twin of the numpy chunk path.

Contents:
    * :class:`TorchChunks` - preallocated device chunk buffers plus host staging for a
      :class:`~gym_aquacollect.recording.batched.BatchedRecorder`: each step is one device copy per field; a full
      chunk goes to the host in one transfer and then to the writer thread.
    * :class:`TorchPut`, :func:`check_torch_column` - the batched checks of
      :mod:`gym_aquacollect.schema.batched`, on tensors (shape / dtype identity, no device sync).
    * :class:`TorchRecordingLifecycle` - reset / close / exit handling shared by the Isaac Lab wrappers.

torch is imported inside the functions that need it, so importing this module never imports torch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from gym_aquacollect.recording.batched import BatchedRecorder, Chunk
from gym_aquacollect.schema.batched import BatchedPut, check_batch_column
from gym_aquacollect.schema.batched import dtype_ok as _dtype_ok
from gym_aquacollect.schema.batched import leaf_get as _leaf_get

__all__ = ["TorchChunks", "TorchPut", "TorchRecordingLifecycle", "check_torch_column"]


class TorchChunks:
    """Preallocated device chunk buffers + host staging for a :class:`BatchedRecorder`."""

    def __init__(self, rec: BatchedRecorder, device: str, with_final: bool) -> None:
        import torch

        self.torch = torch
        self.rec = rec
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.with_final = with_final
        self.copy_stream = torch.cuda.Stream(self.device) if self.cuda else None
        self._free: list[dict[str, Any]] = []
        self.cur: dict[str, Any] | None = None
        self.k = 0

    def _tdtype(self, dt: np.dtype):
        return self.torch.from_numpy(np.zeros(0, dt)).dtype

    def _alloc(self) -> dict[str, Any]:
        torch, rec, K, n = self.torch, self.rec, self.rec.K, self.rec.n
        with torch.inference_mode(False):  # never inference tensors, even when stepping in inference mode
            def buf(shape, dt):
                return torch.zeros((K, n, *shape), dtype=self._tdtype(dt), device=self.device)

            dev = {
                "obs": [buf(leaf.shape, leaf.dtype) for leaf in rec.obs_codec.leaves],
                "act": [buf(leaf.shape, leaf.dtype) for leaf in rec.act_codec.leaves],
                "rew": buf((), np.float64), "term": buf((), np.bool_), "trunc": buf((), np.bool_),
                "final": [buf(leaf.shape, leaf.dtype) for leaf in rec.obs_codec.leaves] if self.with_final else None,
                "ext": [buf(shape, dt) for _, shape, dt in rec.ext_specs],
            }
            if self.cuda:
                host = {k: ([t.new_empty(t.shape, device="cpu").pin_memory() for t in v] if isinstance(v, list)
                            else (None if v is None else v.new_empty(v.shape, device="cpu").pin_memory()))
                        for k, v in dev.items()}
            else:
                host = dev
        def np_of(t):
            return t.numpy()

        chunk = Chunk(
            obs=[np_of(t) for t in host["obs"]], act=[np_of(t) for t in host["act"]], rew=np_of(host["rew"]),
            term=np_of(host["term"]), trunc=np_of(host["trunc"]), ext=[np_of(t) for t in host["ext"]],
            final_leaves=None if host["final"] is None else [np_of(t) for t in host["final"]],
            final_ok=np.zeros(K, bool),
        )
        slot = {"dev": dev, "host": host, "chunk": chunk, "event": None}
        free = self._free

        def release(slot=slot) -> None:
            free.append(slot)

        chunk.release = release
        return slot

    def slot(self) -> dict[str, Any]:
        if self.cur is None:
            slot = self._free.pop() if self._free else self._alloc()
            c = slot["chunk"]
            c.k, c.reset, c.infos, c.final_obs, c.final_info = 0, None, [], [], []
            c.final_ok[:] = False
            c.t0 = time.time()
            self.cur = slot
            self.rec.chunk = c
        return self.cur

    def hand_over(self) -> None:
        """Send the current chunk (device -> pinned host on the side stream on CUDA) to the writer."""
        slot, self.cur = self.cur, None
        if slot is None:
            return
        c = slot["chunk"]
        if self.cuda and c.k:
            torch = self.torch
            cs = self.copy_stream
            cs.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(cs):
                for key, v in slot["dev"].items():
                    if v is None:
                        continue
                    pairs = zip(v, slot["host"][key]) if isinstance(v, list) else [(v, slot["host"][key])]
                    for d, h in pairs:
                        h[: c.k].copy_(d[: c.k], non_blocking=True)
                evt = torch.cuda.Event()
                evt.record(cs)
            c.wait = evt.synchronize
        else:
            c.wait = None
        self.rec.chunk = c
        self.rec.submit()


class TorchPut:
    """Validating ``buf[k].copy_(leaf)`` of one batched torch value into its leaf buffers.

    ``Tensor.copy_`` broadcasts and casts silently, so each leaf is checked first: per step only
    identity comparisons (``shape``, ``dtype``, the key set of each Dict level); anything else goes
    through :meth:`~gym_aquacollect.schema.batched.BatchedPut.check` rules and raises
    :class:`~gym_aquacollect.schema.spaces.SpaceMismatchError` naming the key, expected and actual shape/dtype.
    NumPy values (e.g. from a teacher) are accepted and converted.

    Example:
        >>> import torch
        >>> from gymnasium import spaces
        >>> from gym_aquacollect.schema.spaces import SpaceCodec
        >>> put = TorchPut(SpaceCodec(spaces.Dict({"policy": spaces.Box(-1, 1, (3,))}), "observation"), 2,
        ...                "observation")
        >>> bufs = [torch.zeros(4, 2, 3)]
        >>> put(bufs, 0, {"policy": torch.ones(2, 3)})
        >>> put(bufs, 1, {"policy": torch.ones(3)})
        Traceback (most recent call last):
        ...
        gym_aquacollect.schema.spaces.SpaceMismatchError: batched observation['policy']: expected shape (2, 3) dtype float32 (the single observation space batched over 2 sub-envs), got shape (3,) dtype float32. Check the env's single_observation_space and num_envs.
    """

    def __init__(self, codec: Any, n: int, label: str, cast: bool = False) -> None:
        import torch

        self.torch = torch
        self.np_put = BatchedPut(codec, n, label, cast)
        self.leaves = [(path, torch.Size(shape), _torch_dtype(dt), dt) for path, shape, dt, _ in self.np_put.leaves]
        self.structured = bool(self.np_put.structs)

    def check_leaf(self, v: Any, shape: Any, tdt: Any, dt: np.dtype, path: tuple[str, ...]) -> Any:
        torch = self.torch
        if not isinstance(v, torch.Tensor):
            v = torch.as_tensor(self.np_put.check(v, tuple(shape), dt, path))
        src = _np_dtype(v.dtype)
        if tuple(v.shape) != tuple(shape) or not _dtype_ok(src, dt, self.np_put.cast):
            # the numpy checker phrases the error (it compares the same shape/dtype)
            self.np_put.check(np.empty(tuple(v.shape), src), tuple(shape), dt, path)
        return v

    def check(self, value: Any) -> None:
        """Validate without copying (e.g. a final observation)."""
        if self.structured:
            self.np_put.check_structure(value)
        for path, shape, tdt, dt in self.leaves:
            v = _leaf_get(value, path) if path else value
            if type(v) is not self.torch.Tensor or v.shape != shape or v.dtype is not tdt:
                self.check_leaf(v, shape, tdt, dt, path)

    def __call__(self, bufs: list[Any], k: int, value: Any) -> None:
        if self.structured:
            self.np_put.check_structure(value)
        for buf, (path, shape, tdt, dt) in zip(bufs, self.leaves):
            v = _leaf_get(value, path) if path else value
            if type(v) is not self.torch.Tensor or v.shape != shape or v.dtype is not tdt:
                v = self.check_leaf(v, shape, tdt, dt, path)
            buf[k].copy_(v, non_blocking=True)


def _torch_dtype(dt: np.dtype) -> Any:
    import torch

    return torch.from_numpy(np.zeros(0, dt)).dtype if dt.kind != "O" else None


def _np_dtype(tdt: Any) -> np.dtype:
    import torch

    try:
        return torch.empty(0, dtype=tdt).numpy().dtype
    except (TypeError, RuntimeError):  # bfloat16 & co.: no numpy twin; a float kind
        return np.dtype(np.float32) if tdt.is_floating_point else np.dtype(object)


def check_torch_column(v: Any, n: int, name: str, kinds: str) -> None:
    """Rewards / terminated / truncated tensors: exactly ``(n,)`` of an allowed kind (no broadcast)."""
    import torch

    if isinstance(v, torch.Tensor):
        if tuple(v.shape) != (n,) or _np_dtype(v.dtype).kind not in kinds:
            check_batch_column(np.empty(tuple(v.shape), _np_dtype(v.dtype)), n, name, kinds)
    else:
        check_batch_column(v, n, name, kinds)


def _copy_leaves(bufs: list[Any], k: int, value: Any, paths: list[tuple[str, ...]]) -> None:
    """``buf[k].copy_(leaf)`` for each leaf of a (possibly dict) batched tensor value."""
    for buf, p in zip(bufs, paths):
        v = _leaf_get(value, p) if p else value
        if not hasattr(v, "detach"):  # e.g. a numpy array from a teacher
            import torch

            v = torch.as_tensor(np.asarray(v))
        buf[k].copy_(v, non_blocking=True)


class TorchRecordingLifecycle:
    """``flush`` / ``close`` / ``dataset_path`` of the wrappers that record through :class:`TorchChunks`."""

    def flush(self) -> None:
        """Make everything recorded so far durable before returning."""
        self._chunks.hand_over()
        self.collector.flush()

    def close(self) -> None:
        """Store open episodes (truncated), finalize the dataset, then close the env."""
        try:
            if not self._closed_rec:
                self._closed_rec = True
                self._chunks.hand_over()
                self._rec.close()
                self.collector.end_collection()
        finally:
            super().close()

    @property
    def dataset_path(self) -> Path:
        return self.collector.dataset_path
