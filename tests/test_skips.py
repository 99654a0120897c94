"""Without PostgreSQL the tests that need it skip, saying how to get one; under CI
that skip fails the run (tests/conftest.py, tests/support/skips.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.agent_server import free_port

ROOT = Path(__file__).resolve().parent.parent

NEEDS_POSTGRES = """
def test_on_postgresql(postgres_url: str) -> None:
    pass


def test_without_a_database() -> None:
    pass
"""


def run_pytest(tmp_path: Path, *, ci: bool) -> subprocess.CompletedProcess[str]:
    """pytest, with this suite's conftest, on a test that needs PostgreSQL where none is."""
    test_file = tmp_path / "test_needs_postgres.py"
    test_file.write_text(NEEDS_POSTGRES)
    environment = {k: v for k, v in os.environ.items() if k != "CI"}
    # A loopback port nothing listens on: the connection is refused at once.
    environment["TEST_POSTGRES_URL"] = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    if ci:
        environment["CI"] = "true"
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-rs", "-p", "tests.conftest"),
            *("-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), str(test_file)),
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_postgresql_its_tests_skip_and_say_how_to_get_one(tmp_path: Path) -> None:
    run = run_pytest(tmp_path, ci=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 1 skipped" in run.stdout
    assert "no PostgreSQL answers at TEST_POSTGRES_URL" in run.stdout
    assert "pg_ctlcluster <version> main start" in run.stdout


def test_under_ci_a_skip_fails_the_run(tmp_path: Path) -> None:
    run = run_pytest(tmp_path, ci=True)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "skipped under CI" in run.stdout
    assert "test_on_postgresql: Skipped: no PostgreSQL answers" in run.stdout
