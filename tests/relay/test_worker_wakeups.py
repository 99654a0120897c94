"""How an idle Worker learns of a new job: the in-process event once the enqueuing
transaction has committed (both databases) and, on PostgreSQL, the listener.

The workers here poll every 30 s, so a job that starts within the limit below was
started by a wakeup, not found by a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from db.job_kinds import Job
from db.jobs import JobQueue
from db.migrations import migrate
from db.store import Store
from relay.worker import Worker
from tests.support.job_kinds import AnyPayload, kind_named
from tests.support.waiting import wait_for

POLL_SECONDS = 30.0
WAKEUP_LIMIT_SECONDS = 0.5
SLOTS = 2


class StartTimes:
    """A handler that notes when each job started."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}

    async def __call__(self, job: Job) -> None:
        self.started[job.id] = time.monotonic()


class CountingQueue(JobQueue):
    """A queue that counts claim attempts, to know when every slot has gone idle."""

    claims = 0

    async def complete_and_claim(
        self, completed: Sequence[Job], limit: int
    ) -> tuple[set[int], list[Job]]:
        self.claims += 1
        return await super().complete_and_claim(completed, limit)


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def start_delay(handler: StartTimes, job_id: int, since: float) -> float:
    await wait_for(lambda: job_id in handler.started, timeout=10, message="the job never ran")
    return handler.started[job_id] - since


async def test_a_job_enqueued_in_a_transaction_wakes_the_worker_after_the_commit(
    store: Store,
) -> None:
    queue = CountingQueue(store)
    handler = StartTimes()
    worker = Worker(
        queue, {"echo": handler}, concurrency=SLOTS, poll_interval=POLL_SECONDS, listen=False
    )
    async with running(worker):
        await wait_for(lambda: queue.claims >= 1, message="the worker never looked for work")
        async with store.transaction():
            job_id = await queue.enqueue(kind_named("echo"), AnyPayload())
            assert job_id is not None
            # More of the caller's work, during which a worker woken too early would
            # find nothing and go back to sleep for a whole poll interval. (Whether one
            # would be woken is a race; tests/db/test_wakeups.py pins the order.)
            await store.execute(
                "INSERT INTO inbound_deliveries (source, delivery_id, received_at)"
                " VALUES ('test', '1', 0)"
            )
        committed_at = time.monotonic()
        delay = await start_delay(handler, job_id, committed_at)
    print(f"commit -> start in this process ({store.dialect}): {delay * 1000:.1f} ms")
    assert delay < WAKEUP_LIMIT_SECONDS


@pytest.fixture
async def pg_store(empty_postgres_url: str) -> AsyncIterator[Store]:
    async with Store(empty_postgres_url) as store:
        await migrate(store)
        yield store


@pytest.mark.postgres
async def test_a_worker_on_another_connection_pool_is_woken_by_the_listener(
    pg_store: Store, empty_postgres_url: str
) -> None:
    handler = StartTimes()
    async with Store(empty_postgres_url) as worker_store:
        # Its own Store and queue, as in another process: only NOTIFY can reach it.
        worker = Worker(
            JobQueue(worker_store), {"echo": handler}, concurrency=SLOTS, poll_interval=POLL_SECONDS
        )
        async with running(worker):
            await wait_for(
                lambda: worker.wakeups is not None and worker.wakeups.listening.is_set(),
                message="the worker never listened",
            )
            enqueued_at = time.monotonic()
            job_id = await JobQueue(pg_store).enqueue(kind_named("echo"), AnyPayload())
            assert job_id is not None
            delay = await start_delay(handler, job_id, enqueued_at)
        assert worker.wakeups is None  # the listener stopped with the worker
    print(f"enqueue -> start through LISTEN/NOTIFY: {delay * 1000:.1f} ms")
    assert delay < WAKEUP_LIMIT_SECONDS


async def test_a_sqlite_worker_runs_no_listener(tmp_path: Path) -> None:
    async with Store(f"sqlite:///{tmp_path}/relay.db") as store:
        await migrate(store)
        queue = CountingQueue(store)
        worker = Worker(queue, {}, concurrency=1, poll_interval=POLL_SECONDS)
        async with running(worker):
            await wait_for(lambda: queue.claims >= 1)
            assert worker.wakeups is None
