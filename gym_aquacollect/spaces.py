"""Old import path kept for users: the code lives in :mod:`gym_aquacollect.schema.spaces` (no logic here)."""

from gym_aquacollect.schema.spaces import *  # noqa: F401,F403
