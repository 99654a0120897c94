"""bots/slack/inbound.py's options handler: Slack asks for the picker's options as the
asker types, signed like every request; Bolt answers them at once, recording nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from starlette.applications import Starlette

from bots.slack.blocks import PICK_ACTION
from bots.slack.inbound import EVENTS_PATH, build_slack_app, slack_routes
from db.jobs import JobQueue
from db.store import Store
from tests.support.fake_slack import FakeSlack, slack_signature_headers

TEAM = "T0OPTIONS"
BOT_TOKEN = "xoxb-options-token"
SIGNING_SECRET = "options-signing-secret"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.add_team(TEAM, bot_token=BOT_TOKEN, bot_user_id="U0BOT", bot_id="B0BOT")
        yield fake


async def typed(value: str) -> list[dict[str, Any]]:
    names = ["acme/api", "acme/web", "other/webhooks"]
    return [
        {"text": {"type": "plain_text", "text": name}, "value": f"github:{name}"}
        for name in names
        if value in name
    ]


def suggestion(value: str) -> dict[str, Any]:
    return {
        "type": "block_suggestion",
        "action_id": PICK_ACTION,
        "block_id": "relay.repository",
        "value": value,
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": "U0ADA", "team_id": TEAM},
        "container": {"type": "message", "message_ts": "1.000200", "channel_id": "C0BUILDS"},
        "api_app_id": "A0RELAY",
        "token": "fake-verification-token",
    }


async def post(app: Starlette, body: bytes, *, secret: str = SIGNING_SECRET) -> httpx.Response:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        **slack_signature_headers(secret, body, timestamp=int(time.time())),
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay.test") as client:
        return await client.post(EVENTS_PATH, content=body, headers=headers)


async def test_the_options_are_what_was_typed_and_nothing_is_recorded(
    store: Store, slack: FakeSlack
) -> None:
    bolt = build_slack_app(
        store=store,
        queue=JobQueue(store),
        signing_secret=SIGNING_SECRET,
        api_url=slack.api_url,
        bot_token=BOT_TOKEN,
        repository_options=typed,
    )
    app = Starlette(routes=slack_routes(bolt))
    body = urlencode({"payload": json.dumps(suggestion("web"))}).encode()

    response = await post(app, body)

    assert response.status_code == 200
    assert [o["value"] for o in response.json()["options"]] == [
        "github:acme/web",
        "github:other/webhooks",
    ]
    assert await store.fetch_all("SELECT kind FROM jobs") == []
    assert await store.fetch_all("SELECT delivery_id FROM inbound_deliveries") == []

    forged = await post(app, body, secret="not-the-secret")
    assert forged.status_code == 401
