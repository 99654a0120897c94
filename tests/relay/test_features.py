"""relay/features.py: what the settings turn on, and their risky combinations, as data."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from bots.features import Feature, Risk
from relay.app import Relay
from relay.settings import Settings


@pytest.fixture(autouse=True)
def no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def by_name(features: list[Feature]) -> dict[str, Feature]:
    return {feature.name: feature for feature in features}


def test_every_feature_is_off_and_says_what_would_turn_it_on() -> None:
    features = settings().features()

    assert [(f.name, f.enabled, f.platform) for f in features] == [
        ("agent webhooks", False, False),
        ("api", False, False),
        ("approvals", False, False),
        ("slack", False, True),
        ("github", False, True),
        ("gitlab", False, True),
    ]
    assert by_name(features)["api"].state == "disabled (set API_TOKEN)"
    # Doctor reports these two as trouble rather than as a feature not used.
    assert by_name(features)["agent webhooks"].risk_when_off is not None
    assert by_name(features)["api"].risk_when_off == Risk(
        "warn", "API_TOKEN is unset: /api/* answers 401", "set API_TOKEN"
    )


def test_platforms_on_say_how_they_run() -> None:
    features = by_name(
        settings(
            slack_signing_secret="s",
            slack_client_id="1.2",
            slack_client_secret="c",
            secret_key="k" * 16,
            gitlab_url="https://gitlab.example.com",
            gitlab_token="t",
            gitlab_webhook_secret="w",
        ).features()
    )

    slack, github, gitlab = features["slack"], features["github"], features["gitlab"]
    assert (slack.mode, slack.source) == ("many workspaces", "OAuth at /slack/install")
    assert slack.state == "enabled (many workspaces, OAuth at /slack/install)"
    assert (github.mode, github.page, github.address) == (
        "app from the setup page",
        "/github/setup",
        "https://github.com",
    )
    assert github.line() == "github: enabled (app from the setup page at /github/setup)"
    assert (gitlab.state, gitlab.address) == ("enabled", "https://gitlab.example.com")


def test_risks_name_the_setting_that_mends_them() -> None:
    risks = settings(slack_bot_token="xoxb-1", gitlab_token="t").risks()

    assert [risk.fix for risk in risks] == ["set SLACK_SIGNING_SECRET", "set GITLAB_WEBHOOK_SECRET"]
    assert {risk.level for risk in risks} == {"warn"}


def test_a_deployment_without_trouble_has_no_risks() -> None:
    assert settings().risks() == []


CREDENTIALS_FIX = (
    "set AGENT_RELAY_URL to this server's address as the agent-server reaches it (or PUBLIC_URL)"
)
GITLAB_ON = {"gitlab_token": "t", "gitlab_webhook_secret": "w"}


def credentials_risks(**values: Any) -> list[Risk]:
    return [risk for risk in settings(**values).risks() if risk.fix == CREDENTIALS_FIX]


def test_a_repository_host_without_an_address_for_the_agent_server_is_a_risk() -> None:
    [risk] = credentials_risks(**GITLAB_ON)

    assert risk.level == "warn"
    assert risk.detail == (
        "AGENT_RELAY_URL and PUBLIC_URL are unset, so the agent-server has nowhere to fetch"
        " the agent's repository credentials from: checkouts of private gitlab repositories"
        " fail and the agent cannot push its work"
    )
    # Read-only checkouts need their token as much.
    [read_only] = credentials_risks(**GITLAB_ON, pull_requests="off")
    assert read_only.detail.endswith("checkouts of private gitlab repositories fail")


def test_either_address_mends_it_and_slack_alone_checks_nothing_out() -> None:
    assert credentials_risks(**GITLAB_ON, agent_relay_url="http://relay.internal:8000") == []
    assert credentials_risks(**GITLAB_ON, public_url="https://relay.example.com") == []
    assert credentials_risks(slack_signing_secret="s", slack_bot_token="xoxb-1") == []
    [both] = credentials_risks(**GITLAB_ON, secret_key="k" * 16)
    assert "private github and gitlab repositories" in both.detail


async def test_start_up_logs_each_risk(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    relay = Relay.build(settings(database_url=f"sqlite:///{tmp_path / 'r.db'}", **GITLAB_ON))
    with caplog.at_level(logging.WARNING, logger="relay.app"):
        await relay.start(schedule_maintenance=False)
    await relay.close()

    assert "settings: AGENT_RELAY_URL and PUBLIC_URL are unset" in caplog.text
    assert f"-> {CREDENTIALS_FIX}" in caplog.text
