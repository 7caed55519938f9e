"""Registers the format subcommands (``export``, ``validate``, ``replay``, ``plot``) with ``aquacollect``.

``gym_aquacollect.cli.main`` imports this module; the subcommands live in :mod:`gym_aquacollect.cli_formats`.
"""

from __future__ import annotations

from .cli import _EXTRA_COMMANDS, add_command
from .cli_formats import add_subcommands

if add_subcommands not in _EXTRA_COMMANDS:
    add_command(add_subcommands)
