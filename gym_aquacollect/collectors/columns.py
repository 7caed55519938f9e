"""Old import path kept for users: the code lives in :mod:`gym_aquacollect.schema.columns` (no logic here)."""

from gym_aquacollect.schema.columns import *  # noqa: F401,F403
