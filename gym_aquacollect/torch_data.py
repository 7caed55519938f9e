"""Old import path kept for users: the code lives in :mod:`gym_aquacollect.integrations.torch_data` (no logic here)."""

from gym_aquacollect.integrations.torch_data import *  # noqa: F401,F403
