"""Settings: a bad variable stops start-up naming it; the feature report says what is off."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the surrounding environment, and no .env file to read."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_load_without_any_variable() -> None:
    settings = load_settings()
    assert settings.port == 8000
    assert settings.database_url.startswith("sqlite://")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "0"),
        ("PORT", "70000"),
        ("DATABASE_URL", "mysql://root@localhost/relay"),
        ("DATABASE_URL", "relay.db"),
        ("AGENT_CONVERSATION_URL", "https://agent.example.test/conversations/"),
        ("AGENT_CONVERSATION_URL", "https://agent.example.test/{conversation_id}/{team}"),
        ("AGENT_LLM_EXTRA", "{not json"),
        ("AGENT_SERVER_URL", "127.0.0.1:3000"),
        ("SUMMARY_MODE", "telepathy"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_invalid_setting_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert f"invalid setting {variable}:" in message
    assert message.count("invalid setting") == 1


def test_every_invalid_setting_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "abc")
    monkeypatch.setenv("DATABASE_URL", "mysql://x")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    lines = str(raised.value).splitlines()
    assert len(lines) == 2
    assert any("PORT" in line for line in lines)
    assert any("DATABASE_URL" in line for line in lines)


def test_settings_error_stops_the_process() -> None:
    assert issubclass(SettingsError, SystemExit)


def test_settings_are_read_from_a_dot_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=9123\nAPI_TOKEN=from-dot-env\n")
    settings = load_settings()
    assert settings.port == 9123
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "from-dot-env"


def test_valid_conversation_url_template_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    template = "https://agent.example.test/conversations/{conversation_id}"
    monkeypatch.setenv("AGENT_CONVERSATION_URL", template)
    assert load_settings().agent_conversation_url == template


def test_secrets_are_masked_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", "very-secret-api-token")
    monkeypatch.setenv("AGENT_SERVER_API_KEY", "very-secret-session-key")
    text = repr(load_settings())
    assert "very-secret-api-token" not in text
    assert "very-secret-session-key" not in text


FEATURES = ["agent webhooks", "api", "approvals", "slack", "github", "gitlab"]


def test_feature_report_with_nothing_configured() -> None:
    report = load_settings().feature_report()
    assert [line.split(":")[0] for line in report] == FEATURES
    assert all(": disabled (" in line and line.endswith(")") for line in report)
    by_feature = dict(line.split(": ", 1) for line in report)
    assert "AGENT_SERVER_API_KEY" in by_feature["agent webhooks"]
    assert "AGENT_WEBHOOK_SECRET" in by_feature["agent webhooks"]
    assert "API_TOKEN" in by_feature["api"]
    assert "SLACK_SIGNING_SECRET" in by_feature["slack"]
    assert "SLACK_BOT_TOKEN" in by_feature["slack"]
    assert "GITHUB_APP_ID" in by_feature["github"]
    assert "GITHUB_WEBHOOK_SECRET" in by_feature["github"]
    assert "GITLAB_TOKEN" in by_feature["gitlab"]
    assert "GITLAB_WEBHOOK_SECRET" in by_feature["gitlab"]


def test_feature_report_with_everything_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "key.pem").write_text("-----BEGIN RSA PRIVATE KEY-----\n")
    for variable, value in {
        "AGENT_WEBHOOK_SECRET": "s",
        "API_TOKEN": "t",
        "SLACK_SIGNING_SECRET": "s",
        "SLACK_BOT_TOKEN": "xoxb-1",
        "GITHUB_APP_ID": "1",
        "GITHUB_PRIVATE_KEY_PATH": str(tmp_path / "key.pem"),
        "GITHUB_WEBHOOK_SECRET": "s",
        "GITLAB_TOKEN": "t",
        "GITLAB_WEBHOOK_SECRET": "s",
        "CONFIRMATION_POLICY": "always",
    }.items():
        monkeypatch.setenv(variable, value)
    report = load_settings().feature_report()
    assert [line.split(":")[0] for line in report] == FEATURES
    assert all(line.split(": ", 1)[1].startswith("enabled") for line in report)
    assert (
        "approvals: enabled (every action waits for an answer in its thread,"
        " CONFIRMATION_POLICY=always)"
    ) in report
    assert "slack: enabled (one workspace, SLACK_BOT_TOKEN)" in report
    assert "github: enabled (app from GITHUB_APP_ID)" in report


def test_github_runs_from_the_setup_page_once_secret_key_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECRET_KEY", "a-secret-key-of-16-chars-or-more")
    settings = load_settings()
    assert settings.github_mode == "setup"
    assert "github: enabled (app from the setup page at /github/setup)" in (
        settings.feature_report()
    )


def test_a_missing_github_key_file_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_PRIVATE_KEY_PATH", "/nonexistent/key.pem")
    with pytest.raises(SettingsError, match=r"GITHUB_PRIVATE_KEY_PATH: .*no such file"):
        load_settings()


def test_a_github_key_with_escaped_newlines_is_read_as_pem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_PRIVATE_KEY", "-----BEGIN KEY-----\\nabc\\n-----END KEY-----")
    assert load_settings().github_private_key_text() == (
        "-----BEGIN KEY-----\nabc\n-----END KEY-----"
    )


def test_half_configured_platform_is_still_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    monkeypatch.setenv("GITLAB_TOKEN", "t")
    by_feature = dict(line.split(": ", 1) for line in load_settings().feature_report())
    assert by_feature["slack"].startswith("disabled (")
    assert by_feature["gitlab"].startswith("disabled (")


def test_slack_oauth_credentials_enable_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    monkeypatch.setenv("SLACK_CLIENT_ID", "id")
    monkeypatch.setenv("SLACK_CLIENT_SECRET", "secret")
    monkeypatch.setenv("SECRET_KEY", "a-long-random-secret-key")
    settings = load_settings()
    assert settings.slack_mode == "oauth"
    assert "slack: enabled (many workspaces, OAuth at /slack/install)" in settings.feature_report()


def test_slack_oauth_without_secret_key_is_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    # Bot tokens are stored encrypted; without SECRET_KEY they could not be.
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    monkeypatch.setenv("SLACK_CLIENT_ID", "id")
    monkeypatch.setenv("SLACK_CLIENT_SECRET", "secret")
    settings = load_settings()
    assert settings.slack_mode is None
    assert "slack: disabled (OAuth needs SECRET_KEY to encrypt bot tokens)" in (
        settings.feature_report()
    )


def test_each_conversation_s_directory_is_made_under_agent_workspace_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().workspace_root == "workspace"
    monkeypatch.setenv("AGENT_WORKSPACE_ROOT", "/srv/work")
    assert load_settings().workspace_root == "/srv/work"


def test_the_old_name_agent_workspace_dir_still_sets_the_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_WORKSPACE_DIR", "/srv/old")
    assert load_settings().workspace_root == "/srv/old"
    monkeypatch.setenv("AGENT_WORKSPACE_ROOT", "/srv/new")
    assert load_settings().workspace_root == "/srv/new"


def test_confirmation_policy_defaults_to_never_and_takes_always(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings()
    assert (settings.confirmation_policy, settings.confirmation_timeout) == ("never", 86400.0)
    monkeypatch.setenv("CONFIRMATION_POLICY", "always")
    monkeypatch.setenv("CONFIRMATION_TIMEOUT", "600")
    settings = load_settings()
    assert (settings.confirmation_policy, settings.confirmation_timeout) == ("always", 600.0)


def test_risky_without_a_security_analyzer_stops_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONFIRMATION_POLICY", "risky")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "invalid setting CONFIRMATION_POLICY:" in str(raised.value)
    assert "SECURITY_ANALYZER=llm" in str(raised.value)

    monkeypatch.setenv("SECURITY_ANALYZER", "llm")
    assert load_settings().confirmation_policy == "risky"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("CONFIRMATION_POLICY", "sometimes"), ("CONFIRMATION_TIMEOUT", "0")],
)
def test_a_wrong_confirmation_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=f"invalid setting {variable}:"):
        load_settings()


def test_slack_approvers_are_member_ids_separated_by_commas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().slack_approvers == []
    monkeypatch.setenv("SLACK_APPROVERS", " U01, U02 ,,U03")
    assert load_settings().slack_approvers == ["U01", "U02", "U03"]
