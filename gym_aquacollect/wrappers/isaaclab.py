"""Recording wrapper for Isaac Lab RL tasks (batched ``gymnasium.Env`` with torch tensors).

Contents:
    * :class:`CollectingIsaacLabWrapper` - a ``gym.Wrapper`` placed directly after ``gym.make(task)``
      (where ``RecordVideo`` goes, below the RL-library wrapper). ``CollectingVectorWrapper(env, ...)``
      returns one when ``env.unwrapped.is_vector_env`` is True and the env is not a ``VectorEnv``.
    * :class:`TorchChunks` - the data path: per step one ``copy_`` per field into a preallocated
      ``(K, N, ...)`` buffer on ``env.device``; every K steps the chunk goes to host memory (pinned, on a
      side CUDA stream, with an event) and the writer thread waits on the event, then splits the chunk
      per sub-env. No ``.item()``, ``.tolist()``, ``.cpu()`` or ``.nonzero()`` in the user's thread per
      step. On CPU the same path runs with CPU tensors (the host buffer is the chunk buffer itself).

What is stored: observation groups (``policy``, ``critic``, ...) as a Dict, actions as given (moved to
``env.device``), rewards, terminated and truncated (both can be True). Isaac Lab resets finished sub-envs
inside ``step`` (SAME_STEP); the terminal observation comes from ``extras["final_obs"]`` when the task sets
``cfg.compute_final_obs`` (Isaac Lab >= 3.0). Otherwise it does not exist: the episode's last observation
row is zeros and its metadata says ``"final_observation": "missing"``. ``extras`` (batch aggregates such as
``extras["log"]``) are not stored per step.

``teacher=``: a callable ``teacher(obs) -> action`` called before each step with the last observation
dict the env returned (all groups, so a teacher may use the privileged ``"critic"`` group); its batched
output is stored beside the executed action as the step column ``extras/teacher_actions``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ..collectors.base import DEFAULT_COMPRESSION, BaseCollector
from ..spaces import SpaceMismatchError
from ..storage.writer import FlushPolicy
from ._batched import (
    SAME_STEP,
    BatchedPut,
    BatchedRecorder,
    Chunk,
    _dtype_ok,
    _leaf_get,
    check_batch_column,
    teacher_columns,
)
from .single import recorded_kwargs
from .vector import _make_collector

__all__ = ["CollectingIsaacLabWrapper", "TorchChunks", "TorchPut"]


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
    through :meth:`~gym_aquacollect.wrappers._batched.BatchedPut.check` rules and raises
    :class:`~gym_aquacollect.spaces.SpaceMismatchError` naming the key, expected and actual shape/dtype.
    NumPy values (e.g. from a teacher) are accepted and converted.

    Example:
        >>> import torch
        >>> from gymnasium import spaces
        >>> from gym_aquacollect.spaces import SpaceCodec
        >>> put = TorchPut(SpaceCodec(spaces.Dict({"policy": spaces.Box(-1, 1, (3,))}), "observation"), 2,
        ...                "observation")
        >>> bufs = [torch.zeros(4, 2, 3)]
        >>> put(bufs, 0, {"policy": torch.ones(2, 3)})
        >>> put(bufs, 1, {"policy": torch.ones(3)})
        Traceback (most recent call last):
        ...
        gym_aquacollect.spaces.SpaceMismatchError: batched observation['policy']: expected shape (2, 3) dtype float32 (the single observation space batched over 2 sub-envs), got shape (3,) dtype float32. Check the env's single_observation_space and num_envs.
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


class CollectingIsaacLabWrapper(TorchRecordingLifecycle, gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Record every sub-env episode of an Isaac Lab task (or :class:`~gym_aquacollect.testing.FakeIsaacLabEnv`).

    Example:
        >>> import tempfile, torch, gymnasium as gym
        >>> from gym_aquacollect.testing.fake_isaaclab import FakeEnvCfg, FakeSceneCfg
        >>> from gym_aquacollect import CollectingVectorWrapper, load_dataset
        >>> cfg = FakeEnvCfg(scene=FakeSceneCfg(num_envs=2), terminate_schedule=[3, 4], compute_final_obs=True)
        >>> path = tempfile.mkdtemp() + "/isaac"
        >>> env = CollectingVectorWrapper(gym.make("Isaac-Fake-v0", cfg=cfg), path)
        >>> type(env).__name__
        'CollectingIsaacLabWrapper'
        >>> _ = env.reset(seed=0)
        >>> for _ in range(8):
        ...     _ = env.step(torch.zeros(2, 2))
        >>> env.close()
        >>> [len(ep) for ep in load_dataset(path)][:3]
        [3, 4, 3]
    """

    def __init__(
        self,
        env: gym.Env,
        path: str | Path | None = None,
        *,
        collector: BaseCollector | None = None,
        compression: Any = DEFAULT_COMPRESSION,
        record_infos: bool = True,
        metadata: dict[str, Any] | None = None,
        teacher: Any = None,
        flush_policy: FlushPolicy | dict[str, Any] | None = None,
        dtype_policy: str = "cast",
        chunk_steps: int | None = None,
        autoreset_mode: Any = None,
        codecs: dict[str, Any] | None = None,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, **recorded_kwargs(path, compression, record_infos, metadata, flush_policy, dtype_policy,
                                        chunk_steps=chunk_steps))
        gym.Wrapper.__init__(self, env)
        u = env.unwrapped
        if not getattr(u, "is_vector_env", False):
            raise TypeError(f"{type(u).__name__} is not an Isaac Lab-style batched env (no is_vector_env)")
        self.num_envs = int(u.num_envs)
        self.device = str(u.device)
        cfg = getattr(u, "cfg", None)
        self.final_obs_available = bool(getattr(cfg, "compute_final_obs", False))
        desc = {"num_envs": self.num_envs, "device": self.device, "autoreset_mode": SAME_STEP,
                "isaaclab": True, "final_observation": "extras['final_obs']" if self.final_obs_available
                else "missing (the task does not expose it; last obs row of each episode is zeros)",
                "env_name": getattr(cfg, "env_name", None), "infos": "not recorded (Isaac Lab extras)"}
        self.collector = _make_collector(
            collector, path, u.single_observation_space, u.single_action_space, env, desc,
            compression=compression, record_infos=False, metadata=metadata, flush_policy=flush_policy,
            dtype_policy=dtype_policy, codecs=codecs,
        )
        c = self.collector
        self.teacher = teacher
        self._rec = BatchedRecorder(c, self.num_envs, c._obs_codec, c._act_codec, SAME_STEP, record_infos=False,
                                    chunk_steps=chunk_steps, episode_meta={"autoreset_mode": SAME_STEP},
                                    ext=teacher_columns(c._act_codec) if teacher is not None else (),
                                    per_env_seeds=False)  # one seed for the whole batch
        self._chunks = TorchChunks(self._rec, self.device, self.final_obs_available)
        self._rec.before_exit.append(self._chunks.hand_over)
        self._obs_paths = [leaf.path for leaf in c._obs_codec.leaves]
        self._act_paths = [leaf.path for leaf in c._act_codec.leaves]
        self._last_final: Any = None
        self._last_obs: Any = None
        self._closed_rec = False
        cast = c.dtype_policy == "cast"
        self._put_obs = TorchPut(c._obs_codec, self.num_envs, "observation", cast)
        self._put_act = TorchPut(c._act_codec, self.num_envs, "action", cast)
        self._put_ext = TorchPut(c._act_codec, self.num_envs, "teacher action", cast) if teacher is not None else None
        import torch

        self._n1 = torch.Size((self.num_envs,))
        self._col_dtypes = (torch.bool,)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        out = self.env.reset(seed=seed, options=options)
        obs = out[0]
        self._chunks.hand_over()
        leaves = [np.array(_leaf_get(obs, p).detach().cpu().numpy(), dtype=leaf.dtype, copy=True)
                  for p, leaf in zip(self._obs_paths, self._rec.obs_codec.leaves)]
        self._rec.on_reset(np.ones(self.num_envs, bool), None, None, seed, options, obs_leaves=leaves)
        # on_reset opened a plain chunk for the reset event; move the event to a device chunk
        plain = self._rec.chunk
        self._rec.chunk = None
        slot = self._chunks.slot()
        slot["chunk"].reset = plain.reset
        plain.release()
        self._last_final = (out[1] or {}).get("final_obs") if isinstance(out[1], dict) else None
        self._last_obs = obs
        return out

    def step(self, action: Any):
        teacher_action = None if self.teacher is None else self.teacher(self._last_obs)
        out = self.env.step(action)
        obs, rew, term, trunc, extras = out
        if self._rec.writer.failed:  # e.g. a forked child: say so at the first step
            self._rec.writer.check()
        ch = self._chunks
        slot = ch.cur if ch.cur is not None else ch.slot()
        dev, c = slot["dev"], slot["chunk"]
        k, n1 = c.k, self._n1
        try:
            self._put_obs(dev["obs"], k, obs)
            self._put_act(dev["act"], k, action)
            if teacher_action is not None:
                self._put_ext(dev["ext"], k, teacher_action)
            if getattr(rew, "shape", None) != n1 or not rew.is_floating_point():
                check_torch_column(rew, self.num_envs, "rewards", "biuf")
            if getattr(term, "shape", None) != n1 or term.dtype is not self._col_dtypes[0]:
                check_torch_column(term, self.num_envs, "terminated", "biu")
            if getattr(trunc, "shape", None) != n1 or trunc.dtype is not self._col_dtypes[0]:
                check_torch_column(trunc, self.num_envs, "truncated", "biu")
            fo = extras.get("final_obs") if dev["final"] is not None and isinstance(extras, dict) else None
            fresh = fo is not None and fo is not self._last_final  # a new dict: the env reset some sub-envs
            if fresh:
                self._put_obs.check(fo)
        except SpaceMismatchError as e:
            ch.hand_over()
            self._rec.invalidate(e)
            raise
        if teacher_action is not None:
            self._last_obs = obs
        dev["rew"][k].copy_(rew, non_blocking=True)
        dev["term"][k].copy_(term, non_blocking=True)
        dev["trunc"][k].copy_(trunc, non_blocking=True)
        if fresh:
            self._last_final = fo
            for buf, p in zip(dev["final"], self._obs_paths):
                buf[k].copy_(_leaf_get(fo, p), non_blocking=True)
            c.final_ok[k] = True
        c.k = k + 1
        if c.k == self._rec.K:
            ch.hand_over()
        return out
