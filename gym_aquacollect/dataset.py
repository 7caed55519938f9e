"""Old import path kept for users: the code lives in :mod:`gym_aquacollect.data.dataset` (no logic here)."""

from gym_aquacollect.data.dataset import *  # noqa: F401,F403
from gym_aquacollect.data.dataset import _LOADERS  # noqa: F401
