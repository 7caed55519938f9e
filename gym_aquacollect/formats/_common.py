"""Old import path of the format helpers: they live in :mod:`gym_aquacollect.data.memory` (in-memory datasets,
``atomic_path``, ``episode_success``) and :mod:`gym_aquacollect.schema.nested` (nested values, leaf paths)."""

from gym_aquacollect.data.memory import *  # noqa: F401,F403
from gym_aquacollect.schema.nested import *  # noqa: F401,F403
