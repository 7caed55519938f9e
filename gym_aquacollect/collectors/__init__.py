"""Collectors: the sinks that wrappers hand each step to (the seed document's API).

Contents:
    * :class:`BaseCollector` - validation, batching and hand-over to the writer thread; subclass it for a
      custom collector (see ``examples/custom_collector.py``).
    * :class:`RLCollector` - every transition, streamed to disk (the default).
    * :class:`TrajectoryCollector` - whole episodes, kept only when they pass filter criteria / top-k.
    * :class:`BufferCollector` - a replay buffer (``sample``) with a memory limit, spilling to disk.
    * :class:`UnitConfig` - the seed's data units; :func:`env_info` - what ``initialize_configs`` takes.
    * :mod:`.schedules` - which episodes to record (every Nth, Bernoulli, listed, time window).
    * :mod:`.filters` - the trajectory filter criteria.
"""

from gym_aquacollect.collectors import schedules
from gym_aquacollect.collectors.base import DEFAULT_COMPRESSION, BaseCollector, env_info
from gym_aquacollect.collectors.buffer import BufferCollector, BufferOverflowError
from gym_aquacollect.collectors.filters import TrajectoryFilter
from gym_aquacollect.collectors.rl import RLCollector
from gym_aquacollect.collectors.trajectory import TrajectoryCollector
from gym_aquacollect.collectors.units import GymnasiumWrapper, UnitConfig

__all__ = [
    "BaseCollector",
    "RLCollector",
    "TrajectoryCollector",
    "BufferCollector",
    "BufferOverflowError",
    "TrajectoryFilter",
    "UnitConfig",
    "GymnasiumWrapper",
    "env_info",
    "schedules",
    "DEFAULT_COMPRESSION",
]
