"""Layer 8, the ``aquacollect`` command line: :mod:`.main` (entry point), :mod:`.formats` (export / validate /
replay / plot subcommands), :mod:`.report` (HTML report)."""

from gym_aquacollect.cli.main import main

__all__ = ["main"]
