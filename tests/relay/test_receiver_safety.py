"""WEBHOOK_ALLOW_PRIVATE_NETWORKS as the composition root wires it: a reply to a
receiver on loopback is refused when the setting is off (the callback goes ERROR and
says why) and delivered when it is on. The relay is built from Settings and its own
worker runs the reply job; the receiver is a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from db.callbacks import CallbackStatus, get_callback
from db.job_kinds import JobStatus
from db.migrations import migrate
from db.store import Store
from processors.base import REPLY_JOB, Reply, ReplyStatus
from relay.app import Relay
from relay.settings import Settings
from tests.support.fake_agent_api import WEBHOOK_SECRET, insert_webhook_callback
from tests.support.receiver import RecordingReceiver


@pytest.fixture
def receiver() -> Iterator[RecordingReceiver]:
    with RecordingReceiver() as recording:
        yield recording


@pytest.fixture
async def migrated_database_url(database_url: str) -> str:
    async with Store(database_url) as store:
        await migrate(store)
    return database_url


@asynccontextmanager
async def started_relay(database_url: str, **settings: Any) -> AsyncIterator[Relay]:
    relay = Relay.build(
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=database_url,
            agent_server_url="http://127.0.0.1:9",  # never called here
            **settings,
        )
    )
    await relay.start(schedule_maintenance=False)
    try:
        yield relay
    finally:
        await relay.close()


async def reply_to(relay: Relay, receiver: RecordingReceiver) -> int:
    """Queue the reply of a webhook callback on `receiver`, run it; the callback's id."""
    conversation_id = uuid.uuid4().hex
    callback = await insert_webhook_callback(
        relay.store, conversation_id, url=f"{receiver.url}/hook"
    )
    assert callback.id is not None
    reply = Reply(
        callback_id=callback.id,
        conversation_id=conversation_id,
        status=ReplyStatus.COMPLETED,
        summary="Done.",
        delivery_id=uuid.uuid4().hex,
    )
    await relay.queue.enqueue(REPLY_JOB, reply, max_attempts=20)
    job = await relay.queue.claim()
    assert job is not None and job.kind == REPLY_JOB.name
    await relay.worker.run_job(job)
    return callback.id


async def test_loopback_receiver_is_refused_by_default(
    migrated_database_url: str, receiver: RecordingReceiver
) -> None:
    async with started_relay(migrated_database_url) as relay:
        callback_id = await reply_to(relay, receiver)
        callback = await get_callback(relay.store, callback_id)
        [job] = await relay.store.fetch_all("SELECT status, last_error FROM jobs")
    assert receiver.requests == []
    assert callback is not None and callback.status is CallbackStatus.ERROR
    assert callback.status_reason is not None
    assert "127.0.0.1 is not a public address (loopback)" in callback.status_reason
    assert "WEBHOOK_ALLOW_PRIVATE_NETWORKS=true" in callback.status_reason
    assert WEBHOOK_SECRET not in callback.status_reason
    # Failed for good at once: no retries against an address that will not change.
    assert job["status"] == JobStatus.FAILED.value


async def test_loopback_receiver_gets_the_reply_when_allowed(
    migrated_database_url: str, receiver: RecordingReceiver
) -> None:
    async with started_relay(migrated_database_url, webhook_allow_private_networks=True) as relay:
        await reply_to(relay, receiver)
    [delivery] = receiver.requests_to("/hook")
    assert delivery.json()["summary"] == "Done."
