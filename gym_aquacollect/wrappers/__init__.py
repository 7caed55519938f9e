"""Wrappers that intercept reset/step, copy what they see and hand it to a collector.

Contents:
    * :class:`CollectingWrapper` - single Gymnasium envs.
    * :class:`CollectingVectorWrapper` - Gymnasium vector envs and Isaac Lab batched tasks.
    * :class:`CollectingIsaacLabWrapper` - what ``CollectingVectorWrapper`` returns for Isaac Lab tasks.
    * :class:`CollectingMultiAgentWrapper` - PettingZoo parallel envs; :class:`CollectingIsaacLabMARLWrapper`
      for Isaac Lab ``DirectMARLEnv`` (also what ``CollectingVectorWrapper`` returns for one).
    * :func:`make_collecting` - ``make_collecting(env, path=None, **kwargs)`` picks the right one of these.
"""

from gym_aquacollect.wrappers.factory import make_collecting, wrapper_class
from gym_aquacollect.wrappers.isaaclab import CollectingIsaacLabWrapper
from gym_aquacollect.wrappers.multiagent import CollectingIsaacLabMARLWrapper, CollectingMultiAgentWrapper
from gym_aquacollect.wrappers.single import CollectingWrapper
from gym_aquacollect.wrappers.vector import CollectingVectorWrapper

__all__ = ["CollectingWrapper", "CollectingVectorWrapper", "CollectingIsaacLabWrapper", "CollectingMultiAgentWrapper",
           "CollectingIsaacLabMARLWrapper", "make_collecting", "wrapper_class"]
