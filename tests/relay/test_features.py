"""relay/features.py: what the settings turn on, and their risky combinations, as data."""

from __future__ import annotations

from typing import Any

import pytest

from bots.features import Feature, Risk
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
