"""Conformance suites: the official test suites of the standards mcp-router speaks.

Each test module runs one suite's cases through the router's own code; a test
marked ``@pytest.mark.conformance("<suite>")`` is one case of that suite.  At
the end of the run the terminal summary gives every suite's counts (passed,
documented deviations run as strict ``xfail``, failed), whatever the output
options (``-q``, no ``-s``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Generator

import pytest

_COUNTS: defaultdict[str, Counter[str]] = defaultdict(Counter)


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``conformance`` marker."""
    config.addinivalue_line("markers", "conformance(suite): one case of an official suite")


def _suite(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("conformance")
    return str(marker.args[0]) if marker is not None and marker.args else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Count each conformance case once, by its outcome."""
    report = yield
    suite = _suite(item)
    if suite is not None:
        _count(suite, report)
    return report


def _count(suite: str, report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if hasattr(report, "wasxfail"):
            _COUNTS[suite]["documented deviation (xfail)" if report.skipped
                           else "failed (deviation now passes)"] += 1
        elif report.passed:
            _COUNTS[suite]["passed"] += 1
        elif report.skipped:
            _COUNTS[suite]["not applicable (skipped)"] += 1
        else:
            _COUNTS[suite]["failed"] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the pass counts of every conformance suite that ran."""
    if not _COUNTS:
        return
    terminalreporter.section("conformance")
    for suite, counts in sorted(_COUNTS.items()):
        total = sum(counts.values())
        detail = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
        terminalreporter.write_line(f"{suite}: {counts['passed']}/{total} cases pass "
                                    f"({detail})")
