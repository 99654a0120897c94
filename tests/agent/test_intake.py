"""The agent-server's webhook routes, driven over ASGI, on SQLite and PostgreSQL.

The captured corpus batches 02..08 are replayed as the agent-server sent them; the
only state changes worth a job are FINISHED (03), AWAITING_USER_INPUT (06) and
ERROR (07).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware

from agent.events import STATE_CHANGED_JOB
from agent.intake import AgentIntake
from db.jobs import JobQueue
from db.store import Store
from relay.limits import MAX_BODY_BYTES, BodySizeLimit
from tests.support.fake_agent_api import corpus_batch, corpus_webhook

SESSION_API_KEY = "test-session-key"  # what the corpus requests carry
WEBHOOK_SECRET = "bearer-secret-for-agent-webhooks"
CONVERSATION_HEX = "35d77258005d458983a8431e1722da40"
CONVERSATION_DASHED = "35d77258-005d-4589-83a8-431e1722da40"
KEY_HEADERS = {"X-Session-API-Key": SESSION_API_KEY}

# (batch, agent_state, id of the execution_status event that reported it)
EXPECTED_STATE_CHANGES = [
    (3, "finished", "ee63fe35-"),
    (6, "awaiting_user_input", "3cc57cca-"),
    (7, "error", "ea6246e2-"),
]


def intake_app(
    store: Store, *, session_api_key: str | None, webhook_secret: str | None
) -> Starlette:
    intake = AgentIntake(
        store, JobQueue(store), session_api_key=session_api_key, webhook_secret=webhook_secret
    )
    return Starlette(routes=intake.routes(), middleware=[Middleware(BodySizeLimit)])


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    app = intake_app(store, session_api_key=SESSION_API_KEY, webhook_secret=WEBHOOK_SECRET)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://relay.test"
    ) as http:
        yield http


async def state_jobs(store: Store) -> list[dict[str, Any]]:
    rows = await store.fetch_all("SELECT kind, payload, job_key FROM jobs ORDER BY id")
    return [{**row, "payload": json.loads(row["payload"])} for row in rows]


async def count_rows(store: Store, table: str) -> int:
    row = await store.fetch_one(f"SELECT COUNT(*) AS n FROM {table}")
    assert row is not None
    return int(row["n"])


async def assert_nothing_stored(store: Store) -> None:
    assert await count_rows(store, "inbound_deliveries") == 0
    assert await count_rows(store, "jobs") == 0


async def post_batch(
    client: httpx.AsyncClient,
    number: int,
    *,
    conversation_id: str = CONVERSATION_HEX,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = corpus_batch(number)["body"]
    return await client.post(
        f"/agent/events/{conversation_id}",
        json=body,
        headers=KEY_HEADERS if headers is None else headers,
    )


# -- replaying the corpus ---------------------------------------------------------


@pytest.mark.parametrize("path_id", [CONVERSATION_HEX, CONVERSATION_DASHED])
async def test_corpus_replay_queues_exactly_the_state_changes(
    client: httpx.AsyncClient, store: Store, path_id: str
) -> None:
    jobs_after_batch: dict[int, int] = {}
    for number in range(2, 9):
        response = await post_batch(client, number, conversation_id=path_id)
        assert response.status_code == 200, response.text
        assert response.json()["duplicates"] == 0
        jobs_after_batch[number] = len(await state_jobs(store))

    assert jobs_after_batch == {2: 0, 3: 1, 4: 1, 5: 1, 6: 2, 7: 3, 8: 3}
    jobs = await state_jobs(store)
    assert [job["kind"] for job in jobs] == [STATE_CHANGED_JOB.name] * 3
    assert all(job["job_key"] == CONVERSATION_HEX for job in jobs)
    for job, (number, state, event_prefix) in zip(jobs, EXPECTED_STATE_CHANGES, strict=True):
        assert set(job["payload"]) == {"observation"}
        observation = job["payload"]["observation"]
        reporting_event = next(
            e for e in corpus_batch(number)["body"] if e["id"].startswith(event_prefix)
        )
        assert observation == {
            "conversation_id": CONVERSATION_HEX,
            "agent_state": state,
            "reason": "",
            "event_id": reporting_event["id"],
            "timestamp": reporting_event["timestamp"],
        }


async def test_confirm_mode_batch_queues_one_awaiting_confirmation_job(
    client: httpx.AsyncClient, store: Store
) -> None:
    captured = corpus_webhook("webhook_confirm_mode_batch.json")
    conversation_id = captured["path"].rsplit("/", 1)[1]
    response = await client.post(
        f"/agent/events/{conversation_id}", json=captured["body"], headers=KEY_HEADERS
    )
    assert response.json() == {"accepted": 5, "duplicates": 0, "jobs": 1}
    [job] = await state_jobs(store)
    assert job["job_key"] == conversation_id
    assert job["payload"]["observation"]["agent_state"] == "awaiting_user_confirmation"


async def test_resent_batches_queue_nothing_new(client: httpx.AsyncClient, store: Store) -> None:
    for number in range(2, 9):
        await post_batch(client, number)
    jobs_before = await state_jobs(store)
    deliveries_before = await count_rows(store, "inbound_deliveries")

    for number in range(2, 9):
        response = await post_batch(client, number)
        assert response.status_code == 200
        assert response.json() == {
            "accepted": 0,
            "duplicates": len(corpus_batch(number)["body"]),
            "jobs": 0,
        }
    assert await state_jobs(store) == jobs_before
    assert await count_rows(store, "inbound_deliveries") == deliveries_before


async def conversation_row(store: Store) -> dict[str, Any]:
    row = await store.fetch_one(
        "SELECT execution_status, last_agent_event_kind FROM agent_conversations"
        " WHERE conversation_id = :id",
        {"id": CONVERSATION_HEX},
    )
    assert row is not None
    return dict(row)


async def test_a_resent_older_batch_does_not_roll_the_conversation_back(
    client: httpx.AsyncClient, store: Store
) -> None:
    for number in range(2, 7):
        await post_batch(client, number)
    after_the_question = await conversation_row(store)
    assert after_the_question == {
        "execution_status": "finished",
        "last_agent_event_kind": "message",
    }

    await post_batch(client, 5)  # re-sent: idle, user message, running

    assert await conversation_row(store) == after_the_question


async def test_a_stop_is_a_state_change_even_when_the_steps_before_it_were_lost(
    client: httpx.AsyncClient, store: Store
) -> None:
    """The agent-server drops the oldest queued events when its queue overflows: a
    finished may follow a finished with the idle/running in between gone."""
    for number in range(2, 5):
        await post_batch(client, number)
    batch_6 = corpus_batch(6)["body"]

    response = await client.post(
        f"/agent/events/{CONVERSATION_HEX}", json=batch_6, headers=KEY_HEADERS
    )

    assert response.json()["jobs"] == 1
    assert [j["payload"]["observation"]["agent_state"] for j in await state_jobs(store)] == [
        "finished",
        "awaiting_user_input",
    ]


async def test_a_user_message_starts_a_turn_in_which_the_agent_has_not_spoken(
    client: httpx.AsyncClient, store: Store
) -> None:
    for number in range(2, 7):  # ... the agent asked a question and stopped
        await post_batch(client, number)
    user_reply = {**corpus_batch(5)["body"][1], "id": "user-reply-1"}
    stop = {**corpus_batch(6)["body"][1], "id": "stop-after-reply"}

    await client.post(
        f"/agent/events/{CONVERSATION_HEX}", json=[user_reply, stop], headers=KEY_HEADERS
    )

    # No agent message since the user's: finished is FINISHED, not a question.
    assert (await state_jobs(store))[-1]["payload"]["observation"]["agent_state"] == "finished"


async def test_resent_batch_under_the_dashed_id_is_a_duplicate(
    client: httpx.AsyncClient, store: Store
) -> None:
    await post_batch(client, 2, conversation_id=CONVERSATION_HEX)
    first = await post_batch(client, 3, conversation_id=CONVERSATION_HEX)
    again = await post_batch(client, 3, conversation_id=CONVERSATION_DASHED)
    assert first.json() == {"accepted": 5, "duplicates": 0, "jobs": 1}
    assert again.json() == {"accepted": 0, "duplicates": 5, "jobs": 0}
    assert len(await state_jobs(store)) == 1


async def test_batch_response_counts_accepted_and_jobs(client: httpx.AsyncClient) -> None:
    await post_batch(client, 2)
    response = await post_batch(client, 3)
    assert response.json() == {"accepted": 5, "duplicates": 0, "jobs": 1}


async def test_seed_format_object_queues_one_job(client: httpx.AsyncClient, store: Store) -> None:
    seed = {
        "observation": "agent_state_changed",
        "extras": {"agent_state": "finished", "reason": "done"},
        "id": 17,
    }
    response = await client.post(
        f"/agent/events/{CONVERSATION_DASHED}", json=seed, headers=KEY_HEADERS
    )
    assert response.status_code == 200
    assert response.json()["jobs"] == 1
    [job] = await state_jobs(store)
    assert job["kind"] == STATE_CHANGED_JOB.name
    assert job["job_key"] == CONVERSATION_HEX
    assert job["payload"]["observation"]["agent_state"] == "finished"
    assert job["payload"]["observation"]["reason"] == "done"
    assert job["payload"]["observation"]["event_id"] == "17"

    again = await client.post(f"/agent/events/{CONVERSATION_HEX}", json=seed, headers=KEY_HEADERS)
    assert again.json() == {"accepted": 0, "duplicates": 1, "jobs": 0}
    assert len(await state_jobs(store)) == 1


async def test_seed_format_running_state_queues_nothing(
    client: httpx.AsyncClient, store: Store
) -> None:
    seed = {"observation": "agent_state_changed", "extras": {"agent_state": "running"}, "id": "s1"}
    response = await client.post(
        f"/agent/events/{CONVERSATION_HEX}", json=seed, headers=KEY_HEADERS
    )
    assert response.json() == {"accepted": 1, "duplicates": 0, "jobs": 0}
    assert await state_jobs(store) == []


# -- authentication -----------------------------------------------------------------


async def test_bearer_webhook_secret_is_accepted(client: httpx.AsyncClient, store: Store) -> None:
    response = await post_batch(client, 2, headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"})
    assert response.status_code == 200
    assert await count_rows(store, "inbound_deliveries") == 5


WRONG_CREDENTIALS: list[dict[str, str]] = [
    {},
    {"X-Session-API-Key": "wrong-key"},
    {"X-Session-API-Key": ""},
    {"Authorization": "Bearer wrong-secret"},
    {"Authorization": f"Basic {WEBHOOK_SECRET}"},
    {"Authorization": WEBHOOK_SECRET},
    {"X-Session-API-Key": WEBHOOK_SECRET},
    {"Authorization": f"Bearer {SESSION_API_KEY}"},
]
# With no secret configured, not even these may pass.
ANY_CREDENTIALS: list[dict[str, str]] = [
    {},
    {"X-Session-API-Key": ""},
    {"X-Session-API-Key": SESSION_API_KEY},
    {"Authorization": "Bearer "},
    {"Authorization": f"Bearer {WEBHOOK_SECRET}"},
]


async def assert_all_refused(client: httpx.AsyncClient, credentials: list[dict[str, str]]) -> None:
    deleted_info = corpus_webhook("webhook_conversation_info_on_delete.json")["body"]
    for headers in credentials:
        events = await post_batch(client, 3, headers=headers)
        info = await client.post("/agent/conversations", json=deleted_info, headers=headers)
        assert events.status_code == 401, headers
        assert info.status_code == 401, headers


async def test_wrong_or_missing_credentials_are_refused(
    client: httpx.AsyncClient, store: Store
) -> None:
    await assert_all_refused(client, WRONG_CREDENTIALS)
    await assert_nothing_stored(store)


async def test_without_any_secret_configured_every_request_is_refused(store: Store) -> None:
    app = intake_app(store, session_api_key=None, webhook_secret=None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://relay.test"
    ) as client:
        await assert_all_refused(client, ANY_CREDENTIALS)
    await assert_nothing_stored(store)


# -- malformed requests store nothing --------------------------------------------------

MALFORMED_BATCHES: list[tuple[bytes, int]] = [
    (b"{not json", 400),
    (b"\xff\xfe\x00garbage", 400),
    (b"", 400),
    (b'"a string"', 422),
    (b'{"kind": "MessageEvent", "id": "e1"}', 422),
    (b'[{"kind": "MessageEvent"}]', 422),
    (b'[{"id": "e1"}]', 422),
    (b"[1, 2]", 422),
    (b'{"observation": "agent_state_changed", "extras": {"agent_state": "bored"}, "id": 1}', 422),
]
MALFORMED_INFOS: list[tuple[bytes, int]] = [
    (b"<xml/>", 400),
    (b"[]", 422),
    (b'{"execution_status": "deleting"}', 422),
    (b'{"id": "35d77258005d458983a8431e1722da40"}', 422),
    (b'{"id": "junk", "execution_status": "deleting"}', 422),
]
BAD_CONVERSATION_IDS = ["not-a-uuid", "35d77258005d458983a8431e1722da4", "1234"]


async def test_malformed_requests_are_refused_and_store_nothing(
    client: httpx.AsyncClient, store: Store
) -> None:
    json_headers = {**KEY_HEADERS, "Content-Type": "application/json"}
    for content, status in MALFORMED_BATCHES:
        response = await client.post(
            f"/agent/events/{CONVERSATION_HEX}", content=content, headers=json_headers
        )
        assert response.status_code == status, (content, response.text)
        assert "error" in response.json()
    for content, status in MALFORMED_INFOS:
        response = await client.post("/agent/conversations", content=content, headers=json_headers)
        assert response.status_code == status, (content, response.text)
    for bad_id in BAD_CONVERSATION_IDS:
        response = await post_batch(client, 3, conversation_id=bad_id)
        assert response.status_code == 422, bad_id
    await assert_nothing_stored(store)


async def test_oversized_batch_is_refused_with_413(client: httpx.AsyncClient, store: Store) -> None:
    padding = "x" * (MAX_BODY_BYTES + 1)
    body = [{"id": "big", "kind": "MessageEvent", "padding": padding}]
    response = await client.post(
        f"/agent/events/{CONVERSATION_HEX}", json=body, headers=KEY_HEADERS
    )
    assert response.status_code == 413
    await assert_nothing_stored(store)


# -- conversation info ------------------------------------------------------------------


async def test_deleted_conversation_info_queues_one_stopped_job(
    client: httpx.AsyncClient, store: Store
) -> None:
    info = corpus_webhook("webhook_conversation_info_on_delete.json")["body"]
    response = await client.post("/agent/conversations", json=info, headers=KEY_HEADERS)
    assert response.status_code == 200
    assert response.json() == {"accepted": True, "jobs": 1}
    [job] = await state_jobs(store)
    conversation_hex = info["id"].replace("-", "")
    assert job["kind"] == STATE_CHANGED_JOB.name
    assert job["job_key"] == conversation_hex
    observation = job["payload"]["observation"]
    assert observation["conversation_id"] == conversation_hex
    assert observation["agent_state"] == "stopped"
    assert observation["reason"]

    again = await client.post("/agent/conversations", json=info, headers=KEY_HEADERS)
    assert again.status_code == 200
    assert again.json()["jobs"] == 0
    assert len(await state_jobs(store)) == 1


async def test_idle_conversation_info_queues_nothing(
    client: httpx.AsyncClient, store: Store
) -> None:
    info = corpus_webhook("webhook_01_conversation_info.json")["body"]
    response = await client.post(
        "/agent/conversations", json=info, headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"}
    )
    assert response.status_code == 200
    assert response.json() == {"accepted": True, "jobs": 0}
    assert await state_jobs(store) == []


async def test_an_event_twice_in_one_batch_counts_once(
    client: httpx.AsyncClient, store: Store
) -> None:
    await post_batch(client, 2)
    body = corpus_batch(3)["body"]
    response = await client.post(
        f"/agent/events/{CONVERSATION_HEX}", json=body + body, headers=KEY_HEADERS
    )
    assert response.json() == {"accepted": 5, "duplicates": 5, "jobs": 1}
    assert len(await state_jobs(store)) == 1
