"""relay/doctor/settings.py: settings that do not load, the features they turn on, and
their risky combinations."""

from __future__ import annotations

import pytest

from relay.doctor.settings import settings_checks, settings_failures
from relay.settings import Settings, SettingsError, load_settings
from tests.support.doctor import lines, only


def test_invalid_settings_are_one_failed_line_per_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORT", "abc")
    monkeypatch.setenv("AGENT_SERVER_URL", "127.0.0.1:3000")
    with pytest.raises(SettingsError) as raised:
        load_settings()

    failures = settings_failures(raised.value)

    assert [(r.name, r.status) for r in failures] == [("settings", "fail")] * 2
    assert failures[0].detail.startswith("PORT is invalid")
    assert failures[1].detail.startswith("AGENT_SERVER_URL is invalid")
    assert failures[1].fix == "fix AGENT_SERVER_URL (environment or .env)"


def test_features_off_are_skipped_and_missing_secrets_reported() -> None:
    results = settings_checks(Settings())

    assert only(results, "feature agent webhooks").status == "fail"
    api = only(results, "feature api")
    assert (api.status, api.fix) == ("warn", "set API_TOKEN")
    assert only(results, "feature slack").status == "skip"


@pytest.mark.parametrize(
    ("values", "fix"),
    [
        (
            {"slack_signing_secret": "s" * 20, "slack_bot_token": "xoxb-1"},
            "set PUBLIC_URL",
        ),
        (
            {
                "slack_signing_secret": "s" * 20,
                "slack_client_id": "1.2",
                "slack_client_secret": "x",
            },
            "set SECRET_KEY (at least 16 characters; keep it)",
        ),
        ({"slack_bot_token": "xoxb-1"}, "set SLACK_SIGNING_SECRET"),
        (
            {"github_app_id": "12", "public_url": "https://relay.example.test"},
            "set GITHUB_PRIVATE_KEY(_PATH), GITHUB_WEBHOOK_SECRET",
        ),
        ({"gitlab_token": "glpat-1"}, "set GITLAB_WEBHOOK_SECRET"),
    ],
)
def test_risky_combinations_are_warnings(values: dict[str, str], fix: str) -> None:
    results = settings_checks(Settings(**values))

    warnings = [r for r in results if r.name == "settings" and r.status == "warn"]
    assert fix in [w.fix for w in warnings], lines(results)
