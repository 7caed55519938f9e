"""Suite-wide pytest hooks (tests/ and the package doctests): CI cannot pass on skipped tests.

* ``AQUACOLLECT_REQUIRE_ALL=1`` or ``CI=true`` (``.ci/run`` sets both; ``make test`` sets the first
  when ``CI`` is set): every skip - a missing peer library (``tests/_peers.py: require``), a missing loopback-only network
  namespace (``require_loopback``), a stray ``pytest.importorskip`` - is reported as a failure.
* Every run ends with one line that lists the skipped tests and why (or says there were none).
* Doctests that use torch skip (fail under ``AQUACOLLECT_REQUIRE_ALL=1``) when torch does not import.
* The header says whether the run is in a loopback-only network namespace (tests that start servers
  need one, see ``.ci/netns``).
* ``tests/interop_lerobot`` (the real lerobot 0.4.4, in its own 8 GB venv) is a separate tier: collected only
  when ``LEROBOT_PYTHON`` names that venv's python (``make lerobot-interop`` sets it), and the header says so.
"""

from __future__ import annotations

import os
import re

import pytest

from tests._peers import REQUIRE_ALL, loopback_only

_TORCH_IN_DOCTEST = re.compile(r"\btorch\b|as_torch")

#: The lerobot tier is not part of ``make test`` (nor CI): ``make lerobot-interop`` runs it.
LEROBOT_TIER = bool(os.environ.get("LEROBOT_PYTHON"))
collect_ignore = [] if LEROBOT_TIER else ["tests/interop_lerobot"]


def pytest_configure(config: pytest.Config) -> None:
    if REQUIRE_ALL:  # a module whose peer library is missing errors at collection: report it, run the rest
        config.option.continue_on_collection_errors = True


def pytest_report_header(config: pytest.Config) -> list[str]:
    ok, why_not = loopback_only()
    net = "loopback-only network namespace (servers bind 127.0.0.1)" if ok else \
        f"host network ({why_not}): tests that start servers skip, or fail under AQUACOLLECT_REQUIRE_ALL=1"
    mode = "AQUACOLLECT_REQUIRE_ALL=1: any skip fails the run" if REQUIRE_ALL else \
        "skips allowed (AQUACOLLECT_REQUIRE_ALL unset)"
    tier = "" if LEROBOT_TIER else "; tests/interop_lerobot not collected (`make lerobot-interop` runs it)"
    return [f"aquacollect: {mode}; {net}{tier}"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    uses_torch = [item for item in items if isinstance(item, pytest.DoctestItem) and item.dtest is not None
                  and any(_TORCH_IN_DOCTEST.search(ex.source) for ex in item.dtest.examples)]
    if not uses_torch:
        return
    try:
        import torch  # noqa: F401
    except Exception as e:  # noqa: BLE001
        for item in uses_torch:
            item.add_marker(pytest.mark.skip(reason=f"doctest uses torch, which does not import here ({e})"))


def _as_failure(report: pytest.CollectReport | pytest.TestReport) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped, which AQUACOLLECT_REQUIRE_ALL=1 does not allow: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        _as_failure(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped:  # a module-level skip / importorskip
        _as_failure(report)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config):
    yield  # after pytest's own summaries: this is the last line before the counts
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        terminalreporter.write_line("aquacollect: no test skipped")
        return
    parts = []
    for rep in skipped:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        parts.append(f"{rep.nodeid} ({reason.removeprefix('Skipped: ')})")
    terminalreporter.write_line(f"aquacollect: {len(skipped)} skipped: " + "; ".join(parts), yellow=True)
