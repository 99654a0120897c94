"""Job wakeups: the in-process event after commit (both databases), PostgreSQL's
NOTIFY inside the enqueuing transaction, and the listener that survives a dropped
connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from db.job_kinds import JobStatus
from db.jobs import JobQueue
from db.migrations import migrate
from db.store import Store
from db.wakeups import APPLICATION_NAME, CHANNEL, JobWakeupListener, job_wakeups
from tests.support.job_kinds import AnyPayload, kind_named
from tests.support.waiting import wait_for

ECHO = kind_named("echo")

PROBE = "probe"


@pytest.fixture
def queue(store: Store) -> JobQueue:
    return JobQueue(store)


# -- the in-process event: set once the job is committed ------------------------------


async def test_enqueue_outside_a_transaction_wakes_at_once(queue: JobQueue) -> None:
    await queue.enqueue(ECHO, AnyPayload())
    assert queue.wakeup.is_set()


async def test_enqueue_inside_a_transaction_wakes_only_after_the_commit(
    queue: JobQueue, store: Store
) -> None:
    async with store.transaction():
        await queue.enqueue(ECHO, AnyPayload())
        await store.execute(
            "INSERT INTO inbound_deliveries (source, delivery_id, received_at)"
            " VALUES ('test', '1', 0)"
        )
        assert not queue.wakeup.is_set(), "woken before the job is visible"
    assert queue.wakeup.is_set()


async def test_a_rolled_back_enqueue_wakes_no_one(queue: JobQueue, store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction():
            await queue.enqueue(ECHO, AnyPayload())
            raise RuntimeError("roll back")
    assert not queue.wakeup.is_set()


async def test_duplicate_and_delayed_jobs_wake_no_one(queue: JobQueue) -> None:
    await queue.enqueue(ECHO, AnyPayload(), idempotency_key="once")
    queue.wakeup.clear()
    assert await queue.enqueue(ECHO, AnyPayload(), idempotency_key="once") is None
    assert await queue.enqueue(kind_named("later"), AnyPayload(), delay=60) is not None
    assert not queue.wakeup.is_set()


async def test_retrying_a_failed_job_wakes_after_the_commit(queue: JobQueue, store: Store) -> None:
    job_id = await queue.enqueue(ECHO, AnyPayload(), max_attempts=1)
    job = await queue.claim()
    assert job is not None and job.id == job_id
    assert await queue.fail(job, "boom") is JobStatus.FAILED
    queue.wakeup.clear()
    async with store.transaction():
        assert await queue.retry(job.id)
        assert not queue.wakeup.is_set()
    assert queue.wakeup.is_set()


# -- PostgreSQL: NOTIFY on commit -----------------------------------------------------


@pytest.fixture
async def pg_store(empty_postgres_url: str) -> AsyncIterator[Store]:
    async with Store(empty_postgres_url) as store:
        await migrate(store)
        yield store


class Notifications:
    """A raw listener on the job channel that keeps every payload, in order."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.payloads: list[str] = []

    def received(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        self.payloads.append(payload)

    async def probe(self, url: str) -> None:
        """Send a marker from a connection of its own and wait until it arrives:
        everything committed before it has arrived by then (PostgreSQL delivers in
        commit order)."""
        count = self.payloads.count(PROBE)
        sender = await asyncpg.connect(url)
        try:
            await sender.execute(f"SELECT pg_notify('{CHANNEL}', '{PROBE}')")
        finally:
            await sender.close()
        await wait_for(lambda: self.payloads.count(PROBE) > count, timeout=5)


@pytest.fixture
async def notifications(empty_postgres_url: str) -> AsyncIterator[Notifications]:
    connection = await asyncpg.connect(empty_postgres_url)
    recorder = Notifications(connection)
    await connection.add_listener(CHANNEL, recorder.received)
    try:
        yield recorder
    finally:
        await connection.close()


@pytest.mark.postgres
async def test_enqueue_notifies_other_processes_on_commit_only(
    pg_store: Store, notifications: Notifications, empty_postgres_url: str
) -> None:
    queue = JobQueue(pg_store)
    async with pg_store.transaction():
        for n in range(3):
            await queue.enqueue(ECHO, AnyPayload(n=n))
        await notifications.probe(empty_postgres_url)
        assert notifications.payloads == [PROBE], "notified before the commit"
    # One notification for the whole transaction: PostgreSQL folds repeats.
    await wait_for(lambda: notifications.payloads == [PROBE, ""], timeout=5)


@pytest.mark.postgres
async def test_rolled_back_duplicate_and_delayed_jobs_notify_no_one(
    pg_store: Store, notifications: Notifications, empty_postgres_url: str
) -> None:
    queue = JobQueue(pg_store)
    await queue.enqueue(ECHO, AnyPayload(), idempotency_key="once")
    await notifications.probe(empty_postgres_url)
    notifications.payloads.clear()

    assert await queue.enqueue(ECHO, AnyPayload(), idempotency_key="once") is None
    assert await queue.enqueue(kind_named("later"), AnyPayload(), delay=60) is not None
    with pytest.raises(RuntimeError):
        async with pg_store.transaction():
            await queue.enqueue(ECHO, AnyPayload())
            raise RuntimeError("roll back")
    await notifications.probe(empty_postgres_url)
    assert notifications.payloads == [PROBE]


@pytest.mark.postgres
async def test_retry_notifies(
    pg_store: Store, notifications: Notifications, empty_postgres_url: str
) -> None:
    queue = JobQueue(pg_store)
    await queue.enqueue(ECHO, AnyPayload(), max_attempts=1)
    job = await queue.claim()
    assert job is not None
    await queue.fail(job, "boom")
    await notifications.probe(empty_postgres_url)
    notifications.payloads.clear()

    assert await queue.retry(job.id)
    await notifications.probe(empty_postgres_url)
    assert notifications.payloads == ["", PROBE]


# -- the listener ---------------------------------------------------------------------


async def terminate_listeners(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        terminated: int = await connection.fetchval(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1 AND datname = current_database()",
            APPLICATION_NAME,
        )
        return terminated
    finally:
        await connection.close()


@pytest.mark.postgres
async def test_the_listener_wakes_a_queue_of_another_store(
    pg_store: Store, empty_postgres_url: str
) -> None:
    async with Store(empty_postgres_url) as other_store:
        worker_side = JobQueue(other_store)  # as in another process
        async with job_wakeups(other_store, worker_side.wakeup) as listener:
            assert listener is not None
            await wait_for(listener.listening.is_set, timeout=10)
            worker_side.wakeup.clear()

            await JobQueue(pg_store).enqueue(ECHO, AnyPayload())
            await asyncio.wait_for(worker_side.wakeup.wait(), 5)


@pytest.mark.postgres
async def test_the_listener_reconnects_after_its_connection_is_terminated(
    pg_store: Store, empty_postgres_url: str
) -> None:
    wakeup = asyncio.Event()
    async with job_wakeups(pg_store, wakeup) as listener:
        assert listener is not None
        await wait_for(listener.listening.is_set, timeout=10)
        assert await terminate_listeners(empty_postgres_url) == 1

        await wait_for(
            lambda: listener.sessions == 2 and listener.listening.is_set(),
            timeout=10,
            message="the listener did not reconnect",
        )
        wakeup.clear()
        await JobQueue(pg_store).enqueue(ECHO, AnyPayload())
        await asyncio.wait_for(wakeup.wait(), 5)


@pytest.mark.postgres
async def test_reconnecting_sets_the_wakeup_for_jobs_missed_meanwhile(
    empty_postgres_url: str,
) -> None:
    wakeup = asyncio.Event()
    listener = JobWakeupListener(empty_postgres_url, wakeup)
    task = asyncio.create_task(listener.run())
    try:
        await wait_for(listener.listening.is_set, timeout=10)
        assert wakeup.is_set()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_an_unreachable_server_is_retried_with_backoff_until_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wakeup = asyncio.Event()
    # Port 1 on loopback refuses at once.
    listener = JobWakeupListener(
        "postgresql://postgres@127.0.0.1:1/test", wakeup, retry_min=0.01, retry_max=0.04
    )
    with caplog.at_level(logging.WARNING, logger="db.wakeups"):
        task = asyncio.create_task(listener.run())
        await wait_for(
            lambda: caplog.text.count("reconnecting in") >= 4,
            timeout=10,
            message="the listener stopped retrying",
        )
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not listener.listening.is_set()
    assert listener.sessions == 0


async def test_sqlite_needs_no_listener(tmp_path: Path) -> None:
    async with Store(f"sqlite:///{tmp_path}/relay.db") as store:
        async with job_wakeups(store, asyncio.Event()) as listener:
            assert listener is None
