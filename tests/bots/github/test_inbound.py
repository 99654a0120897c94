"""POST /github/events over ASGI, on SQLite and PostgreSQL: what a queued delivery's
job holds."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from bots.github.credentials import AppCredentials, GithubAppSource
from bots.github.inbound import GITHUB_EVENT_JOB, github_routes
from db.jobs import JobQueue
from db.secrets import SecretBox
from db.store import Store
from tests.support import github_webhooks as hooks
from tests.support.fake_github import github_signature_headers

SECRET = "webhook-secret"
REPOSITORY = "acme/widgets"


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    app = AppCredentials(app_id="1", slug="relay", private_key="unused", webhook_secret=SECRET)
    routes = github_routes(
        store=store,
        queue=JobQueue(store),
        source=GithubAppSource(store, SecretBox(None), app),
        mention="@openhands",
        trigger_label="openhands",
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=Starlette(routes=routes)), base_url="http://relay.test"
    ) as http:
        yield http


def a_mention() -> dict[str, Any]:
    comment = {
        "id": 501,
        "issue_url": f"https://api.github.com/repos/{REPOSITORY}/issues/3",
        "body": "@openhands répare le test instable",
    }
    return hooks.issue_comment(REPOSITORY, 42, comment, sender="ada")


async def deliver(
    client: httpx.AsyncClient, body: bytes, content_type: str = "application/json"
) -> httpx.Response:
    headers = github_signature_headers(body, SECRET, event="issue_comment", delivery_id="d-1")
    return await client.post(
        "/github/events", content=body, headers=headers | {"Content-Type": content_type}
    )


async def stored_payload(store: Store) -> str:
    [job] = await store.fetch_all("SELECT kind, payload FROM jobs")
    assert job["kind"] == GITHUB_EVENT_JOB.name
    return str(job["payload"])


async def test_a_json_delivery_is_queued_with_its_body_as_received(
    client: httpx.AsyncClient, store: Store
) -> None:
    document = a_mention()
    # Not as json.dumps would write it again: indented, and é as itself.
    body = json.dumps(document, indent=2, ensure_ascii=False).encode()

    response = await deliver(client, body, "application/json; charset=utf-8")

    assert response.status_code == 202
    payload = await stored_payload(store)
    assert body.decode() in payload
    assert json.loads(payload) == {
        "delivery_id": "d-1",
        "event": "issue_comment",
        "payload": document,
    }


async def test_a_form_encoded_delivery_is_queued_as_the_document_it_carries(
    client: httpx.AsyncClient, store: Store
) -> None:
    """GitHub can deliver `payload=<json>` as a form: those bytes are not the JSON."""
    document = a_mention()
    body = urllib.parse.urlencode({"payload": json.dumps(document)}).encode()

    response = await deliver(client, body, "application/x-www-form-urlencoded")

    assert response.status_code == 202
    assert json.loads(await stored_payload(store))["payload"] == document
