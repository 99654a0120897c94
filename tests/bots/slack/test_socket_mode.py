"""Slack's Socket Mode against a fake Slack WebSocket server (over loopback), on real
SQLite and PostgreSQL: the connection, the ledger and the job behind each envelope,
acknowledgements only after the commit, re-sent envelopes, reconnections."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import yaml

from bots.slack.inbound import build_slack_app
from bots.slack.job import SLACK_EVENT_JOB
from bots.slack.manifest import render_socket_mode_manifest
from bots.slack.socket_mode import SlackSocketMode, socket_mode_check
from db.jobs import JobQueue
from db.migrations import migrate
from db.store import Store
from relay.app import create_app
from relay.settings import Settings, SettingsError, load_settings
from tests.support.fake_slack import app_mention, event_callback
from tests.support.fake_slack_socket import SocketSlack
from tests.support.waiting import wait_for

TEAM = "T0SOCKET"
BOT_TOKEN = "xoxb-socket-bot-token"
BOT_USER = "U0BOTSOCKET"
ASKER = "U0ASKER"


@pytest.fixture
def slack() -> Iterator[SocketSlack]:
    with SocketSlack() as fake:
        fake.add_team(TEAM, bot_token=BOT_TOKEN, bot_user_id=BOT_USER, bot_id="B0SOCKET")
        yield fake


def socket_mode(store: Store, slack: SocketSlack, app_token: str | None = None) -> SlackSocketMode:
    def app() -> Any:
        return build_slack_app(
            store=store,
            queue=JobQueue(store),
            signing_secret=None,
            api_url=slack.api_url,
            bot_token=BOT_TOKEN,
        )

    return SlackSocketMode(app, app_token or slack.app_token, ping_interval=1.0)


@pytest.fixture
async def connection(store: Store, slack: SocketSlack) -> AsyncIterator[SlackSocketMode]:
    connected = socket_mode(store, slack)
    await connected.start()
    await wait_for(connected.connected, message="Socket Mode did not connect")
    try:
        yield connected
    finally:
        await connected.stop()


def mention(text: str = "fix the build") -> dict[str, Any]:
    channel = f"C{uuid.uuid4().hex[:8].upper()}"
    event = app_mention(user=ASKER, text=f"<@{BOT_USER}> {text}", channel=channel, ts="1.000100")
    return event_callback(TEAM, event, event_id=f"Ev{uuid.uuid4().hex[:10].upper()}")


async def jobs(store: Store) -> list[dict[str, Any]]:
    return await store.fetch_all(
        "SELECT payload FROM jobs WHERE kind = :kind", {"kind": SLACK_EVENT_JOB.name}
    )


async def test_a_mention_is_recorded_queued_and_then_acknowledged(
    store: Store, slack: SocketSlack, connection: SlackSocketMode
) -> None:
    envelope = slack.send_event(mention())

    await wait_for(lambda: envelope.acknowledged, message="the envelope was not acknowledged")
    [job] = await jobs(store)
    assert envelope.payload["event_id"] in job["payload"]
    assert [c.method for c in slack.calls()].count("apps.connections.open") == 1
    assert slack.calls("apps.connections.open")[0].token == slack.app_token


async def test_an_envelope_whose_job_is_not_committed_is_not_acknowledged(
    store: Store, slack: SocketSlack, connection: SlackSocketMode, caplog: pytest.LogCaptureFixture
) -> None:
    await store.execute("DROP TABLE jobs")  # the commit fails: the database is broken

    with caplog.at_level(logging.INFO):
        envelope = slack.send_event(mention())
        # What Bolt's handler says instead of acknowledging (a 500 from the listener).
        await wait_for(lambda: "Unsuccessful Bolt execution result (status: 500" in caplog.text)

    assert not envelope.acknowledged
    assert await store.fetch_all("SELECT delivery_id FROM inbound_deliveries") == []


async def test_a_re_sent_envelope_is_queued_once(
    store: Store, slack: SocketSlack, connection: SlackSocketMode
) -> None:
    slack.lose_acks(1)  # the acknowledgement never reaches Slack
    envelope = slack.send_event(mention())
    await wait_for(lambda: len(slack.envelopes) == 1 and envelope.sent_on)
    await wait_for(jobs_made(store, 1))
    slack.resend_unacknowledged()

    await wait_for(
        lambda: envelope.acknowledged, message="the re-sent envelope was not acknowledged"
    )
    assert envelope.attempts == 2
    assert len(await jobs(store)) == 1


async def test_a_disconnect_message_and_a_dropped_connection_reconnect(
    store: Store, slack: SocketSlack, connection: SlackSocketMode
) -> None:
    slack.disconnect()
    await wait_for(lambda: slack.connections_opened >= 2, message="no reconnection")
    await wait_for(connection.connected)
    slack.drop()
    await wait_for(lambda: slack.connections_opened >= 3, timeout=20, message="no reconnection")
    await wait_for(lambda: slack.open_connections() == 1)
    await wait_for(connection.connected)

    envelope = slack.send_event(mention("and now?"))

    await wait_for(lambda: envelope.acknowledged)
    assert len(await jobs(store)) == 1


async def test_a_refused_app_token_is_retried_and_never_connected(
    store: Store, slack: SocketSlack, caplog: pytest.LogCaptureFixture
) -> None:
    refused = socket_mode(store, slack, app_token="xapp-not-the-app-token")
    with caplog.at_level(logging.WARNING, logger="bots.slack.socket_mode"):
        await refused.start()
        await wait_for(lambda: "Socket Mode could not connect" in caplog.text)
    try:
        assert not await refused.connected()
        assert "xapp-not-the-app-token" not in caplog.text
    finally:
        await refused.stop()


def jobs_made(store: Store, count: int) -> Any:
    async def made() -> bool:
        return len(await jobs(store)) == count

    return made


# -- the relay in Socket Mode: routes, readiness, manifest, doctor, settings ----------


def socket_settings(database_url: str, slack: SocketSlack, **more: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "slack_bot_token": BOT_TOKEN,
        "slack_app_token": slack.app_token,
        "slack_api_url": slack.api_url,
        **more,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def test_serve_connects_instead_of_serving_slack_events_and_readyz_says_so(
    database_url: str, slack: SocketSlack
) -> None:
    async with Store(database_url) as store:
        await migrate(store)
    app = create_app(socket_settings(database_url, slack), run_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await wait_for(ready, message="never ready")
            answer = (await client.get("/readyz")).json()
            events = await client.post("/slack/events", json={"type": "url_verification"})
    assert answer == {"status": "ready", "connections": {"slack socket mode": "connected"}}
    assert events.status_code == 404
    assert slack.open_connections() == 0  # closed when the process stops


async def test_readyz_is_503_while_the_connection_is_down(
    database_url: str, slack: SocketSlack
) -> None:
    async with Store(database_url) as store:
        await migrate(store)
    settings = socket_settings(database_url, slack, slack_app_token="xapp-refused")
    app = create_app(settings, run_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
            answer = await client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["status"] == "slack socket mode: not connected"


def test_the_socket_mode_manifest_has_no_request_urls() -> None:
    text = render_socket_mode_manifest()
    manifest = yaml.safe_load(text)
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "request_url" not in manifest["settings"]["event_subscriptions"]
    assert "redirect_urls" not in manifest["oauth_config"]
    assert "PUBLIC_URL}" not in text
    assert "/slack/events" not in text and "oauth_redirect" not in text
    assert manifest["oauth_config"]["scopes"]["bot"]  # the same scopes and events


async def test_doctor_opens_a_connection_url_with_the_app_token(slack: SocketSlack) -> None:
    good = await socket_mode_check(slack.api_url, slack.app_token)
    bad = await socket_mode_check(slack.api_url, "xapp-wrong")
    assert good.status == "ok" and "ws://127.0.0.1" in good.detail
    assert bad.status == "fail" and bad.detail == "apps.connections.open: invalid_auth"
    assert "xapp-wrong" not in bad.line()


def test_oauth_over_socket_mode_is_refused_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SLACK_APP_TOKEN": "xapp-1-token",
        "SLACK_SIGNING_SECRET": "secret",
        "SLACK_CLIENT_ID": "1.2",
        "SLACK_CLIENT_SECRET": "client-secret",
        "SECRET_KEY": "a-secret-key-of-16-chars",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    [problem] = refused.value.problems
    assert problem.variable == "SLACK_APP_TOKEN"
    assert "Socket Mode does not serve Slack's OAuth install" in problem.reason
