"""POST /gitlab/events over ASGI, on SQLite and PostgreSQL: verified before parsing,
recorded once, queued before the answer."""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from bots.gitlab import inbound as gitlab_events
from bots.gitlab.inbound import GITLAB_EVENT_JOB, GitlabEvents, delivery_id_of
from bots.intake import EVENT_JOB_MAX_ATTEMPTS
from db.jobs import JobQueue
from db.store import Store
from tests.support.fake_gitlab import (
    WEBHOOK_SECRET,
    FakeGitlab,
    delivery_headers,
    label_hook,
    note_hook,
)

PROJECT_ID = 7
ASKER = 11


@pytest.fixture
def gitlab() -> FakeGitlab:
    # Never started: only its state and the payload builders are used.
    fake = FakeGitlab()
    fake.add_project(PROJECT_ID, "acme/widgets")
    fake.add_user(ASKER, "ada")
    fake.add_issue(PROJECT_ID, 3, title="Flaky test", author_id=ASKER)
    return fake


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    events = GitlabEvents(
        store=store,
        queue=JobQueue(store),
        secret=WEBHOOK_SECRET,
        mention="@openhands",
        trigger_label="openhands",
    )
    app = Starlette(routes=events.routes())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://relay.test"
    ) as http:
        yield http


def mention(gitlab: FakeGitlab, text: str = "@openhands fix the flaky test") -> dict[str, Any]:
    return note_hook(gitlab, gitlab.add_note(PROJECT_ID, "issue", 3, author_id=ASKER, body=text))


async def post(
    client: httpx.AsyncClient,
    payload: dict[str, Any] | bytes,
    event: str = "Note Hook",
    **header_options: Any,
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    key = header_options.pop("key", None)
    headers = delivery_headers(event, **header_options)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post("/gitlab/events", content=body, headers=headers)


async def stored(store: Store) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    jobs = await store.fetch_all("SELECT kind, payload, job_key, max_attempts FROM jobs")
    deliveries = await store.fetch_all("SELECT source, delivery_id FROM inbound_deliveries")
    return jobs, deliveries


async def test_a_mention_is_recorded_and_queued_before_the_answer(
    client: httpx.AsyncClient, store: Store, gitlab: FakeGitlab
) -> None:
    payload = mention(gitlab)

    response = await post(client, payload, event_uuid="6f1f7f5a-uuid-1", key="idem-key-1")

    assert response.status_code == 202
    jobs, deliveries = await stored(store)
    # Under its X-Gitlab-Event-UUID, and its Idempotency-Key (which a resend keeps).
    assert sorted(d["delivery_id"] for d in deliveries) == ["6f1f7f5a-uuid-1", "idem-key-1"]
    [job] = jobs
    assert job["kind"] == GITLAB_EVENT_JOB.name
    assert job["job_key"] == f"gitlab:{PROJECT_ID}:issue:3"
    assert job["max_attempts"] == EVENT_JOB_MAX_ATTEMPTS
    assert json.loads(job["payload"]) == {
        "delivery_id": "6f1f7f5a-uuid-1",
        "event": "Note Hook",
        "payload": payload,
    }


async def test_the_job_holds_the_body_as_received(
    client: httpx.AsyncClient, store: Store, gitlab: FakeGitlab
) -> None:
    payload = mention(gitlab, "@openhands répare le test")
    body = json.dumps(payload, indent=2, ensure_ascii=False).encode()

    response = await post(client, body)

    assert response.status_code == 202
    [job], _ = await stored(store)
    assert body.decode() in job["payload"]
    assert json.loads(job["payload"])["payload"] == payload


async def test_the_same_event_delivered_again_is_queued_once(
    client: httpx.AsyncClient, store: Store, gitlab: FakeGitlab
) -> None:
    payload = mention(gitlab)

    first = await post(client, payload, event_uuid="same-uuid")
    second = await post(client, payload, event_uuid="same-uuid")

    assert first.status_code == 202
    assert second.status_code == 200 and second.json()["duplicate"] is True
    jobs, _ = await stored(store)
    assert len(jobs) == 1


async def test_a_resent_event_keeps_its_idempotency_key_and_is_queued_once(
    client: httpx.AsyncClient, store: Store, gitlab: FakeGitlab
) -> None:
    payload = mention(gitlab)
    first = await post(client, payload, event_uuid="uuid-first", key="idem-key-2")
    # GitLab's resend (17.4): the same Idempotency-Key, a new X-Gitlab-Event-UUID.
    resent = await post(client, payload, event_uuid="uuid-resent", key="idem-key-2")

    assert first.status_code == 202
    assert resent.status_code == 200 and resent.json()["duplicate"] is True
    jobs, _ = await stored(store)
    assert len(jobs) == 1


@pytest.mark.parametrize(
    "secret",
    [None, "not-the-secret", WEBHOOK_SECRET + "x", ""],
    ids=["missing", "wrong", "longer", "empty"],
)
async def test_a_missing_or_wrong_token_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, store: Store, gitlab: FakeGitlab, secret: str | None
) -> None:
    response = await post(client, mention(gitlab), secret=secret)

    assert response.status_code == 401
    assert await stored(store) == ([], [])


async def test_the_token_is_checked_in_constant_time_before_the_body_is_parsed(
    client: httpx.AsyncClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(gitlab_events.hmac, "compare_digest", compare)

    # Not JSON at all: a wrong token is a 401 before anyone looks at the body.
    response = await post(client, b"{not json", secret="wrong")

    assert response.status_code == 401
    assert compared == [(b"wrong", WEBHOOK_SECRET.encode())]


async def test_a_body_that_is_not_json_is_a_bad_request(
    client: httpx.AsyncClient, store: Store
) -> None:
    assert (await post(client, b"{not json")).status_code == 400
    assert (await post(client, b"[1, 2]")).status_code == 400
    assert await stored(store) == ([], [])


async def test_a_body_that_is_not_declared_json_is_refused(client: httpx.AsyncClient) -> None:
    headers = {**delivery_headers("Note Hook"), "Content-Type": "text/plain"}
    response = await client.post("/gitlab/events", content=b"hello", headers=headers)
    assert response.status_code == 415


async def test_a_delivery_without_its_event_header_is_a_bad_request(
    client: httpx.AsyncClient, gitlab: FakeGitlab
) -> None:
    headers = delivery_headers("Note Hook")
    del headers["X-Gitlab-Event"]
    response = await client.post(
        "/gitlab/events", content=json.dumps(mention(gitlab)).encode(), headers=headers
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("event", "build"),
    [
        ("Note Hook", lambda g: mention(g, "no mention here")),
        ("Push Hook", lambda g: {"object_kind": "push", "ref": "refs/heads/main"}),
        (
            "Issue Hook",
            lambda g: label_hook(
                g, PROJECT_ID, "issue", 3, user_id=ASKER, previous=[], current=["bug"]
            ),
        ),
    ],
    ids=["note-without-mention", "push", "other-label"],
)
async def test_deliveries_that_trigger_nothing_are_answered_and_forgotten(
    client: httpx.AsyncClient, store: Store, gitlab: FakeGitlab, event: str, build: Any
) -> None:
    response = await post(client, build(gitlab), event=event)

    assert response.status_code == 200
    assert response.json()["queued"] is False
    assert await stored(store) == ([], [])


async def test_the_trigger_label_is_queued_on_the_issue_s_key(
    client: httpx.AsyncClient, store: Store, gitlab: FakeGitlab
) -> None:
    payload = label_hook(
        gitlab, PROJECT_ID, "issue", 3, user_id=ASKER, previous=[], current=["openhands"]
    )

    response = await post(client, payload, event="Issue Hook")

    assert response.status_code == 202
    jobs, _ = await stored(store)
    assert [job["job_key"] for job in jobs] == [f"gitlab:{PROJECT_ID}:issue:3"]


async def test_the_bot_s_own_notes_are_dropped_once_its_user_is_known(
    store: Store, gitlab: FakeGitlab
) -> None:
    events = GitlabEvents(
        store=store,
        queue=JobQueue(store),
        secret=WEBHOOK_SECRET,
        mention="@openhands",
        trigger_label="openhands",
        known_bot_user_id=lambda: gitlab.bot_user_id,
    )
    own = note_hook(
        gitlab,
        gitlab.add_note(
            PROJECT_ID, "issue", 3, author_id=gitlab.bot_user_id, body="ask @openhands again"
        ),
    )
    transport = httpx.ASGITransport(app=Starlette(routes=events.routes()))
    async with httpx.AsyncClient(transport=transport, base_url="http://relay.test") as http:
        response = await post(http, own)

    assert response.status_code == 200
    assert await stored(store) == ([], [])


def test_the_delivery_id_is_the_event_uuid_else_the_idempotency_key_else_the_content() -> None:
    both = {"x-gitlab-event-uuid": "event-uuid", "idempotency-key": "idem-key"}
    assert delivery_id_of(both, "Note Hook", b"{}") == "event-uuid"
    assert delivery_id_of({"idempotency-key": "idem-key"}, "Note Hook", b"{}") == "idem-key"
    by_content = delivery_id_of({}, "Note Hook", b'{"a": 1}')
    assert by_content.startswith("sha256:")
    assert by_content == delivery_id_of({}, "Note Hook", b'{"a": 1}')
    assert by_content != delivery_id_of({}, "Issue Hook", b'{"a": 1}')
