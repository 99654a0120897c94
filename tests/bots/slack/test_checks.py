"""bots/slack/checks.py through doctor's runner: the bot token, or each installed
workspace's stored one, against the fake Slack on loopback."""

from __future__ import annotations

from bots.slack.installations import DatabaseInstallationStore
from db.installations import set_installation_status
from relay.app import Relay
from relay.doctor.runner import Checks
from tests.support.deployment import SLACK_TOKEN, Peers, database_url, github_key, peers
from tests.support.doctor import (
    TIMEOUT,
    clean_environment,
    lines,
    oauth_environment,
    only,
    run_checks,
    settings_of,
    slack_installation,
)

# The shared fixtures, imported so that pytest finds them here.
__all__ = ["clean_environment", "database_url", "github_key", "oauth_environment", "peers"]


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
        installations = DatabaseInstallationStore(relay.store, relay.secrets)
        for team_id, token in (
            ("T0ACME", SLACK_TOKEN),
            ("T0BETA", "xoxb-beta-token"),
            ("T0GAMMA", "xoxb-gamma-token"),
        ):
            await installations.async_save(slack_installation(team_id, token))
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


async def test_oauth_without_installations_is_a_warning(
    peers: Peers, oauth_environment: dict[str, str]
) -> None:
    results = await run_checks(settings_of(oauth_environment, SLACK_BOT_TOKEN=None))

    slack = only(results, "slack")
    assert (slack.status, slack.fix) == ("warn", f"open {peers.public.url}/slack/install")
