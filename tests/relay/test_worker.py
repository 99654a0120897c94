"""relay.worker.Worker with recording handlers, on real SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from db.job_kinds import Job, JobStatus, PermanentJobError, RetryableJobError
from db.jobs import JobQueue
from db.store import Store, now
from relay.worker import Worker
from tests.support.job_kinds import AnyPayload, kind_named
from tests.support.waiting import wait_for

SHORT_LEASE_SECONDS = 0.3


class RecordingHandler:
    """A job handler that records the jobs it ran and raises `error` when given one."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.seen: list[Job] = []

    async def __call__(self, job: Job) -> None:
        self.seen.append(job)
        if self.error is not None:
            raise self.error

    @property
    def job_ids(self) -> list[int]:
        return [job.id for job in self.seen]


class BlockingHandler:
    """A job handler that runs until the test releases it, then returns or raises."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.error: Exception | None = None  # raised once released, when set

    async def __call__(self, job: Job) -> None:
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error


@pytest.fixture
def queue(store: Store) -> JobQueue:
    return JobQueue(store)


async def enqueue(queue: JobQueue, kind: str, payload: dict[str, Any], **options: Any) -> int:
    job_id = await queue.enqueue(kind_named(kind), AnyPayload(**payload), **options)
    assert job_id is not None
    return job_id


async def claim_one(queue: JobQueue) -> Job:
    job = await queue.claim()
    assert job is not None, "expected a claimable job"
    return job


async def fetch(queue: JobQueue, job_id: int) -> Job:
    job = await queue.get(job_id)
    assert job is not None, f"job {job_id} does not exist"
    return job


async def test_a_successful_job_ends_done(queue: JobQueue) -> None:
    handler = RecordingHandler()
    worker = Worker(queue, {"echo": handler})
    job_id = await enqueue(queue, "echo", {"text": "hi"})

    await worker.run_job(await claim_one(queue))

    assert handler.job_ids == [job_id]
    assert handler.seen[0].payload == {"text": "hi"}
    stored = await fetch(queue, job_id)
    assert stored.status is JobStatus.DONE
    assert stored.last_error is None
    assert worker.outcomes == {"echo:done": 1}


async def test_a_retryable_error_requeues_with_its_retry_after(queue: JobQueue) -> None:
    handler = RecordingHandler(RetryableJobError("429 slow down", retry_after=30))
    worker = Worker(queue, {"echo": handler})
    job_id = await enqueue(queue, "echo", {})

    before = now()
    await worker.run_job(await claim_one(queue))
    after = now()

    stored = await fetch(queue, job_id)
    assert stored.status is JobStatus.QUEUED
    assert before + 30 <= stored.run_after <= after + 30
    assert stored.last_error == "429 slow down"
    assert stored.attempts == 1
    assert worker.outcomes == {"echo:queued": 1}


async def test_a_permanent_error_fails_the_job_at_once(queue: JobQueue) -> None:
    handler = RecordingHandler(PermanentJobError("repository not found"))
    worker = Worker(queue, {"echo": handler})
    job_id = await enqueue(queue, "echo", {})

    await worker.run_job(await claim_one(queue))

    stored = await fetch(queue, job_id)
    assert stored.status is JobStatus.FAILED
    assert stored.attempts == 1
    assert stored.last_error == "repository not found"
    assert worker.outcomes == {"echo:failed": 1}


async def test_an_unexpected_exception_is_retried_with_its_type_and_message(
    queue: JobQueue,
) -> None:
    handler = RecordingHandler(KeyError("channel"))
    worker = Worker(queue, {"echo": handler})
    job_id = await enqueue(queue, "echo", {})

    before = now()
    await worker.run_job(await claim_one(queue))

    stored = await fetch(queue, job_id)
    assert stored.status is JobStatus.QUEUED
    assert stored.last_error == "KeyError: 'channel'"
    assert stored.run_after > before
    assert await queue.claim() is None  # backing off, not hot-looping


async def test_an_unexpected_exception_on_the_last_attempt_fails_the_job(
    queue: JobQueue,
) -> None:
    worker = Worker(queue, {"echo": RecordingHandler(ValueError("bad payload"))})
    job_id = await enqueue(queue, "echo", {}, max_attempts=1)

    await worker.run_job(await claim_one(queue))

    stored = await fetch(queue, job_id)
    assert stored.status is JobStatus.FAILED
    assert stored.last_error == "ValueError: bad payload"


async def test_a_job_of_an_unknown_kind_fails_permanently(queue: JobQueue) -> None:
    handler = RecordingHandler()
    worker = Worker(queue, {"echo": handler})
    job_id = await enqueue(queue, "mystery", {})

    await worker.run_job(await claim_one(queue))

    assert handler.seen == []
    stored = await fetch(queue, job_id)
    assert stored.status is JobStatus.FAILED
    assert stored.attempts == 1
    assert stored.last_error is not None and "mystery" in stored.last_error


async def test_a_job_reclaimed_after_its_last_attempt_expired_fails_without_running(
    store: Store,
) -> None:
    queue = JobQueue(store, lease_seconds=SHORT_LEASE_SECONDS)
    handler = RecordingHandler()
    worker = Worker(queue, {"echo": handler})
    job_id = await enqueue(queue, "echo", {}, max_attempts=1)
    await claim_one(queue)  # its holder dies without a word

    reclaimed = await wait_for(queue.claim, timeout=5, message="the lease never expired")
    await worker.run_job(reclaimed)

    assert handler.seen == []
    stored = await fetch(queue, job_id)
    assert stored.status is JobStatus.FAILED
    assert stored.attempts == 2
    assert stored.last_error is not None and "lease" in stored.last_error


async def test_a_long_job_keeps_its_lease_while_its_handler_runs(store: Store) -> None:
    queue = JobQueue(store, lease_seconds=SHORT_LEASE_SECONDS)
    handler = BlockingHandler()
    worker = Worker(queue, {"slow": handler})
    job_id = await enqueue(queue, "slow", {})
    job = await claim_one(queue)
    assert job.lease_until is not None
    first_lease_until = job.lease_until

    running = asyncio.create_task(worker.run_job(job))
    try:
        await asyncio.wait_for(handler.started.wait(), timeout=5)

        async def lease_renewed_past_its_first_expiry() -> bool:
            lease_until = (await fetch(queue, job.id)).lease_until
            return lease_until is not None and lease_until > first_lease_until + SHORT_LEASE_SECONDS

        await wait_for(lease_renewed_past_its_first_expiry, timeout=5, message="lease not renewed")
        assert now() > first_lease_until  # the original lease would have run out by now
        assert await queue.claim() is None
    finally:
        handler.release.set()
        await asyncio.wait_for(running, timeout=5)

    stored = await fetch(queue, job_id)
    assert stored.status is JobStatus.DONE
    assert stored.attempts == 1


async def take_over_lease(store: Store, job_id: int) -> None:
    """What another worker's claim does once this worker's lease has run out."""
    await store.execute(
        "UPDATE jobs SET lease_token = 'other-worker', attempts = attempts + 1 WHERE id = :id",
        {"id": job_id},
    )


@pytest.mark.parametrize("error", [None, RetryableJobError("busy"), ValueError("boom")])
async def test_a_worker_that_lost_its_lease_records_nothing_and_reports_lease_lost(
    queue: JobQueue, error: Exception | None
) -> None:
    handler = BlockingHandler()
    worker = Worker(queue, {"slow": handler})
    await enqueue(queue, "slow", {})
    job = await claim_one(queue)
    running = asyncio.create_task(worker.run_job(job))
    await asyncio.wait_for(handler.started.wait(), timeout=5)
    await take_over_lease(queue.store, job.id)
    taken_over = await fetch(queue, job.id)

    handler.error = error
    handler.release.set()
    await asyncio.wait_for(running, timeout=5)

    assert await fetch(queue, job.id) == taken_over
    assert worker.outcomes == {"slow:lease_lost": 1}


async def test_a_lost_lease_stops_the_handler_it_was_renewed_for(store: Store) -> None:
    queue = JobQueue(store, lease_seconds=SHORT_LEASE_SECONDS)
    handler = BlockingHandler()
    worker = Worker(queue, {"slow": handler})
    await enqueue(queue, "slow", {})
    job = await claim_one(queue)
    running = asyncio.create_task(worker.run_job(job))
    await asyncio.wait_for(handler.started.wait(), timeout=5)

    await take_over_lease(store, job.id)

    # The next renewal finds the lease gone and stops the handler, which the test
    # never releases: run_job returns only because the handler was cancelled.
    await asyncio.wait_for(running, timeout=5)
    assert worker.outcomes == {"slow:lease_lost": 1}


class FlakyLeaseQueue(JobQueue):
    """A queue whose first lease renewal fails like a dropped database connection."""

    renewals_failed = 0

    async def extend_lease(self, job: Job) -> bool:
        if self.renewals_failed == 0:
            self.renewals_failed += 1
            raise OSError("connection reset")
        return await super().extend_lease(job)


async def test_a_failed_lease_renewal_neither_kills_the_worker_nor_loses_the_lease(
    store: Store,
) -> None:
    queue = FlakyLeaseQueue(store, lease_seconds=SHORT_LEASE_SECONDS)
    handler = BlockingHandler()
    worker = Worker(queue, {"slow": handler})
    job_id = await enqueue(queue, "slow", {})
    job = await claim_one(queue)
    running = asyncio.create_task(worker.run_job(job))
    await asyncio.wait_for(handler.started.wait(), timeout=5)

    async def renewed_after_the_failure() -> bool:
        lease_until = (await fetch(queue, job_id)).lease_until
        assert job.lease_until is not None
        return (
            queue.renewals_failed == 1
            and lease_until is not None
            and (lease_until > job.lease_until)
        )

    await wait_for(renewed_after_the_failure, timeout=5, message="lease not renewed")
    handler.release.set()
    await asyncio.wait_for(running, timeout=5)

    assert (await fetch(queue, job_id)).status is JobStatus.DONE
    assert worker.outcomes == {"slow:done": 1}


async def test_run_processes_enqueued_jobs_and_returns_when_stopped(queue: JobQueue) -> None:
    handler = RecordingHandler()
    # A long poll interval: jobs enqueued in this process must wake the worker up.
    worker = Worker(queue, {"echo": handler}, concurrency=3, poll_interval=30)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        job_ids = [await enqueue(queue, "echo", {"n": n}) for n in range(10)]
        keyed_ids = [await enqueue(queue, "echo", {"n": n}, key="conv-1") for n in range(5)]

        async def all_done() -> bool:
            return (await queue.counts())["done"] == len(job_ids) + len(keyed_ids)

        await wait_for(all_done, timeout=10, message=lambda: f"ran only {handler.job_ids}")
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=5)

    assert sorted(handler.job_ids) == sorted(job_ids + keyed_ids)
    assert [job_id for job_id in handler.job_ids if job_id in keyed_ids] == keyed_ids
    assert worker.outcomes == {"echo:done": 15}


async def test_run_returns_promptly_when_stopped_while_idle(queue: JobQueue) -> None:
    handler = RecordingHandler()
    worker = Worker(queue, {"echo": handler}, concurrency=2, poll_interval=30)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    job_id = await enqueue(queue, "echo", {})
    # Once the one job is done every slot is idle, waiting out its 30 s poll interval.
    await wait_for(lambda: handler.job_ids == [job_id], timeout=5, message="job never ran")

    stop.set()

    await asyncio.wait_for(running, timeout=2)
