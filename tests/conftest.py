"""Shared pytest options: ``--soak`` (or ``AQUACOLLECT_SOAK=1``) runs the slow reliability soak mode."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="run the reliability suite in soak mode (many more runs, 10M-step soak); slow")


@pytest.fixture(scope="session")
def soak(request: pytest.FixtureRequest) -> bool:
    """True in soak mode (``--soak`` or ``AQUACOLLECT_SOAK=1``)."""
    return bool(request.config.getoption("--soak")) or os.environ.get("AQUACOLLECT_SOAK") == "1"
