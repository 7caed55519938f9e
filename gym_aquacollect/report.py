"""Old import path kept for users: the code lives in :mod:`gym_aquacollect.cli.report` (no logic here)."""

from gym_aquacollect.cli.report import *  # noqa: F401,F403
