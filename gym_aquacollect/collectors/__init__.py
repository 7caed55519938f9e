"""Collectors: the sinks that wrappers hand each step to.

Contents:
    * :class:`BaseCollector` - validation, batching and hand-over to the writer thread.
    * :class:`RLCollector` - every transition, streamed to disk (the default).
"""

from .base import DEFAULT_COMPRESSION, BaseCollector, env_info
from .rl import RLCollector

__all__ = ["BaseCollector", "RLCollector", "env_info", "DEFAULT_COMPRESSION"]
