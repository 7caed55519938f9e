"""Wrappers that intercept reset/step, copy what they see and hand it to a collector.

Contents:
    * :class:`CollectingWrapper` - single Gymnasium envs.
    * :class:`CollectingVectorWrapper` - Gymnasium vector envs and Isaac Lab batched tasks.
    * :class:`CollectingIsaacLabWrapper` - what ``CollectingVectorWrapper`` returns for Isaac Lab tasks.
    * :class:`CollectingMultiAgentWrapper` - PettingZoo parallel envs; :class:`CollectingIsaacLabMARLWrapper`
      for Isaac Lab ``DirectMARLEnv`` (also what ``CollectingVectorWrapper`` returns for one).
"""

from .isaaclab import CollectingIsaacLabWrapper
from .multiagent import CollectingIsaacLabMARLWrapper, CollectingMultiAgentWrapper
from .single import CollectingWrapper
from .vector import CollectingVectorWrapper

__all__ = ["CollectingWrapper", "CollectingVectorWrapper", "CollectingIsaacLabWrapper", "CollectingMultiAgentWrapper",
           "CollectingIsaacLabMARLWrapper"]
