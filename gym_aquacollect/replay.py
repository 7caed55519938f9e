"""Old import path kept for users: the code lives in :mod:`gym_aquacollect.data.replay` (no logic here)."""

from gym_aquacollect.data.replay import *  # noqa: F401,F403
