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

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from gym_aquacollect.collectors.base import DEFAULT_COMPRESSION, DEFAULT_DTYPE_POLICY, BaseCollector
from gym_aquacollect.recording.batched import SAME_STEP, BatchedRecorder
from gym_aquacollect.recording.torch_staging import (
    TorchChunks,
    TorchPut,
    TorchRecordingLifecycle,
    check_torch_column,
)
from gym_aquacollect.schema.batched import leaf_get as _leaf_get
from gym_aquacollect.schema.batched import teacher_columns
from gym_aquacollect.schema.spaces import SpaceMismatchError
from gym_aquacollect.storage.writer import FlushPolicy
from gym_aquacollect.wrappers.single import recorded_kwargs
from gym_aquacollect.wrappers.vector import _make_collector

__all__ = ["CollectingIsaacLabWrapper", "TorchChunks", "TorchPut"]


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
        dtype_policy: str = DEFAULT_DTYPE_POLICY,
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
        if self._rec.writer.busy:
            self._rec.writer.let_run()  # see DatasetWriter.let_run (the GIL convoy)
        if c.k == self._rec.K:
            ch.hand_over()
        return out
