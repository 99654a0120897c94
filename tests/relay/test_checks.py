"""relay/checks.py: each check ok and failing, against the fake peers on loopback.

The relay is built from settings as `agent-relay doctor` builds it; Slack, GitHub,
GitLab and the agent-server are the fakes of tests/support, reached over real HTTP
through the relay's own clients and *_URL settings.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.oauth.installation_store import Installation as SlackInstallation

from bots.checks import CheckResult
from db.installations import set_installation_status
from db.jobs import JobQueue
from db.migrations import LATEST_VERSION, migrate
from db.store import Store
from relay.app import Relay
from relay.doctor.runner import Checks
from relay.doctor.settings import settings_checks, settings_failures
from relay.settings import Settings, SettingsError, load_settings
from tests.support.deployment import (
    GITHUB_APP_ID,
    GITHUB_WEBHOOK_SECRET,
    GITLAB_PROJECT,
    SLACK_TOKEN,
    Peers,
    SilentPeer,
    closed_port_url,
    database_url,
    github_key,
    install_gitlab_hook,
    peers,
)
from tests.support.fake_github import generate_private_key_pem

# The shared fixtures, imported so that pytest finds them here.
__all__ = ["database_url", "github_key", "peers"]

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


# -- a deployment that works -----------------------------------------------------------


async def test_a_working_deployment_passes_every_check(peers: Peers, database_url: str) -> None:
    await install_gitlab_hook(peers)

    results = await run_checks(
        settings_of(peers.environment(database_url)), gitlab_project=GITLAB_PROJECT
    )

    assert [r.line() for r in results if r.status not in ("ok", "skip")] == []
    assert [r.name for r in results if r.status == "skip"] == ["agent-server webhooks"]
    assert only(results, "database").detail.endswith(f"(schema version {LATEST_VERSION})")
    assert only(results, "schema").detail == f"version {LATEST_VERSION}, current"
    assert only(results, "agent-server key").detail == "X-Session-API-Key accepted"
    assert "in Workspace T0ACME (T0ACME)" in only(results, "slack").detail
    assert only(results, "github app").detail == f"relay-doctor (id {GITHUB_APP_ID}, from settings)"
    assert only(results, "github installations").detail == "1 installation(s): acme"
    assert only(results, "gitlab").detail == "token works as @openhands (user 900)"
    assert f"on {GITLAB_PROJECT} sends to {peers.public.url}/gitlab/events" in (
        only(results, "gitlab webhook").detail
    )
    assert only(results, "public url").detail == f"GET {peers.public.url}/healthz answered 200"


async def test_the_order_of_the_lines_is_fixed(peers: Peers, database_url: str) -> None:
    results = await run_checks(settings_of(peers.environment(database_url)))

    names = [r.name for r in results]
    assert names[0] == "settings"
    assert names.index("database") < names.index("agent-server") < names.index("slack")
    assert names.index("slack") < names.index("github app") < names.index("gitlab")
    assert names[-1] == "public url"


async def test_platforms_runs_only_the_platform_checks(peers: Peers, database_url: str) -> None:
    relay = Relay.build(settings_of(peers.environment(database_url)))
    try:
        results = await Checks(relay, timeout=TIMEOUT, connect_database=True).platforms()
    finally:
        await relay.close()

    assert [r.name for r in results] == [
        "slack",
        "github app",
        "github installations",
        "gitlab",
        "gitlab webhook",
    ]
    assert [r.status for r in results] == ["ok", "ok", "ok", "ok", "skip"]


# -- each check failing ----------------------------------------------------------------


async def test_a_wrong_slack_token_fails_and_names_the_setting(
    peers: Peers, database_url: str
) -> None:
    results = await run_checks(
        settings_of(peers.environment(database_url), SLACK_BOT_TOKEN="xoxb-not-a-real-token")
    )

    slack = only(results, "slack")
    assert slack.status == "fail"
    assert slack.detail == "token refused: slack auth.test: invalid_auth"
    assert slack.fix is not None and "SLACK_BOT_TOKEN" in slack.fix


async def test_a_revoked_slack_token_fails(peers: Peers, database_url: str) -> None:
    peers.slack.revoke_token(SLACK_TOKEN)

    results = await run_checks(settings_of(peers.environment(database_url)))

    assert only(results, "slack").status == "fail"


async def test_a_github_app_key_github_refuses_fails_with_401(
    peers: Peers, database_url: str
) -> None:
    # The app's key was revoked: the configured one no longer signs valid JWTs.
    environment = peers.environment(database_url)
    results = await run_checks(
        settings_of(environment, GITHUB_PRIVATE_KEY=generate_private_key_pem())
    )

    app = only(results, "github app")
    assert app.status == "fail"
    assert app.detail.startswith("GET /app refused the app's JWT (HTTP 401)")
    assert app.fix is not None and "GITHUB_PRIVATE_KEY" in app.fix
    assert only(results, "github installations").status == "skip"


async def test_an_app_installed_nowhere_is_a_warning(peers: Peers, database_url: str) -> None:
    peers.github.add_app(GITHUB_APP_ID + 1, "lonely", private_key_pem=peers.github_key)

    results = await run_checks(
        settings_of(peers.environment(database_url), GITHUB_APP_ID=str(GITHUB_APP_ID + 1))
    )

    installations = only(results, "github installations")
    assert installations.status == "warn"
    assert (
        installations.fix == f"install it from {peers.github.web_url}/apps/lonely/installations/new"
    )


async def test_a_refused_gitlab_token_fails_and_skips_the_hook(
    peers: Peers, database_url: str
) -> None:
    results = await run_checks(
        settings_of(peers.environment(database_url), GITLAB_TOKEN="glpat-revoked-token-000"),
        gitlab_project=GITLAB_PROJECT,
    )

    gitlab = only(results, "gitlab")
    assert (gitlab.status, gitlab.detail) == ("fail", "GET /user refused GITLAB_TOKEN (HTTP 401)")
    assert gitlab.fix is not None and "GITLAB_TOKEN" in gitlab.fix
    assert only(results, "gitlab webhook").status == "skip"


async def test_a_project_without_the_hook_fails_naming_the_command(
    peers: Peers, database_url: str
) -> None:
    results = await run_checks(
        settings_of(peers.environment(database_url)), gitlab_project=GITLAB_PROJECT
    )

    hook = only(results, "gitlab webhook")
    assert hook.status == "fail"
    assert hook.detail == f"{GITLAB_PROJECT} has no hook to {peers.public.url}/gitlab/events"
    assert hook.fix == f"run `agent-relay gitlab install-webhook --project {GITLAB_PROJECT}`"


async def test_an_unknown_gitlab_project_fails(peers: Peers, database_url: str) -> None:
    results = await run_checks(
        settings_of(peers.environment(database_url)), gitlab_project="acme/nothing"
    )

    hook = only(results, "gitlab webhook")
    assert hook.status == "fail"
    assert "HTTP 404" in hook.detail


async def test_an_agent_server_that_is_down_fails(peers: Peers, database_url: str) -> None:
    down = closed_port_url()

    results = await run_checks(settings_of(peers.environment(database_url), AGENT_SERVER_URL=down))

    agent = only(results, "agent-server")
    assert (agent.status, agent.detail) == ("fail", f"{down} does not answer (ConnectError)")
    assert agent.fix is not None and "AGENT_SERVER_URL" in agent.fix
    assert only(results, "agent-server key").status == "skip"


async def test_an_agent_server_that_refuses_the_key_fails_the_key_check(
    peers: Peers, database_url: str
) -> None:
    results = await run_checks(
        settings_of(peers.environment(database_url), AGENT_SERVER_API_KEY="not-the-session-key")
    )

    assert only(results, "agent-server").status == "ok"
    key = only(results, "agent-server key")
    assert (key.status, key.detail) == ("fail", "refused X-Session-API-Key (HTTP 401)")
    assert key.fix is not None and key.fix.startswith("set AGENT_SERVER_API_KEY")


async def test_a_schema_behind_this_release_fails_with_migrate(
    peers: Peers, database_url: str
) -> None:
    async with Store(database_url) as store:
        await store.execute(
            "DELETE FROM schema_migrations WHERE version = :v", {"v": LATEST_VERSION}
        )

    results = await run_checks(settings_of(peers.environment(database_url)))

    schema = only(results, "schema")
    assert schema.status == "fail"
    assert schema.detail == f"version {LATEST_VERSION - 1}, this release needs {LATEST_VERSION}"
    assert schema.fix == "run `agent-relay migrate`"


async def test_a_missing_sqlite_file_fails_and_is_not_created(peers: Peers, tmp_path: Path) -> None:
    path = tmp_path / "nothing-here.db"

    results = await run_checks(settings_of(peers.environment(f"sqlite:///{path}")))

    database = only(results, "database")
    assert (database.status, database.fix) == ("fail", "run `agent-relay migrate`")
    assert only(results, "schema").status == "skip"
    assert not path.exists()


async def test_an_unreachable_postgresql_fails(peers: Peers) -> None:
    url = "postgresql://relay:db-password-never-shown@127.0.0.1:1/relay"

    results = await run_checks(settings_of(peers.environment(url)))

    database = only(results, "database")
    assert database.status == "fail"
    assert database.detail.startswith("postgresql 127.0.0.1:1/relay does not answer")
    assert "db-password-never-shown" not in lines(results)


@pytest.mark.postgres
async def test_a_migrated_postgresql_passes(peers: Peers, empty_postgres_url: str) -> None:
    async with Store(empty_postgres_url) as store:
        await migrate(store)

    results = await run_checks(settings_of(peers.environment(empty_postgres_url)))

    assert only(results, "database").status == "ok"
    assert only(results, "schema").status == "ok"


async def test_failed_jobs_are_a_warning_pointing_at_jobs_list(
    peers: Peers, database_url: str
) -> None:
    async with Store(database_url) as store:
        queue = JobQueue(store)
        await queue.enqueue("test.kind", {}, max_attempts=1)
        job = await queue.claim()
        assert job is not None
        await queue.fail(job, "broken for good", permanent=True)

    results = await run_checks(settings_of(peers.environment(database_url)))

    jobs = only(results, "jobs")
    assert (jobs.status, jobs.detail) == ("warn", "1 job(s) failed for good")
    assert jobs.fix is not None and "agent-relay jobs list --status failed" in jobs.fix


async def test_a_public_url_that_does_not_answer_fails(peers: Peers, database_url: str) -> None:
    down = closed_port_url()

    results = await run_checks(settings_of(peers.environment(database_url), PUBLIC_URL=down))

    public = only(results, "public url")
    assert (public.status, public.detail) == ("fail", f"GET {down}/healthz: ConnectError")
    assert public.fix is not None and "PUBLIC_URL" in public.fix


async def test_a_public_url_answering_an_error_fails(peers: Peers, database_url: str) -> None:
    peers.public.status = 502

    results = await run_checks(settings_of(peers.environment(database_url)))

    assert only(results, "public url").detail == f"GET {peers.public.url}/healthz answered 502"


async def test_without_public_url_the_check_is_skipped(peers: Peers, database_url: str) -> None:
    results = await run_checks(settings_of(peers.environment(database_url), PUBLIC_URL=None))

    public = only(results, "public url")
    assert (public.status, public.fix) == ("skip", "set PUBLIC_URL")


async def test_peers_that_never_answer_cost_one_timeout(peers: Peers) -> None:
    silent = SilentPeer()
    try:
        settings = settings_of(
            peers.environment(silent.url.replace("http://", "postgresql://relay@") + "/relay"),
            AGENT_SERVER_URL=silent.url,
            PUBLIC_URL=silent.url,
            SLACK_API_URL=f"{silent.url}/api/",
            GITLAB_URL=silent.url,
        )
        started = time.monotonic()
        results = await run_checks(settings, timeout=0.5)
        elapsed = time.monotonic() - started
    finally:
        silent.close()

    for name in ("database", "agent-server", "public url", "slack", "gitlab"):
        assert only(results, name).status == "fail", lines(results)
    # Concurrent checks: the run takes about one timeout, not one per peer.
    assert elapsed < 2.5


# -- Slack with OAuth, GitHub through the setup page -------------------------------------


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


async def test_each_installed_workspace_is_checked_with_its_own_token(
    peers: Peers, oauth_environment: dict[str, str]
) -> None:
    peers.slack.add_team("T0BETA", bot_token="xoxb-beta-token", bot_user_id="U1", bot_id="B1")
    peers.slack.add_team("T0GAMMA", bot_token="xoxb-gamma-token", bot_user_id="U2", bot_id="B2")
    peers.slack.revoke_token("xoxb-beta-token")
    settings = settings_of(oauth_environment, SLACK_BOT_TOKEN=None)
    relay = Relay.build(settings)
    await relay.start(schedule_maintenance=False)
    try:
        assert relay.slack_installations is not None
        for team_id, token in (
            ("T0ACME", SLACK_TOKEN),
            ("T0BETA", "xoxb-beta-token"),
            ("T0GAMMA", "xoxb-gamma-token"),
        ):
            await relay.slack_installations.async_save(slack_installation(team_id, token))
        await set_installation_status(relay.store, "slack", "-:T0GAMMA", "suspended")

        results = await Checks(relay, timeout=TIMEOUT).platforms()
    finally:
        await relay.close()

    assert only(results, "slack workspace T0ACME").status == "ok"
    beta = only(results, "slack workspace T0BETA")
    assert (beta.status, beta.detail) == ("fail", "token refused: slack auth.test: invalid_auth")
    assert beta.fix == f"reinstall the app in that workspace at {peers.public.url}/slack/install"
    assert only(results, "slack workspace T0GAMMA").status == "skip"
    assert "xoxb-" not in lines(results)


async def test_credentials_stored_with_another_secret_key_fail(
    peers: Peers, oauth_environment: dict[str, str]
) -> None:
    relay = Relay.build(settings_of(oauth_environment, SLACK_BOT_TOKEN=None))
    await relay.start(schedule_maintenance=False)
    try:
        assert relay.slack_installations is not None
        await relay.slack_installations.async_save(slack_installation("T0ACME", SLACK_TOKEN))
    finally:
        await relay.close()

    changed = await run_checks(
        settings_of(oauth_environment, SLACK_BOT_TOKEN=None, SECRET_KEY="another-secret-key-0000")
    )
    unset = await run_checks(settings_of(oauth_environment, SLACK_BOT_TOKEN=None, SECRET_KEY=None))

    stored = only(changed, "stored credentials")
    assert stored.status == "fail"
    assert stored.fix is not None and stored.fix.startswith("set SECRET_KEY back")
    workspace = only(changed, "slack workspace T0ACME")
    assert (workspace.status, workspace.detail) == (
        "fail",
        "stored bot token unreadable (CredentialsUnreadable)",
    )
    assert only(unset, "stored credentials").status == "warn"


async def test_oauth_without_installations_is_a_warning(
    peers: Peers, oauth_environment: dict[str, str]
) -> None:
    results = await run_checks(settings_of(oauth_environment, SLACK_BOT_TOKEN=None))

    slack = only(results, "slack")
    assert (slack.status, slack.fix) == ("warn", f"open {peers.public.url}/slack/install")


async def test_setup_page_mode_without_an_app_is_a_warning(peers: Peers, database_url: str) -> None:
    settings = settings_of(
        peers.environment(database_url),
        GITHUB_APP_ID=None,
        GITHUB_PRIVATE_KEY=None,
        GITHUB_WEBHOOK_SECRET=None,
    )

    results = await run_checks(settings)

    app = only(results, "github app")
    assert (app.status, app.fix) == ("warn", f"create one at {peers.public.url}/github/setup")


async def test_setup_page_app_is_checked_like_a_configured_one(
    peers: Peers, database_url: str
) -> None:
    settings = settings_of(
        peers.environment(database_url),
        GITHUB_APP_ID=None,
        GITHUB_PRIVATE_KEY=None,
        GITHUB_WEBHOOK_SECRET=None,
    )
    relay = Relay.build(settings)
    await relay.start(schedule_maintenance=False)
    try:
        assert relay.github_source is not None
        await relay.github_source.save_from_manifest(
            {
                "id": GITHUB_APP_ID,
                "slug": "relay-doctor",
                "pem": peers.github_key,
                "webhook_secret": GITHUB_WEBHOOK_SECRET,
            }
        )
        results = await Checks(relay, timeout=TIMEOUT).platforms()
    finally:
        await relay.close()

    app = only(results, "github app")
    assert (app.status, app.detail) == (
        "ok",
        f"relay-doctor (id {GITHUB_APP_ID}, from the setup page)",
    )
    assert only(results, "github installations").status == "ok"


# -- settings ----------------------------------------------------------------------------


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


def test_lines_have_the_documented_shape() -> None:
    assert CheckResult("schema", "ok", "version 9, current").line() == (
        "ok   schema: version 9, current"
    )
    assert CheckResult("gitlab", "fail", "GET /user refused", "set GITLAB_TOKEN").line() == (
        "FAIL gitlab: GET /user refused -> set GITLAB_TOKEN"
    )
    assert CheckResult("public url", "skip", "unset", "set PUBLIC_URL").line() == (
        "skip public url: unset -> set PUBLIC_URL"
    )
