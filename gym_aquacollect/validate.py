"""Old import path kept for users: the code lives in :mod:`gym_aquacollect.data.validate` (no logic here)."""

from gym_aquacollect.data.validate import *  # noqa: F401,F403
