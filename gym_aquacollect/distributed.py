"""Old import path kept for users: the code lives in :mod:`gym_aquacollect.integrations.ray` (no logic here)."""

from gym_aquacollect.integrations.ray import *  # noqa: F401,F403
