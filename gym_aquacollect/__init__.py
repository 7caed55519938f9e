"""gym_aquacollect: make any Gymnasium env, vector env or Isaac Lab task record its own dataset.

Contents:
    * :class:`CollectingWrapper` - one line around an env records every episode; :func:`make_collecting` picks
      the wrapper for any env (single, vector, Isaac Lab, multi-agent).
    * :func:`load_dataset`, :class:`Dataset`, :class:`Episode` - read datasets back.
    * Collectors (:mod:`gym_aquacollect.collectors`): :class:`BaseCollector`, :class:`RLCollector`,
      :class:`TrajectoryCollector`, :class:`BufferCollector`, and the seed's :class:`UnitConfig`.
    * :func:`env_info` - what a collector's ``initialize_configs`` takes.
    * :func:`handle_sigterm` - opt in to SIGTERM behaving like Ctrl-C (what is recorded is kept).
    * :class:`ReplayEnv`, :func:`replay_actions` - play a dataset back as an env (registered as
      ``AquaCollect/Replay-v0``), re-execute recorded actions; exporters in :mod:`gym_aquacollect.formats`.

Example:
    >>> import tempfile, gymnasium as gym
    >>> from gym_aquacollect import CollectingWrapper, load_dataset
    >>> path = tempfile.mkdtemp() + "/demo"
    >>> env = CollectingWrapper(gym.make("CartPole-v1"), path)
    >>> _ = env.reset(seed=0)
    >>> for _ in range(30):
    ...     *_, term, trunc, _ = env.step(env.action_space.sample())
    ...     if term or trunc:
    ...         _ = env.reset()
    >>> env.close()
    >>> load_dataset(path).total_steps
    30
"""

from gym_aquacollect.collectors import (
    BaseCollector,
    BufferCollector,
    RLCollector,
    TrajectoryCollector,
    UnitConfig,
    env_info,
)
from gym_aquacollect.data.dataset import AgentEpisode, Dataset, Episode, load_dataset
from gym_aquacollect.data.replay import ReplayEnv, replay_actions
from gym_aquacollect.registration import register_envs
from gym_aquacollect.storage import DatasetFormatError, FlushPolicy, WriterError, handle_sigterm
from gym_aquacollect.storage.codecs import ColumnCodec, VideoCodec
from gym_aquacollect.wrappers import (
    CollectingMultiAgentWrapper,
    CollectingVectorWrapper,
    CollectingWrapper,
    make_collecting,
)

register_envs()

__version__ = "0.1.0"

__all__ = [
    "CollectingWrapper",
    "CollectingVectorWrapper",
    "CollectingMultiAgentWrapper",
    "make_collecting",
    "load_dataset",
    "Dataset",
    "Episode",
    "AgentEpisode",
    "BaseCollector",
    "RLCollector",
    "TrajectoryCollector",
    "BufferCollector",
    "UnitConfig",
    "env_info",
    "FlushPolicy",
    "WriterError",
    "DatasetFormatError",
    "handle_sigterm",
    "ReplayEnv",
    "replay_actions",
    "VideoCodec",
    "ColumnCodec",
    "__version__",
]
