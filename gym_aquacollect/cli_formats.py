"""Old import path kept for users: the code lives in :mod:`gym_aquacollect.cli.formats` (no logic here)."""

from gym_aquacollect.cli.formats import *  # noqa: F401,F403
