"""The single-environment recording wrapper.

Contents:
    * :class:`CollectingWrapper` - records every reset and step of a Gymnasium env into a dataset,
      returning exactly what the inner env returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
from gymnasium.core import ActType, ObsType

from gym_aquacollect.collectors.base import DEFAULT_COMPRESSION, DEFAULT_DTYPE_POLICY, BaseCollector, env_info
from gym_aquacollect.storage.writer import FlushPolicy

__all__ = ["CollectingWrapper", "make_default_collector", "attach_collector", "recorded_kwargs"]


def make_default_collector(path: str | Path | None, **kwargs: Any) -> BaseCollector:
    """The collector a wrapper uses when none is given: an :class:`RLCollector` streaming every step."""
    from gym_aquacollect.collectors import RLCollector

    return RLCollector(name="dataset", dataset_path=path, **kwargs)


def recorded_kwargs(path, compression, record_infos, metadata, flush_policy, dtype_policy, **more) -> dict[str, Any]:
    """The JSON-safe constructor arguments every recording wrapper stores through
    ``RecordConstructorArgs`` (so ``gym.make(env.spec)`` rebuilds it; live objects are never stored)."""
    return dict(
        path=None if path is None else str(path),
        compression=list(compression) if isinstance(compression, tuple) else compression,
        record_infos=record_infos,
        metadata=metadata,
        flush_policy=None if flush_policy is None else dict(vars(FlushPolicy.coerce(flush_policy))),
        dtype_policy=dtype_policy,
        **more,
    )


def attach_collector(collector: BaseCollector | None, path: str | Path | None, info: dict[str, Any],
                     **kwargs: Any) -> BaseCollector:
    """The collector a wrapper records into: the given one (pointed at ``path`` if given) or a default
    one built with ``kwargs``; configured from ``info`` (see :func:`env_info`) unless it already is, and
    started."""
    if collector is None:
        collector = make_default_collector(path, **kwargs)
    elif path is not None:
        collector.dataset_path = path
    if not collector._configured:
        collector.initialize_configs(info)
    collector.start_collection()
    return collector


def _has_autoreset(env: gym.Env) -> bool:
    e = env
    while isinstance(e, gym.Wrapper):
        if type(e).__name__ == "Autoreset" or isinstance(e, getattr(gym.wrappers, "Autoreset", ())):
            return True
        e = e.env
    return False


class CollectingWrapper(gym.Wrapper[ObsType, ActType, ObsType, ActType], gym.utils.RecordConstructorArgs):
    """Record every episode of an env into a crash-safe, columnar HDF5 dataset.

    The training loop sees exactly what the inner env returns (the same objects). Each value is
    validated against its space and copied at record time (so envs that reuse buffers are recorded
    correctly); disk I/O happens in a background writer thread.

    Example:
        >>> import tempfile, gymnasium as gym
        >>> from gym_aquacollect import CollectingWrapper, load_dataset
        >>> path = tempfile.mkdtemp() + "/cartpole"
        >>> with CollectingWrapper(gym.make("CartPole-v1"), path) as env:
        ...     obs, info = env.reset(seed=0)
        ...     for _ in range(100):
        ...         obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        ...         if terminated or truncated:
        ...             obs, info = env.reset()
        >>> ds = load_dataset(path)
        >>> ds.total_steps
        100
        >>> ds[0].observations.shape[0] == len(ds[0]) + 1
        True

    Args:
        env: the env to record.
        path: the dataset directory (created, or joined if it holds a dataset of the same spaces).
            None: a fresh directory under ``./aquacollect-data`` (logged).
        collector: the sink (an :class:`~gym_aquacollect.collectors.RLCollector` by default); pass a
            :class:`~gym_aquacollect.collectors.TrajectoryCollector` to filter episodes, etc.
        compression: "auto" (default: LZF for columns with rows of 1 KiB or more, such as images; none
            for small rows), None, "lzf", "gzip" or ("gzip", level).
        record_infos: store info dicts.
        metadata: JSON-safe dict stored with the dataset.
        teacher: a callable ``teacher(observation) -> action`` evaluated on the observation each
            action was taken at; stored beside the executed action as ``extras/teacher_actions``.
        flush_policy: when data becomes durable (:class:`~gym_aquacollect.storage.writer.FlushPolicy`).
        dtype_policy: "strict" (reject values of another dtype than the space's) or "cast".
        codecs: per-column storage codecs by observation key, e.g. ``{"camera": VideoCodec()}``
            (:class:`~gym_aquacollect.storage.codecs.VideoCodec`: image columns as AV1 video with random
            access, or ``VideoCodec.lossless()``); encoded in the writer thread.
    """

    def __init__(
        self,
        env: gym.Env[ObsType, ActType],
        path: str | Path | None = None,
        *,
        collector: BaseCollector | None = None,
        compression: Any = DEFAULT_COMPRESSION,
        record_infos: bool = True,
        metadata: dict[str, Any] | None = None,
        teacher: Any = None,
        flush_policy: FlushPolicy | dict[str, Any] | None = None,
        dtype_policy: str = DEFAULT_DTYPE_POLICY,
        codecs: dict[str, Any] | None = None,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, **recorded_kwargs(path, compression, record_infos, metadata, flush_policy, dtype_policy))
        gym.Wrapper.__init__(self, env)
        if collector is not None and codecs:
            collector.codecs = dict(codecs)
        self.collector = collector = attach_collector(
            collector, path, env_info(env), compression=compression, record_infos=record_infos,
            metadata=metadata, flush_policy=flush_policy, dtype_policy=dtype_policy,
            **({"codecs": codecs} if codecs else {}),
        )
        self.teacher = teacher
        self._autoreset = _has_autoreset(env)
        self._record = collector.record_step
        self._last_obs: Any = None
        self._plain = teacher is None and not self._autoreset
        if self._plain and type(self).step is CollectingWrapper.step:  # a subclass's own step() stays in charge
            fused = collector.fused_step(env.step)
            if fused is not None:  # one frame per step: the env's step and the recording in one function
                self.step = fused

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[ObsType, dict[str, Any]]:
        """Reset the env and open a new episode (an open one is stored as truncated)."""
        obs, info = out = self.env.reset(seed=seed, options=options)
        self.collector.begin_episode(obs, info, seed=seed, options=options)
        if self.teacher is not None:
            self._last_obs = obs
        return out

    def step(self, action: ActType) -> tuple[ObsType, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env and record the transition; returns the env's own tuple."""
        if self._plain:
            out = self.env.step(action)
            self._record(action, *out)
            return out
        if self.teacher is None:
            out = self.env.step(action)
            if self.collector.awaiting_reset:
                self.collector.begin_episode(out[0], out[4])
            else:
                self._record(action, *out)
            return out
        teacher_action = self.teacher(self._last_obs)
        out = self.env.step(action)
        if self._autoreset and self.collector.awaiting_reset:
            self.collector.begin_episode(out[0], out[4])
        else:
            self._record(action, *out, {"teacher_actions": teacher_action})
        self._last_obs = out[0]
        return out

    def flush(self) -> None:
        """Make everything recorded so far durable before returning."""
        self.collector.flush()

    def close(self) -> None:
        """Store the open episode (truncated), finalize the dataset, then close the env."""
        try:
            self.collector.end_collection()
        finally:
            super().close()

    @property
    def dataset_path(self) -> Path:
        return self.collector.dataset_path
