"""Retention on real SQLite and real PostgreSQL: what is pruned, what is never
touched, the batches, and the periodic job that schedules itself."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from db.approvals import insert_approval
from db.callbacks import CallbackStatus, ConversationCallback, get_callback, insert_callback
from db.deliveries import record_delivery
from db.job_kinds import Job, JobStatus
from db.jobs import JobQueue
from db.migrations import migrate
from db.repository_choices import PendingChoice, get_choice, hold_choice
from db.retention import (
    DAY_SECONDS,
    PRUNE_JOB,
    PRUNED_PROCESSOR_JSON,
    PrunePayload,
    PruneResult,
    Retention,
    prune,
)
from db.store import Store, now
from relay.worker import Worker
from tests.support.job_kinds import AnyPayload, kind_named

CONVERSATION = "c" * 32
PROCESSOR_JSON = '{"url": "https://receiver.example/hook", "secret": "s3cret"}'
# Long periods, so that no test runs across a period boundary.
PERIOD = 1_000_000.0


@pytest.fixture
def queue(store: Store) -> JobQueue:
    return JobQueue(store)


async def job_in(
    store: Store,
    queue: JobQueue,
    status: JobStatus,
    updated_at: float,
    *,
    idempotency_key: str | None = None,
) -> int:
    job_id = await queue.enqueue(kind_named("echo"), AnyPayload(), idempotency_key=idempotency_key)
    assert job_id is not None
    await store.execute(
        "UPDATE jobs SET status = :status, updated_at = :at WHERE id = :id",
        {"status": status.value, "at": updated_at, "id": job_id},
    )
    return job_id


async def delivery_at(store: Store, delivery_id: str, received_at: float) -> None:
    assert await record_delivery(store, "github", delivery_id)
    await store.execute(
        "UPDATE inbound_deliveries SET received_at = :at WHERE delivery_id = :id",
        {"at": received_at, "id": delivery_id},
    )


async def callback_in(
    store: Store, status: CallbackStatus, updated_at: float, reason: str | None = None
) -> ConversationCallback:
    return await insert_callback(
        store,
        ConversationCallback(
            conversation_id=CONVERSATION,
            status=status,
            processor_type="webhook",
            processor_json=PROCESSOR_JSON,
            status_reason=reason,
            created_at=updated_at - 60,
            updated_at=updated_at,
        ),
    )


async def job_ids(store: Store) -> set[int]:
    return {int(row["id"]) for row in await store.fetch_all("SELECT id FROM jobs")}


async def stored(store: Store, callback: ConversationCallback) -> ConversationCallback:
    assert callback.id is not None
    found = await get_callback(store, callback.id)
    assert found is not None
    return found


async def test_only_finished_rows_older_than_the_cutoff_are_pruned(
    store: Store, queue: JobQueue
) -> None:
    cutoff = now() - 7 * DAY_SECONDS
    old, recent = cutoff - 3600, cutoff + 3600

    old_done = await job_in(store, queue, JobStatus.DONE, old)
    recent_done = await job_in(store, queue, JobStatus.DONE, recent)
    # Never pruned, however old: work still to do, and failures for operators.
    unfinished = [
        await job_in(store, queue, status, old)
        for status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FAILED)
    ]

    await delivery_at(store, "old", old)
    await delivery_at(store, "recent", recent)

    old_completed = await callback_in(store, CallbackStatus.COMPLETED, old)
    old_error = await callback_in(store, CallbackStatus.ERROR, old, "agent state error")
    recent_completed = await callback_in(store, CallbackStatus.COMPLETED, recent)
    old_active = await callback_in(store, CallbackStatus.ACTIVE, old)
    # Closed, but their reply still needs the processor: queued, or failed (which an
    # operator may retry); a delivered reply's callback is pruned.
    reply_queued = await callback_in(store, CallbackStatus.COMPLETED, old)
    reply_failed = await callback_in(store, CallbackStatus.ERROR, old)
    reply_delivered = await callback_in(store, CallbackStatus.COMPLETED, old)
    for callback, status in (
        (reply_queued, JobStatus.QUEUED),
        (reply_failed, JobStatus.FAILED),
        (reply_delivered, JobStatus.DONE),
    ):
        await job_in(store, queue, status, recent, idempotency_key=f"reply:{callback.id}")
    jobs_before = await job_ids(store)

    result = await prune(store, older_than=cutoff)

    assert result == PruneResult(
        jobs=1, deliveries=1, choices=0, approvals=0, callbacks=3, statements=5
    )
    assert await job_ids(store) == jobs_before - {old_done}
    assert {recent_done, *unfinished} <= jobs_before - {old_done}
    deliveries = await store.fetch_all("SELECT delivery_id FROM inbound_deliveries")
    assert deliveries == [{"delivery_id": "recent"}]

    for pruned in (old_completed, old_error, reply_delivered):
        after = await stored(store, pruned)
        assert after.processor_json == PRUNED_PROCESSOR_JSON
        # What the API and operators see is unchanged.
        assert after.public_view() == pruned.public_view()
    for kept in (recent_completed, old_active, reply_queued, reply_failed):
        assert (await stored(store, kept)).processor_json == PROCESSOR_JSON

    again = await prune(store, older_than=cutoff)
    assert again == PruneResult(
        jobs=0, deliveries=0, choices=0, approvals=0, callbacks=0, statements=5
    )


# -- batches ----------------------------------------------------------------------------


async def old_backlog(store: Store, *, jobs: int, deliveries: int, callbacks: int) -> float:
    """Rows a day past a 7-day retention; returns the cutoff that prunes them."""
    cutoff = now() - 7 * DAY_SECONDS
    old = cutoff - DAY_SECONDS
    async with store.transaction():
        for _ in range(jobs):
            await store.execute(
                "INSERT INTO jobs (kind, payload, status, attempts, max_attempts, run_after,"
                " created_at, updated_at) VALUES ('echo', '{}', 'done', 1, 1, :old, :old, :old)",
                {"old": old},
            )
        for n in range(deliveries):
            await store.execute(
                "INSERT INTO inbound_deliveries (source, delivery_id, received_at)"
                " VALUES ('slack', :id, :old)",
                {"id": f"event-{n}", "old": old},
            )
        for _ in range(callbacks):
            await callback_in(store, CallbackStatus.COMPLETED, old)
    return cutoff


class StatementLog:
    """Spies on a Store: each statement, and the transaction it ran in."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entries: list[tuple[str, int | None]] = []
        self.transactions = 0
        self._current: int | None = None
        run_statement, open_transaction = store.fetch_all, store.transaction

        async def fetch_all(query: str, values: Any = None) -> list[dict[str, Any]]:
            rows = await run_statement(query, values)
            self.entries.append((" ".join(query.split()[:3]), self._current))
            return rows

        @asynccontextmanager
        async def transaction() -> AsyncIterator[None]:
            self.transactions += 1
            self._current = self.transactions
            try:
                async with open_transaction():
                    yield
            finally:
                self._current = None

        monkeypatch.setattr(store, "fetch_all", fetch_all)
        monkeypatch.setattr(store, "transaction", transaction)


async def test_a_backlog_is_pruned_in_batches_each_in_a_transaction_of_its_own(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    cutoff = await old_backlog(store, jobs=23, deliveries=10, callbacks=7)
    spy = StatementLog(store, monkeypatch)

    result = await prune(store, older_than=cutoff, batch_size=5, pause=0)

    # 23 jobs: 5+5+5+5+3; 10 deliveries: 5+5, then one that finds none; no repository
    # picks nor approvals: one that finds none each; 7: 5+2.
    assert result == PruneResult(
        jobs=23, deliveries=10, choices=0, approvals=0, callbacks=7, statements=5 + 3 + 1 + 1 + 2
    )
    assert [statement for statement, _ in spy.entries] == (
        ["DELETE FROM jobs"] * 5
        + ["DELETE FROM inbound_deliveries"] * 3
        + ["DELETE FROM repository_choices"]
        + ["DELETE FROM approvals"]
        + ["UPDATE conversation_callbacks SET"] * 2
    )
    assert [transaction for _, transaction in spy.entries] == list(range(1, 13))
    assert await store.fetch_all("SELECT id FROM jobs") == []


async def test_other_writers_get_in_between_batches_on_sqlite(tmp_path: Path) -> None:
    async with Store(f"sqlite:///{tmp_path / 'relay.db'}") as store:
        await migrate(store)
        cutoff = await old_backlog(store, jobs=20, deliveries=0, callbacks=0)
        order: list[str] = []
        first_batch_done = asyncio.Event()
        run_statement = store.fetch_all

        async def fetch_all(query: str, values: Any = None) -> list[dict[str, Any]]:
            rows = await run_statement(query, values)
            order.append("batch")
            first_batch_done.set()
            return rows

        store.fetch_all = fetch_all  # type: ignore[method-assign]

        async def ingest() -> None:
            await first_batch_done.wait()
            assert await record_delivery(store, "slack", "arrives-mid-prune")
            order.append("ingest")

        ingesting = asyncio.create_task(ingest())
        await prune(store, older_than=cutoff, batch_size=5, pause=0)
        await ingesting

    # A webhook arriving mid-prune waited for one batch, not for the whole prune.
    assert order.index("ingest") == 1, order


# -- the periodic job -------------------------------------------------------------------


async def prune_jobs(store: Store) -> list[Job]:
    return [job for job in await JobQueue(store).newest(limit=100) if job.kind == PRUNE_JOB.name]


def current_period() -> int:
    return math.floor(now() / PERIOD)


async def test_start_up_queues_one_run_however_many_processes_start(
    store: Store, queue: JobQueue
) -> None:
    first = Retention(store, queue, retention_days=7, period=PERIOD)
    second = Retention(store, JobQueue(store), retention_days=7, period=PERIOD)

    assert await first.schedule() is not None
    assert await second.schedule() is None
    assert await first.schedule() is None

    [job] = await prune_jobs(store)
    assert job.payload == {"period": current_period()}
    assert job.idempotency_key == f"{PRUNE_JOB.name}:{current_period()}"
    assert job.run_after <= now()  # due at once


async def test_a_run_queues_the_next_period_once_then_prunes(
    store: Store, queue: JobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    retention = Retention(store, queue, retention_days=7, period=PERIOD)
    old_done = await job_in(store, queue, JobStatus.DONE, now() - 8 * DAY_SECONDS)
    await retention.schedule()
    job = await queue.claim()
    assert job is not None and job.kind == PRUNE_JOB.name

    with caplog.at_level(logging.INFO, logger="db.retention"):
        await Worker(queue, {PRUNE_JOB.name: retention.handle}).run_job(job)
        await retention.handle(job)  # the same run again (a retry) queues nothing more

    finished = await queue.get(job.id)
    assert finished is not None and finished.status is JobStatus.DONE
    assert await queue.get(old_done) is None
    queued = [j for j in await prune_jobs(store) if j.status is JobStatus.QUEUED]
    next_period = current_period() + 1
    assert [(j.payload, j.idempotency_key) for j in queued] == [
        ({"period": next_period}, f"{PRUNE_JOB.name}:{next_period}")
    ]
    assert queued[0].run_after == pytest.approx(next_period * PERIOD)
    # One line per run, with its counts.
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retention:")]
    assert len(lines) == 2
    assert "pruned 1 done jobs, 0 deliveries" in lines[0]
    assert "pruned 0 done jobs, 0 deliveries" in lines[1]


async def test_a_run_late_by_many_periods_queues_the_next_one_from_now(
    store: Store, queue: JobQueue
) -> None:
    retention = Retention(store, queue, retention_days=7, period=PERIOD)
    late = await queue.enqueue(PRUNE_JOB, PrunePayload(period=current_period() - 5))
    assert late is not None
    job = await queue.claim()
    assert job is not None

    await retention.handle(job)

    assert await retention.schedule() is None  # the series is alive
    periods = sorted(j.payload["period"] for j in await prune_jobs(store))
    assert periods == [current_period() - 5, current_period() + 1]


async def test_zero_days_disables_retention(store: Store, queue: JobQueue) -> None:
    retention = Retention(store, queue, retention_days=0, period=PERIOD)
    assert await retention.schedule() is None
    assert await prune_jobs(store) == []

    old_done = await job_in(store, queue, JobStatus.DONE, now() - 800 * DAY_SECONDS)
    leftover = await queue.enqueue(PRUNE_JOB, PrunePayload(period=current_period()))
    job = await queue.claim()
    assert job is not None and job.id == leftover
    await retention.handle(job)

    assert await queue.get(old_done) is not None
    assert [j.id for j in await prune_jobs(store)] == [leftover]  # no next run


async def test_mentions_that_waited_for_a_repository_pick_are_pruned_when_old(
    store: Store,
) -> None:
    for delivery_id, created_at in (("old", 1000.0), ("recent", 5000.0)):
        await hold_choice(
            store,
            PendingChoice("slack", delivery_id, "T:C:1.0", "U0ADA", "slack.event", "{}"),
        )
        await store.execute(
            "UPDATE repository_choices SET created_at = :at WHERE delivery_id = :id",
            {"at": created_at, "id": delivery_id},
        )

    result = await prune(store, older_than=2000.0)

    assert result.choices == 1
    assert await get_choice(store, "slack", "old") is None
    assert await get_choice(store, "slack", "recent") is not None


async def test_answered_approval_requests_are_pruned_when_old_and_waiting_ones_never(
    store: Store,
) -> None:
    states = {
        "old-answered": "approved",
        "old-expired": "expired",
        "old-waiting": "pending",
        "old-answering": "answering",
        "recent": "rejected",
    }
    for action_id, state in states.items():
        approval = await insert_approval(store, "c" * 32, 1, action_id, "[]")
        assert approval is not None
        at = 5000.0 if action_id == "recent" else 1000.0
        answered = None if state in ("pending", "answering") else at
        await store.execute(
            "UPDATE approvals SET state = :state, created_at = :at, answered_at = :answered"
            " WHERE id = :id",
            {"state": state, "at": at, "answered": answered, "id": approval.id},
        )

    result = await prune(store, older_than=2000.0)

    assert result.approvals == 2
    left = await store.fetch_all("SELECT action_id FROM approvals ORDER BY action_id")
    assert [row["action_id"] for row in left] == ["old-answering", "old-waiting", "recent"]
