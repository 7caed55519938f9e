"""Wrappers that intercept reset/step, copy what they see and hand it to a collector.

Contents:
    * :class:`CollectingWrapper` - single Gymnasium envs.
"""

from .single import CollectingWrapper

__all__ = ["CollectingWrapper"]
