"""Peer libraries and servers the tests need, and the one switch that makes CI fail when one is missing.

Interop tests use the real library on the other side (torch, ray, d3rlpy, robomimic, isaaclab, minari,
stable_baselines3, pyarrow, av, ...). Ask for it *inside the test* (or its fixture), never with a
module-level ``pytest.importorskip`` that would also skip the file's tests that do not need it::

    from _peers import require, require_loopback

    def test_export_to_d3rlpy(tmp_path):
        d3rlpy = require("d3rlpy")                       # the module, or skip / fail
        handler = require("isaaclab.utils.datasets", why="isaaclab's dataset handler")

    @pytest.fixture(scope="module")
    def local_ray():
        require_loopback("Ray")                          # before starting any server
        ray = require("ray")

Contents:
    * :data:`REQUIRE_ALL` - ``AQUACOLLECT_REQUIRE_ALL=1`` or ``CI=true`` (``.ci/run`` sets both; ``make
      test`` sets the first when ``CI`` is set): a missing peer or a missing loopback-only network namespace *fails* the test
      instead of skipping it. The root ``conftest.py`` also turns any other skip into a failure then,
      and ends every run with a line listing the skips.
    * :func:`require` - import a peer library or skip (locally) / fail (CI) with the import error.
    * :func:`loopback_only` / :func:`require_loopback` - servers started by tests (Ray) must talk over
      loopback only: they run only inside a network namespace whose one interface is ``lo``
      (``make test`` as root makes one with ``unshare -n``; see ``.ci/netns``).
"""

from __future__ import annotations

import importlib
import os
import socket
from types import ModuleType

import pytest

__all__ = ["REQUIRE_ALL", "missing", "require", "loopback_only", "require_loopback"]


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


#: True when a missing peer library / namespace must fail the run: ``AQUACOLLECT_REQUIRE_ALL=1``, or ``CI``
#: set to a true value (CI services set ``CI=true``; ``.ci/run`` sets both).
REQUIRE_ALL: bool = _truthy(os.environ.get("AQUACOLLECT_REQUIRE_ALL")) or _truthy(os.environ.get("CI"))


def missing(reason: str) -> None:
    """Skip the current test (or module) with ``reason``; under :data:`REQUIRE_ALL` fail it instead."""
    if REQUIRE_ALL:
        pytest.fail(f"{reason} [AQUACOLLECT_REQUIRE_ALL=1: CI needs every peer library and a loopback-only "
                    "network namespace]", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require(module: str, *, minversion: str | None = None, why: str | None = None) -> ModuleType:
    """Import and return ``module`` (a dotted name); if it does not import, skip locally, fail in CI.

    Any exception raised by the import counts (peer libraries installed with ``--no-deps`` fail with
    more than ``ImportError``); the message names the module and the error.
    """
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001
        what = f"{why} ({module})" if why else module
        missing(f"{what} does not import here: {type(e).__name__}: {e}")
        raise  # unreachable: missing() raises
    if minversion is not None:
        from packaging.version import Version

        have = getattr(mod, "__version__", None)
        if have is None or Version(str(have).split("+")[0]) < Version(minversion):
            missing(f"{module} {have} is older than the {minversion} the test needs")
    return mod


def loopback_only() -> tuple[bool, str]:
    """Whether this process sits in a network namespace whose only interface is a working ``lo``.

    Returns ``(ok, why_not)``. Reads the interfaces of the process's own namespace (``if_nameindex``)
    and checks that a TCP connection over 127.0.0.1 works (``lo`` is up).
    """
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError as e:
        return False, f"cannot list network interfaces: {e}"
    if names != ["lo"]:
        return False, f"this network namespace has interfaces {names}, not only lo"
    try:
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen(1)
            with socket.create_connection(srv.getsockname(), timeout=5):
                pass
    except OSError as e:
        return False, f"lo is not usable ({e}); run `ip link set lo up` in the namespace"
    return True, ""


def require_loopback(what: str = "a server") -> None:
    """Skip (locally) / fail (CI) unless the process is in a loopback-only network namespace.

    Ray binds the machine's network address whatever ``ray.init`` is told; only a namespace that holds
    nothing but ``lo`` keeps its traffic on 127.0.0.1.
    """
    ok, why_not = loopback_only()
    if not ok:
        missing(f"{what} would listen on the machine's network interfaces ({why_not}); tests that start "
                "servers run only in a loopback-only network namespace: `make test` as root makes one "
                "(unshare -n), or run `.ci/netns python -m pytest ...`")
