"""Doctor's checks run in-process, as `agent-relay doctor` runs them, against the
deployment of tests/support/deployment.py: the relay is built from settings, and its
peers are fakes on loopback reached over real HTTP through the relay's own clients.
Test modules import the fixtures they use, so that pytest finds them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.oauth.installation_store import Installation as SlackInstallation

from bots.checks import CheckResult
from relay.app import Relay
from relay.doctor.runner import Checks
from relay.settings import Settings
from tests.support.deployment import Peers

# Checks against loopback fakes answer in milliseconds; this is headroom for a busy
# machine, not a wait.
TIMEOUT = 3.0


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the surrounding environment, and no .env file to read."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)


def settings_of(environment: dict[str, str], **changes: str | None) -> Settings:
    values: dict[str, Any] = {**environment, **changes}
    return Settings(**{k.lower(): v for k, v in values.items() if v is not None})


async def run_checks(settings: Settings, **options: Any) -> list[CheckResult]:
    relay = Relay.build(settings)
    try:
        checks = Checks(relay, timeout=options.pop("timeout", TIMEOUT), connect_database=True)
        checks.gitlab_project = options.pop("gitlab_project", None)
        return await checks.run_all()
    finally:
        await relay.close()


def only(results: list[CheckResult], name: str) -> CheckResult:
    found = [result for result in results if result.name == name]
    assert len(found) == 1, f"{name!r}: {[r.line() for r in results]}"
    return found[0]


def lines(results: list[CheckResult]) -> str:
    return "\n".join(result.line() for result in results)


def slack_installation(team_id: str, token: str) -> SlackInstallation:
    return SlackInstallation(
        app_id="A0RELAY",
        enterprise_id=None,
        team_id=team_id,
        team_name=f"Workspace {team_id}",
        bot_token=token,
        bot_id=f"B{team_id}",
        bot_user_id=f"U{team_id}",
        bot_scopes=["chat:write"],
        user_id="U0INSTALLER",
        installed_at=time.time(),
    )


@pytest.fixture
def oauth_environment(peers: Peers, database_url: str) -> dict[str, str]:
    return {
        **peers.environment(database_url),
        "SLACK_BOT_TOKEN": "",
        "SLACK_CLIENT_ID": "1234.5678",
        "SLACK_CLIENT_SECRET": "doctor-slack-client-secret",
    }
