"""Recording wrapper for Gymnasium vector envs (and, by dispatch, Isaac Lab batched tasks).

Contents:
    * :class:`CollectingVectorWrapper` - a :class:`gymnasium.vector.VectorWrapper` that records every
      finished sub-env episode as one stored episode (``env_index`` in its metadata), in all three
      autoreset modes. Given an Isaac Lab-style batched ``gymnasium.Env`` (``env.unwrapped.is_vector_env``)
      it returns a :class:`~gym_aquacollect.wrappers.isaaclab.CollectingIsaacLabWrapper` instead.
    * :func:`resolve_autoreset_mode` - the mode from ``metadata["autoreset_mode"]`` or an override.

Per step the user's thread copies each batched field once into a preallocated chunk; episode splitting,
info ``_key`` masks and SAME_STEP final observations are handled in the writer thread.

Limitations: info keys that start with ``_`` collide with Gymnasium's mask naming and are skipped.
Gymnasium 1.4.0's ``AsyncVectorEnv(shared_memory=False)`` in NEXT_STEP mode resets a sub-env a second time
after a done step followed by an explicit ``reset()``; use ``shared_memory=True`` (the default) there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from gym_aquacollect.collectors.base import (
    DEFAULT_COMPRESSION,
    DEFAULT_DTYPE_POLICY,
    BaseCollector,
    describe_env,
)
from gym_aquacollect.logs import logger
from gym_aquacollect.recording.batched import DISABLED, NEXT_STEP, SAME_STEP, BatchedRecorder
from gym_aquacollect.schema.batched import check_batch_column, copy_info, teacher_columns
from gym_aquacollect.schema.spaces import SpaceMismatchError
from gym_aquacollect.storage.writer import FlushPolicy
from gym_aquacollect.wrappers.single import attach_collector, recorded_kwargs

__all__ = ["CollectingVectorWrapper", "resolve_autoreset_mode"]

_MODES = {AutoresetMode.NEXT_STEP: NEXT_STEP, AutoresetMode.SAME_STEP: SAME_STEP, AutoresetMode.DISABLED: DISABLED}


def resolve_autoreset_mode(env: Any, override: AutoresetMode | str | None = None) -> str:
    """``"next_step"``, ``"same_step"`` or ``"disabled"`` for ``env`` (override wins)."""
    if override is not None:
        return _MODES[AutoresetMode(override)]
    mode = (getattr(env, "metadata", None) or {}).get("autoreset_mode")
    if mode is None:
        logger.warning(
            "gym_aquacollect: {} has no metadata['autoreset_mode']; assuming NEXT_STEP as Gymnasium's vector "
            "wrappers do. Pass autoreset_mode=... to CollectingVectorWrapper if that is wrong.",
            type(env).__name__,
        )
        return NEXT_STEP
    if isinstance(mode, str):
        try:
            mode = AutoresetMode(mode)
        except ValueError:
            pass
    if not isinstance(mode, AutoresetMode):
        raise TypeError(
            f"metadata['autoreset_mode'] must be a gymnasium.vector.AutoresetMode, got {mode!r} "
            f"({type(mode).__name__}); pass autoreset_mode=... to override"
        )
    return _MODES[mode]


def _make_collector(collector, path, single_obs, single_act, env, description, **kw) -> BaseCollector:
    """:func:`attach_collector` with the per-sub-env spaces and a batched env's description."""
    spec_json, desc = describe_env(env)
    desc.update(description)
    info = {"observation_space": single_obs, "action_space": single_act, "env_spec": spec_json,
            "env_description": desc}
    codecs = kw.pop("codecs", None)
    if codecs:  # per-column storage codecs: one stream per sub-env episode (see storage.codecs)
        if collector is not None:
            collector.codecs = dict(codecs)
        else:
            kw["codecs"] = codecs
    return attach_collector(collector, path, info, **kw)


class CollectingVectorWrapper(VectorWrapper, gym.utils.RecordConstructorArgs):
    """Record every sub-env episode of a vector env into a crash-safe, columnar HDF5 dataset.

    The training loop sees exactly what the inner vector env returns (the same objects).

    Example:
        >>> import tempfile, gymnasium as gym, numpy as np
        >>> from gym_aquacollect import load_dataset
        >>> path = tempfile.mkdtemp() + "/cp"
        >>> envs = CollectingVectorWrapper(gym.make_vec("CartPole-v1", num_envs=4), path)
        >>> _ = envs.reset(seed=0)
        >>> for _ in range(200):
        ...     _ = envs.step(envs.action_space.sample())
        >>> envs.close()
        >>> ds = load_dataset(path)
        >>> ds.total_steps <= 800, sorted({ep.metadata["env_index"] for ep in ds}) == [0, 1, 2, 3]
        (True, True)

    Args:
        env: a :class:`gymnasium.vector.VectorEnv`, or an Isaac Lab-style batched env (dispatched to
            :class:`~gym_aquacollect.wrappers.isaaclab.CollectingIsaacLabWrapper`).
        path, collector, compression, record_infos, metadata, flush_policy, dtype_policy, codecs: as for
            :class:`~gym_aquacollect.CollectingWrapper` (a coded column gets one stream per sub-env episode).
        teacher: a callable ``teacher(batched_observation) -> batched_action``, called before each step
            on the observation the actions are taken at; its output is stored beside the executed action
            as the step column ``extras/teacher_actions`` (``episode.extras["teacher_actions"]``), as
            :class:`~gym_aquacollect.CollectingWrapper` does. It must fit the batched action space.
        autoreset_mode: override the env's ``metadata["autoreset_mode"]``.
        chunk_steps: steps per chunk handed to the writer thread (default: about 4 MiB of rows).
    """

    def __new__(cls, env: Any, *args: Any, **kwargs: Any):
        if cls is CollectingVectorWrapper and not isinstance(env, VectorEnv):
            from gym_aquacollect.wrappers.factory import wrapper_class  # the dispatch rules live there
            from gym_aquacollect.wrappers.multiagent import CollectingMultiAgentWrapper
            from gym_aquacollect.wrappers.single import CollectingWrapper

            u = getattr(env, "unwrapped", env)
            try:
                klass = wrapper_class(env)
            except TypeError:
                klass = None
            if klass is CollectingMultiAgentWrapper:
                raise TypeError(
                    f"{type(u).__name__} is a multi-agent env (possible_agents) without num_envs: use "
                    "CollectingMultiAgentWrapper for PettingZoo parallel envs"
                )
            if klass is None or klass is CollectingWrapper:
                raise TypeError(
                    f"CollectingVectorWrapper needs a gymnasium.vector.VectorEnv or an Isaac Lab-style batched env "
                    f"(env.unwrapped.is_vector_env), got {type(env).__name__}; use CollectingWrapper for single envs"
                )
            return klass(env, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        env: VectorEnv,
        path: str | Path | None = None,
        *,
        collector: BaseCollector | None = None,
        compression: Any = DEFAULT_COMPRESSION,
        record_infos: bool = True,
        metadata: dict[str, Any] | None = None,
        teacher: Any = None,
        flush_policy: FlushPolicy | dict[str, Any] | None = None,
        dtype_policy: str = DEFAULT_DTYPE_POLICY,
        autoreset_mode: AutoresetMode | str | None = None,
        chunk_steps: int | None = None,
        codecs: dict[str, Any] | None = None,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, **recorded_kwargs(path, compression, record_infos, metadata, flush_policy, dtype_policy,
                                        autoreset_mode=None if autoreset_mode is None
                                        else AutoresetMode(autoreset_mode).value,
                                        chunk_steps=chunk_steps))
        VectorWrapper.__init__(self, env)
        self.autoreset_mode = resolve_autoreset_mode(env, autoreset_mode)
        self.collector = _make_collector(
            collector, path, env.single_observation_space, env.single_action_space, env,
            {"num_envs": env.num_envs, "autoreset_mode": self.autoreset_mode,
             "vector_env": type(env.unwrapped).__name__},
            compression=compression, record_infos=record_infos, metadata=metadata,
            flush_policy=flush_policy, dtype_policy=dtype_policy, codecs=codecs,
        )
        c = self.collector
        self.teacher = teacher
        # Sync/AsyncVectorEnv seed sub-env i with seed + i: gym.make(id).reset(seed=seed + i) reproduces its
        # first episode. Native vector envs (make_vec's vectorize_mode="vector_entry_point") share one RNG.
        # A vector env that seeds its sub-envs the same way says so with a class attribute ``per_env_seeds``.
        per_env_seeds = bool(getattr(env.unwrapped, "per_env_seeds", False)) or isinstance(
            env.unwrapped, (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv))
        self._rec = BatchedRecorder(c, env.num_envs, c._obs_codec, c._act_codec, self.autoreset_mode,
                                    record_infos=record_infos, chunk_steps=chunk_steps,
                                    episode_meta={"autoreset_mode": self.autoreset_mode},
                                    ext=teacher_columns(c._act_codec) if teacher is not None else (),
                                    per_env_seeds=per_env_seeds)
        self._record_infos = record_infos
        self._same = self.autoreset_mode == SAME_STEP
        self._simple = c._obs_codec.simple and c._act_codec.simple
        self._last_obs: Any = None
        self._closed_rec = False
        self._n1 = (env.num_envs,)
        lo, la = c._obs_codec.leaves[0], c._act_codec.leaves[0]
        self._oshape, self._odt = (env.num_envs, *lo.shape), lo.dtype
        self._ashape, self._adt = (env.num_envs, *la.shape), la.dtype

    def _check_final_obs(self, fo: Any, mask: Any) -> None:
        """SAME_STEP ``infos["final_obs"]``: an object array of length N with the unbatched final
        observation of each sub-env that finished (only those are looked at)."""
        n = self.num_envs
        if not isinstance(fo, np.ndarray) or fo.shape != (n,):
            raise SpaceMismatchError(f"infos['final_obs']: expected an object array of shape ({n},), got "
                                     f"{type(fo).__name__} {getattr(fo, 'shape', '')}")
        idx = np.flatnonzero(np.asarray(mask, bool)) if mask is not None else \
            np.flatnonzero(np.not_equal(fo, None))
        put = self._rec.put_obs
        for i in idx.tolist():
            if fo[i] is not None:
                put.check_single(fo[i], f"infos['final_obs'][{i}]")

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        """Reset (all sub-envs, or those in ``options["reset_mask"]``) and open their new episodes."""
        mask = None
        rest = options
        if options and "reset_mask" in options:  # read before the env pops it
            mask = np.array(options["reset_mask"], dtype=bool, copy=True)
            rest = {k: v for k, v in options.items() if k != "reset_mask"}
        out = self.env.reset(seed=seed, options=options)
        obs, infos = out
        if mask is None:
            mask = np.ones(self.num_envs, dtype=bool)
        self._rec.on_reset(mask, obs, infos, seed, rest)
        if self.teacher is not None:
            self._last_obs = obs
        return out

    def step(self, actions: Any):
        """Step all sub-envs; the transition is copied once per field into the current chunk."""
        teacher_action = None if self.teacher is None else self.teacher(self._last_obs)
        out = self.env.step(actions)
        obs, rew, term, trunc, infos = out
        rec = self._rec
        if rec.writer.failed:  # e.g. a forked child: say so at the first step
            rec.writer.check()
        c = rec.chunk if rec.chunk is not None else rec.current()
        k, n = c.k, self.num_envs
        try:
            # validation is identity comparisons of type/shape/dtype; anything else takes the checked path
            if self._simple and type(obs) is np.ndarray and obs.shape == self._oshape and obs.dtype is self._odt:
                c.obs[0][k] = obs
            else:
                rec.put_obs(c.obs, k, obs)
            if self._simple and type(actions) is np.ndarray and actions.shape == self._ashape \
                    and actions.dtype is self._adt:
                c.act[0][k] = actions
            else:
                rec.put_act(c.act, k, actions)
            if type(rew) is not np.ndarray or rew.shape != self._n1 or rew.dtype.kind not in "biuf":
                check_batch_column(rew, n, "rewards", "biuf")
            if type(term) is not np.ndarray or term.shape != self._n1 or term.dtype.kind not in "biu":
                check_batch_column(term, n, "terminations", "biu")
            if type(trunc) is not np.ndarray or trunc.shape != self._n1 or trunc.dtype.kind not in "biu":
                check_batch_column(trunc, n, "truncations", "biu")
            fo = infos.get("final_obs") if self._same else None
            if fo is not None:
                self._check_final_obs(fo, infos.get("_final_obs"))
            if teacher_action is not None:
                rec.put_ext(c.ext, k, teacher_action)
        except SpaceMismatchError as e:
            rec.invalidate(e)
            raise
        c.rew[k] = rew
        c.term[k] = term
        c.trunc[k] = trunc
        if self._record_infos:  # copied now: an env may reuse its info arrays
            if infos:
                info_copy, nb = copy_info(infos)
                c.info_bytes += nb
            else:
                info_copy = infos
            c.infos.append(info_copy)
            if self._same:
                fi = info_copy.get("final_info") if info_copy else None
                c.final_info.append(fi)
        if self._same:
            c.final_obs.append(fo)
        if teacher_action is not None:
            self._last_obs = obs
        c.k = k = k + 1
        if rec.writer.busy:
            rec.writer.let_run()  # see DatasetWriter.let_run (the GIL convoy)
        if k == rec.K or c.info_bytes > rec.chunk_info_bytes or \
                (not k & 63 and time.monotonic() - rec.last_handoff > rec.handoff_seconds):
            rec.submit()
        return out

    def flush(self) -> None:
        """Make everything recorded so far durable before returning (open episodes stay open)."""
        self._rec.submit()
        self.collector.flush()

    def close(self, **kwargs: Any) -> None:
        """Store open episodes (truncated), finalize the dataset, then close the env."""
        try:
            if not self._closed_rec:
                self._closed_rec = True
                self._rec.close()
                self.collector.end_collection()
        finally:
            self.env.close(**kwargs)

    def __enter__(self) -> CollectingVectorWrapper:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def dataset_path(self) -> Path:
        return self.collector.dataset_path
