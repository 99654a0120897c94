"""Under CI, a skipped test fails the run.

A developer's machine may lack PostgreSQL or Chromium, and the tests that need them
skip there, saying what is missing. CI has both (.ci/run starts PostgreSQL, installs
Chromium and sets CI, as CI services do), so there a skip means a test that did not
run: the session ends with a failing exit status and the reasons are listed.
"""

from __future__ import annotations

import os

import pytest
from pytest import TerminalReporter, TestReport


def skips_fail() -> bool:
    """Whether this run is under CI, where every test must run."""
    return bool(os.environ.get("CI"))


def _skips(config: pytest.Config) -> list[TestReport]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return []
    return [
        report
        for report in reporter.stats.get("skipped", [])
        if isinstance(report, TestReport) and not hasattr(report, "wasxfail")
    ]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if skips_fail() and exitstatus == pytest.ExitCode.OK and _skips(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: TerminalReporter, config: pytest.Config) -> None:
    skipped = _skips(config) if skips_fail() else []
    if not skipped:
        return
    terminalreporter.section("skipped under CI (a failure here)", red=True)
    for report in skipped:
        _, _, reason = report.longrepr if isinstance(report.longrepr, tuple) else ("", 0, "")
        terminalreporter.line(f"{report.nodeid}: {reason}")
