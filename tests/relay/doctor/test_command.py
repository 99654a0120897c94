"""`agent-relay doctor` as operators run it: a real process, settings from the environment,
every peer a fake on loopback. One line per check, exit code 1 when something is broken,
and never a secret in what it prints (stdout or stderr, even at LOG_LEVEL=DEBUG)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from relay.settings import Settings
from tests.support.deployment import (
    API_TOKEN,
    GITLAB_PROJECT,
    SLACK_TOKEN,
    Peers,
    closed_port_url,
    install_gitlab_hook,
)
from tests.support.fake_github import generate_private_key_pem

CLI = Path(sys.executable).parent / "agent-relay"
LINE = re.compile(r"^(ok  |FAIL|warn|skip) [a-z][a-z -]*[a-z0-9]: \S")
# settings, 6 features, database, schema, jobs, stored credentials, agent-server (3),
# slack, github (3: app, installations, permissions), gitlab (3: token, webhook,
# redelivery), public url.
CHECKS_OF_A_FULL_DEPLOYMENT = 22
WRONG_SLACK_TOKEN = "xoxb-wrong-token-of-the-doctor-test"
WRONG_GITLAB_TOKEN = "glpat-wrong-token-of-the-doctor-test"
WRONG_AGENT_KEY = "wrong-session-key-of-the-doctor-test"


def doctor(cwd: Path, environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    return subprocess.run(
        [str(CLI), "doctor", "--timeout", "3", *args],
        cwd=cwd,
        env={**inherited, "LOG_LEVEL": "DEBUG", **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def secrets_of(environment: dict[str, str]) -> list[str]:
    secret_names = {
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "GITHUB_WEBHOOK_SECRET",
        "GITLAB_TOKEN",
        "GITLAB_WEBHOOK_SECRET",
        "API_TOKEN",
        "SECRET_KEY",
        "AGENT_SERVER_API_KEY",
    }
    values = [value for name, value in environment.items() if name in secret_names]
    # Any line of the key's body would give it away.
    key_lines = environment["GITHUB_PRIVATE_KEY"].strip().splitlines()[1:-1]
    return values + key_lines


def assert_no_secret(result: subprocess.CompletedProcess[str], secrets: list[str]) -> None:
    printed = result.stdout + result.stderr
    leaked = [secret[:8] + "…" for secret in secrets if secret in printed]
    assert not leaked, f"secrets printed: {leaked}"


def test_the_doctor_is_a_subcommand() -> None:
    assert CLI.exists(), f"{CLI} missing: pip install -e . in the venv"


async def test_a_working_and_a_broken_deployment(
    peers: Peers, database_url: str, tmp_path: Path
) -> None:
    await install_gitlab_hook(peers)
    working = peers.environment(database_url)
    broken = {
        **working,
        "SLACK_BOT_TOKEN": WRONG_SLACK_TOKEN,
        # Not the key GitHub has for the app: GitHub refuses its JWTs.
        "GITHUB_PRIVATE_KEY": generate_private_key_pem(),
        "GITLAB_TOKEN": WRONG_GITLAB_TOKEN,
        "AGENT_SERVER_API_KEY": WRONG_AGENT_KEY,
        "PUBLIC_URL": closed_port_url(),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        good_run, bad_run = pool.map(
            lambda environment: doctor(tmp_path, environment, "--gitlab-project", GITLAB_PROJECT),
            [working, broken],
        )

    good = good_run.stdout.splitlines()
    assert good_run.returncode == 0, good_run.stdout + good_run.stderr
    assert len(good) == CHECKS_OF_A_FULL_DEPLOYMENT, good_run.stdout
    assert all(LINE.match(line) for line in good), good_run.stdout
    assert not [line for line in good if line.startswith(("FAIL", "warn"))]
    assert "ok   gitlab webhook: hook" in good_run.stdout
    assert_no_secret(good_run, secrets_of(working))

    bad = bad_run.stdout.splitlines()
    assert bad_run.returncode == 1, bad_run.stdout + bad_run.stderr
    assert len(bad) == CHECKS_OF_A_FULL_DEPLOYMENT, bad_run.stdout
    assert all(LINE.match(line) for line in bad), bad_run.stdout
    failed = {line.split(":", 1)[0].removeprefix("FAIL ") for line in bad if line[:4] == "FAIL"}
    assert failed == {"slack", "github app", "gitlab", "agent-server key", "public url"}
    assert all(" -> " in line for line in bad if line.startswith("FAIL"))
    assert_no_secret(bad_run, secrets_of(broken) + secrets_of(working))


def test_an_invalid_setting_is_a_failed_line_and_no_traceback(tmp_path: Path) -> None:
    environment = {
        "PORT": "abc",
        "SECRET_KEY": "too-short-a-key",
        "API_TOKEN": API_TOKEN,
        "SLACK_BOT_TOKEN": SLACK_TOKEN,
    }

    result = doctor(tmp_path, environment)

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL settings: PORT is invalid")
    assert lines[1].startswith("FAIL settings: SECRET_KEY is invalid")
    assert lines[2:] == ["skip other checks: they need settings that load"]
    assert "Traceback" not in result.stderr
    assert_no_secret(result, ["too-short-a-key", API_TOKEN, SLACK_TOKEN])
