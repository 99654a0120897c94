"""The turn sequence's recording step: ids, the callback, the link and the start or
follow-up job in one transaction."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

from agent.checkout import WorkspaceRequest
from agent.events import START_JOB, TURN_MESSAGE_JOB
from bots.turns import (
    ApprovalAnswer,
    Turn,
    approval_answer_of,
    new_conversation_id,
    record_turn,
)
from db.callbacks import CallbackStatus, get_callback
from db.conversation_links import ConversationLink, find_link, links_of
from db.jobs import JobQueue
from db.store import Store
from processors.webhook import WebhookProcessor

PLATFORM = "slack"
THREAD = "T1:C1:1700000000.000100"


# -- new_conversation_id ----------------------------------------------------------------------


def test_new_conversation_id_is_stable_hex_per_delivery() -> None:
    first = new_conversation_id(PLATFORM, "Ev1")

    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert new_conversation_id(PLATFORM, "Ev1") == first
    assert new_conversation_id(PLATFORM, "Ev2") != first
    assert new_conversation_id("github", "Ev1") != first


# -- record_turn ------------------------------------------------------------------------------


def webhook_processor() -> WebhookProcessor:
    return WebhookProcessor.model_validate(
        {"url": "https://receiver.example.test/hook", "secret": "secret-of-the-test"}
    )


def turn(
    delivery_id: str,
    text: str,
    *,
    conversation_id: str | None = None,
    cursor: str | None = None,
    tags: dict[str, str] | None = None,
) -> Turn:
    return Turn(
        platform=PLATFORM,
        thread_key=THREAD,
        delivery_id=delivery_id,
        conversation_id=conversation_id or new_conversation_id(PLATFORM, delivery_id),
        text=text,
        processor=webhook_processor(),
        tags=tags or {},
        cursor=cursor,
    )


async def count(store: Store, table: str) -> int:
    row = await store.fetch_one(f"SELECT COUNT(*) AS n FROM {table}")
    assert row is not None
    return int(row["n"])


async def row_counts(store: Store) -> dict[str, int]:
    return {
        table: await count(store, table)
        for table in ("conversation_callbacks", "jobs", "conversation_links")
    }


async def jobs(store: Store) -> list[dict[str, Any]]:
    rows = await store.fetch_all(
        "SELECT id, kind, payload, job_key, status FROM jobs ORDER BY id", {}
    )
    return [{**row, "payload": json.loads(row["payload"])} for row in rows]


async def test_new_turn_records_link_callback_and_start_job(store: Store) -> None:
    first = turn("Ev1", "Fix the build", cursor="1700000000.000100", tags={"repo": "acme/api"})
    first = dataclasses.replace(
        first,
        received_at=1700000000.5,
        repository="acme/api",
        workspace=WorkspaceRequest(repository="acme/api", host="github", title="Fix the build"),
    )

    callback_id = await record_turn(store, JobQueue(store), first, continuing=False)

    assert callback_id is not None
    callback = await get_callback(store, callback_id)
    assert callback is not None
    assert callback.status is CallbackStatus.ACTIVE
    assert callback.conversation_id == first.conversation_id
    processor = callback.get_processor()
    assert isinstance(processor, WebhookProcessor)
    assert processor.turn_message is None
    # Where the turn came from, for its log lines and its latency.
    assert (processor.origin_delivery_id, processor.origin_received_at) == ("Ev1", 1700000000.5)
    [job] = await jobs(store)
    assert job["kind"] == START_JOB.name
    assert job["job_key"] == first.conversation_id
    assert job["payload"] == {
        "conversation_id": first.conversation_id,
        "prompt": "Fix the build",
        "tags": {"repo": "acme/api"},
        "platform": PLATFORM,
        "delivery_id": "Ev1",
        "callback_id": callback_id,
        "received_at": 1700000000.5,
        "repository": "acme/api",
        "workspace": {
            "repository": "acme/api",
            "host": "github",
            "locator": None,
            "issue_number": None,
            "change_request_number": None,
            "title": "Fix the build",
            "requester": None,
            "thread_url": None,
        },
    }
    assert await find_link(store, PLATFORM, THREAD) == ConversationLink(
        PLATFORM, THREAD, first.conversation_id, "1700000000.000100"
    )
    assert await row_counts(store) == {
        "conversation_callbacks": 1,
        "jobs": 1,
        "conversation_links": 1,
    }


async def test_the_same_delivery_is_recorded_once(store: Store) -> None:
    queue = JobQueue(store)
    first = turn("Ev1", "Fix the build", cursor="1700000000.000100")
    assert await record_turn(store, queue, first, continuing=False) is not None
    before = await row_counts(store)
    link_before = await find_link(store, PLATFORM, THREAD)

    # A retried job records the same delivery again, even with another cursor.
    again = turn("Ev1", "Fix the build", cursor="1700000099.000900")
    assert await record_turn(store, queue, again, continuing=False) is None

    assert await row_counts(store) == before
    assert await find_link(store, PLATFORM, THREAD) == link_before


async def test_the_same_follow_up_is_recorded_once(store: Store) -> None:
    queue = JobQueue(store)
    first = turn("Ev1", "Fix the build", cursor="1.0")
    await record_turn(store, queue, first, continuing=False)
    follow_up = turn("Ev2", "And the tests", conversation_id=first.conversation_id, cursor="2.0")
    assert await record_turn(store, queue, follow_up, continuing=True) is not None
    before = await row_counts(store)

    assert await record_turn(store, queue, follow_up, continuing=True) is None
    assert await row_counts(store) == before


async def test_continuing_turn_queues_its_message_and_moves_the_cursor(store: Store) -> None:
    queue = JobQueue(store)
    first = turn("Ev1", "Fix the build", cursor="1700000000.000100")
    first_id = await record_turn(store, queue, first, continuing=False)
    follow_up = turn(
        "Ev2",
        "Also run the tests",
        conversation_id=first.conversation_id,
        cursor="1700000050.000300",
    )

    callback_id = await record_turn(store, queue, follow_up, continuing=True)

    assert callback_id is not None and callback_id != first_id
    callback = await get_callback(store, callback_id)
    assert callback is not None
    assert callback.status is CallbackStatus.ACTIVE
    assert callback.conversation_id == first.conversation_id
    processor = callback.get_processor()
    assert isinstance(processor, WebhookProcessor)
    assert processor.turn_message == "Also run the tests"
    assert processor.turn_message_pending is False
    assert processor.turn_message_after is None
    # The turn's own processor object is not changed by recording it.
    assert follow_up.processor.turn_message is None  # type: ignore[attr-defined]

    start, message = await jobs(store)
    assert start["kind"] == START_JOB.name
    assert message["kind"] == TURN_MESSAGE_JOB.name
    assert message["job_key"] == first.conversation_id
    assert message["payload"] == {"callback_id": callback_id}

    assert await find_link(store, PLATFORM, THREAD) == ConversationLink(
        PLATFORM, THREAD, first.conversation_id, "1700000050.000300"
    )
    assert await row_counts(store) == {
        "conversation_callbacks": 2,
        "jobs": 2,
        "conversation_links": 1,
    }


async def test_a_turn_without_a_cursor_keeps_the_links_cursor(store: Store) -> None:
    queue = JobQueue(store)
    first = turn("Ev1", "Fix the build", cursor="1700000000.000100")
    await record_turn(store, queue, first, continuing=False)

    follow_up = turn("Ev2", "More", conversation_id=first.conversation_id, cursor=None)
    await record_turn(store, queue, follow_up, continuing=True)

    link = await find_link(store, PLATFORM, THREAD)
    assert link is not None
    assert link.cursor == "1700000000.000100"


async def test_links_of_lists_every_thread_of_a_conversation(store: Store) -> None:
    queue = JobQueue(store)
    first = turn("Ev1", "Fix the build")
    await record_turn(store, queue, first, continuing=False)
    other_thread = Turn(
        platform=PLATFORM,
        thread_key="T1:C2:1700000001.000100",
        delivery_id="Ev3",
        conversation_id=first.conversation_id,
        text="Same conversation, other thread",
        processor=webhook_processor(),
    )
    await record_turn(store, queue, other_thread, continuing=True)

    links = await links_of(store, first.conversation_id)
    assert [link.thread_key for link in links] == [THREAD, "T1:C2:1700000001.000100"]
    assert await find_link(store, PLATFORM, "T1:C9:nothing") is None
    assert await find_link(store, "github", THREAD) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("approve", ApprovalAnswer(accept=True)),
        (" Approve! ", ApprovalAnswer(accept=True)),
        ("reject", ApprovalAnswer(accept=False)),
        ("reject: too risky\nfor now", ApprovalAnswer(accept=False, reason="too risky\nfor now")),
        ("Reject not on a Friday", ApprovalAnswer(accept=False, reason="not on a Friday")),
        ("approve the plan and then deploy", None),
        ("approved", None),
        ("please reject the PR", None),
        ("", None),
    ],
)
def test_an_approval_answer_is_approve_alone_or_reject_with_a_reason(
    text: str, expected: ApprovalAnswer | None
) -> None:
    assert approval_answer_of(text) == expected
