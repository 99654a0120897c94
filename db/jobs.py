"""The durable job queue (and outbox) that lives in the application database.

Webhooks are answered once their work is recorded here; workers in any process
claim jobs with a lease, so a worker that dies mid-job is replaced when its lease
runs out. Jobs that share a key run one at a time, in the order they were queued:
the key is the conversation id, and a conversation's state changes must be handled
in order.

Hand-written rather than a library: the queue must enqueue inside the caller's
transaction on both SQLite and PostgreSQL through the Store, which none of the
maintained Python job queues supports (they bring their own broker or driver).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Sequence
from typing import Any

from db.job_kinds import (
    Job,
    JobKind,
    JobStatus,
    P,
)
from db.store import Store, now
from db.wakeups import notifying

_COLUMNS = (
    "id, kind, payload, job_key, status, attempts, max_attempts, run_after, lease_token,"
    " lease_until, last_error, idempotency_key, created_at, updated_at"
)
_MAX_ERROR_CHARS = 2000

# A job may be claimed when it is due (or its lease ran out) and its key is free:
# no other job of the key is running (for a reclaim: running under a live lease),
# and no job of the key queued before it is still waiting. So jobs of one key run
# one at a time and in queue order. Parameter: :now.
#
# Queued jobs and lost leases are looked for apart, each through a partial index
# (ix_jobs_queued, ix_jobs_leases): with both in one OR, the databases sort every
# due job (checking each one's key) to take the first; apart, they walk the index in
# order and stop at the first free key. The statuses are literals, not parameters,
# because a planner uses a partial index only when the query visibly implies its
# WHERE.
_QUEUED_CLAIMABLE = (
    "j.status = 'queued' AND j.run_after <= :now"
    " AND (j.job_key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs other"
    "  WHERE other.job_key = j.job_key AND other.id <> j.id AND ("
    "   other.status = 'running' OR (other.status = 'queued' AND other.id < j.id))))"
)
_LEASE_LOST = (
    "j.status = 'running' AND j.lease_until < :now"
    " AND (j.job_key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs other"
    "  WHERE other.job_key = j.job_key AND other.id <> j.id"
    "   AND other.status = 'running' AND other.lease_until >= :now))"
)
_CLAIMABLE = f"(({_QUEUED_CLAIMABLE}) OR ({_LEASE_LOST}))"
# How often a worker looks for jobs whose worker died (their leases ran out). Leases
# last a minute; looking on every claim would cost a query per job.
LOST_LEASE_CHECK_SECONDS = 1.0


def backoff_delay(attempts: int, *, base: float, cap: float) -> float:
    """Exponential backoff with jitter: between half and all of base * 2^(attempts-1)."""
    ceiling = min(cap, base * 2 ** max(attempts - 1, 0))
    return random.uniform(ceiling / 2, ceiling)


class JobQueue:
    """The defaults retry a failing job for about half an hour to an hour (12 attempts,
    delays doubling from 2 s, capped at 30 min) before it is failed for good."""

    def __init__(
        self,
        store: Store,
        *,
        lease_seconds: float = 60.0,
        max_attempts: int = 12,
        backoff_base: float = 2.0,
        backoff_cap: float = 1800.0,
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._next_lost_lease_check = 0.0
        # Set once a job that may run now is committed, so that in-process workers
        # claim it at once instead of at their next poll. On PostgreSQL the same
        # statements also notify other processes (db.wakeups), whose listeners set
        # their own queue's event.
        self.wakeup = asyncio.Event()

    async def enqueue(
        self,
        kind: JobKind[P],
        payload: P,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        delay: float = 0.0,
        max_attempts: int | None = None,
    ) -> int | None:
        """Queue a job; returns its id, or None when the idempotency key was seen before.

        Runs in the caller's transaction when there is one, so the job exists
        exactly when the caller's other writes do. `payload` is an instance of
        exactly `kind`'s model (JobKind.encode says how it is stored); a VerbatimJson
        field is stored as its text: a handler reads back the document it holds.
        """
        encoded = kind.encode(payload)
        stamp = now()
        runnable_now = delay <= 0
        row = await self.store.fetch_one(
            self._announced(
                "INSERT INTO jobs (kind, payload, job_key, idempotency_key, status, attempts,"
                " max_attempts, run_after, created_at, updated_at) VALUES (:kind, :payload,"
                " :key, :idempotency_key, :status, 0, :max_attempts, :run_after, :now, :now)"
                " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                runnable_now,
            ),
            {
                "kind": kind.name,
                "payload": encoded,
                "key": key,
                "idempotency_key": idempotency_key,
                "status": JobStatus.QUEUED.value,
                "max_attempts": max_attempts or self.max_attempts,
                "run_after": stamp + delay,
                "now": stamp,
            },
        )
        if row is None:
            return None
        if runnable_now:
            # A delayed job is found by polling when it falls due; waking workers
            # for it now would only make them look for nothing.
            self._wake_after_commit()
        return int(row["id"])

    def _announced(self, statement: str, runnable_now: bool = True) -> str:
        """On PostgreSQL, `statement` made to notify other processes' workers of the
        job it returns; PostgreSQL sends the notification when the caller commits."""
        return notifying(statement) if runnable_now and not self.store.is_sqlite else statement

    def _wake_after_commit(self) -> None:
        # Inside the caller's transaction the job is not visible to the workers'
        # connections yet: a worker woken now would find nothing and then sleep
        # until its next poll.
        self.store.after_commit(self.wakeup.set)

    async def claim(self) -> Job | None:
        """Take the next runnable job (or one whose lease ran out) and lease it to the caller."""
        jobs = await self.claim_batch(1)
        return jobs[0] if jobs else None

    async def claim_batch(self, limit: int) -> list[Job]:
        """Lease up to `limit` runnable jobs to the caller, in claim order."""
        _, jobs = await self.complete_and_claim((), limit)
        return jobs

    async def complete_and_claim(
        self, completed: Sequence[Job], limit: int
    ) -> tuple[set[int], list[Job]]:
        """Record the `completed` jobs as done and lease up to `limit` new ones, in one
        transaction; returns the ids recorded done (the others' leases were lost) and
        the jobs leased, in claim order.

        A worker records what its slots finished and takes work for every free slot
        at once: on PostgreSQL each transaction costs a WAL flush and round trips,
        which is most of what a short job costs. Only the oldest queued job of a key
        is ever claimable, so a batch never holds two jobs of one key.
        """
        stamp = now()
        look_for_lost_leases = stamp >= self._next_lost_lease_check
        if look_for_lost_leases:
            self._next_lost_lease_check = stamp + LOST_LEASE_CHECK_SECONDS
        if self.store.is_sqlite and not completed:
            # Each claim is one UPDATE statement, atomic by itself.
            return set(), await self._claim(stamp, limit, look_for_lost_leases)
        async with self.store.transaction():
            done = await self._complete_all(completed, stamp) if completed else set()
            jobs = await self._claim(stamp, limit, look_for_lost_leases)
        return done, jobs

    async def _claim(self, stamp: float, limit: int, look_for_lost_leases: bool) -> list[Job]:
        jobs: list[Job] = []
        if look_for_lost_leases and limit > 0:
            jobs += await self._claim_where(_LEASE_LOST, "j.lease_until, j.id", stamp, 1)
        if len(jobs) < limit:
            jobs += await self._claim_where(
                _QUEUED_CLAIMABLE, "j.run_after, j.id", stamp, limit - len(jobs)
            )
        return jobs

    async def _complete_all(self, jobs: Sequence[Job], stamp: float) -> set[int]:
        """Mark `jobs` done where their lease is still theirs; the ids that were."""
        if self.store.is_sqlite:
            return {job.id for job in jobs if await self.complete(job)}
        rows = await self.store.fetch_all(
            "UPDATE jobs SET status = 'done', lease_token = NULL, lease_until = NULL,"
            " updated_at = :now FROM unnest(CAST(:ids AS bigint[]), CAST(:tokens AS text[]))"
            " AS finished(id, token)"
            " WHERE jobs.id = finished.id AND jobs.lease_token = finished.token"
            " RETURNING jobs.id",
            {
                "now": stamp,
                "ids": [job.id for job in jobs],
                "tokens": [job.lease_token for job in jobs],
            },
        )
        return {int(row["id"]) for row in rows}

    async def _claim_where(self, claimable: str, order: str, stamp: float, limit: int) -> list[Job]:
        """Lease up to `limit` jobs matching `claimable`; on PostgreSQL, inside the
        caller's transaction (the keys' advisory locks last until it ends)."""
        values: dict[str, Any] = {"now": stamp, "limit": limit}
        if self.store.is_sqlite:
            # One UPDATE statement holds SQLite's single write lock from its read to
            # its write, so concurrent claims are already serialised.
            return await self._lease(
                f"IN (SELECT j.id FROM jobs j WHERE {claimable} ORDER BY {order} LIMIT :limit)",
                values,
            )
        # A few spare candidates: some of their keys may be taken by another
        # worker's claim in flight.
        candidates = await self.store.fetch_all(
            f"SELECT j.id, j.job_key FROM jobs j WHERE {claimable}"
            f" ORDER BY {order} LIMIT :scan FOR UPDATE SKIP LOCKED",
            {"now": stamp, "scan": limit + 4},
        )
        keys = sorted({row["job_key"] for row in candidates if row["job_key"] is not None})
        locked = set(await self._lock_keys(keys)) if keys else set()
        chosen = [
            row["id"] for row in candidates if row["job_key"] is None or row["job_key"] in locked
        ][:limit]
        if not chosen:
            return []
        # The candidates were chosen on a snapshot in which another worker's claim
        # of the same key may not be visible yet. This UPDATE is a new statement, so
        # its snapshot, taken after the keys' locks, sees every committed claim: it
        # checks the keys again as it leases.
        return await self._lease(
            "= ANY(:ids) AND (job_key IS NULL OR id IN (SELECT j.id FROM jobs j"
            f" WHERE j.id = ANY(:ids) AND {_CLAIMABLE}))",
            {"now": stamp, "ids": chosen},
        )

    async def _lock_keys(self, keys: list[str]) -> list[str]:
        """PostgreSQL: claims of one key take turns (each lock lasts to the end of the
        claiming transaction); returns the keys no other claim holds now."""
        rows = await self.store.fetch_all(
            "SELECT key FROM unnest(CAST(:keys AS text[])) AS key"
            " WHERE pg_try_advisory_xact_lock(hashtext(key))",
            {"keys": keys},
        )
        return [row["key"] for row in rows]

    async def _lease(self, which: str, values: dict[str, Any]) -> list[Job]:
        """Lease the jobs whose id is `which` (an SQL condition on id over `values`,
        which has :now), in claim order."""
        rows = await self.store.fetch_all(
            "UPDATE jobs SET status = :running, attempts = attempts + 1, lease_token = :token,"
            f" lease_until = :lease_until, updated_at = :now WHERE id {which}"
            f" RETURNING {_COLUMNS}",
            {
                **values,
                "running": JobStatus.RUNNING.value,
                # One token for the batch: the fence is the pair (id, token).
                "token": uuid.uuid4().hex,
                "lease_until": values["now"] + self.lease_seconds,
            },
        )
        # RETURNING follows no ORDER BY.
        return sorted(map(Job.from_row, rows), key=lambda job: (job.run_after, job.id))

    async def extend_lease(self, job: Job) -> bool:
        """Keep a long job's lease; False means the lease was lost to another worker."""
        return await self._update_leased(
            job, "lease_until = :lease_until", {"lease_until": now() + self.lease_seconds}
        )

    async def complete(self, job: Job) -> bool:
        # No wakeup: the next job of this key (the one completing a job can unblock)
        # is claimed by the same worker slot, which looks for work again at once.
        return await self._update_leased(
            job,
            "status = :done, lease_token = NULL, lease_until = NULL",
            {"done": JobStatus.DONE.value},
        )

    async def fail(
        self, job: Job, error: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> JobStatus | None:
        """Record a failed attempt: back to the queue with a delay, or failed for good.

        Returns the status recorded, or None when the lease was lost (nothing recorded).
        """
        give_up = permanent or job.attempts >= job.max_attempts
        if give_up:
            status, run_after = JobStatus.FAILED, job.run_after
        else:
            delay = (
                min(retry_after, self.backoff_cap)
                if retry_after is not None
                else backoff_delay(job.attempts, base=self.backoff_base, cap=self.backoff_cap)
            )
            status, run_after = JobStatus.QUEUED, now() + delay
        recorded = await self._update_leased(
            job,
            "status = :status, run_after = :run_after, last_error = :error,"
            " lease_token = NULL, lease_until = NULL",
            {"status": status.value, "run_after": run_after, "error": error[:_MAX_ERROR_CHARS]},
        )
        return status if recorded else None

    async def _update_leased(self, job: Job, assignments: str, values: dict[str, Any]) -> bool:
        # The lease token fences a worker whose lease expired and was taken over:
        # its late writes match no row.
        row = await self.store.fetch_one(
            f"UPDATE jobs SET {assignments}, updated_at = :now"
            " WHERE id = :id AND lease_token = :token RETURNING id",
            {**values, "now": now(), "id": job.id, "token": job.lease_token},
        )
        return row is not None

    async def retry(self, job_id: int) -> bool:
        """Put a failed job back in the queue with a fresh set of attempts."""
        row = await self.store.fetch_one(
            self._announced(
                "UPDATE jobs SET status = :queued, attempts = 0, run_after = :now,"
                " updated_at = :now WHERE id = :id AND status = :failed RETURNING id"
            ),
            {
                "queued": JobStatus.QUEUED.value,
                "failed": JobStatus.FAILED.value,
                "now": now(),
                "id": job_id,
            },
        )
        if row is not None:
            self._wake_after_commit()
        return row is not None

    async def get(self, job_id: int) -> Job | None:
        row = await self.store.fetch_one(
            f"SELECT {_COLUMNS} FROM jobs WHERE id = :id", {"id": job_id}
        )
        return None if row is None else Job.from_row(row)

    async def newest(self, *, status: JobStatus | None = None, limit: int = 50) -> list[Job]:
        """The latest `limit` jobs, newest first (only those in `status`, if given)."""
        where, values = "", dict[str, Any](limit=limit)
        if status is not None:
            where, values["status"] = " WHERE status = :status", status.value
        rows = await self.store.fetch_all(
            f"SELECT {_COLUMNS} FROM jobs{where} ORDER BY id DESC LIMIT :limit", values
        )
        return [Job.from_row(row) for row in rows]

    async def due_count(self) -> int:
        """Queued jobs whose time has come: the backlog workers should be eating now
        (retries waiting out their back-off, and scheduled maintenance, are not)."""
        row = await self.store.fetch_one(
            "SELECT COUNT(*) AS n FROM jobs WHERE status = :queued AND run_after <= :now",
            {"queued": JobStatus.QUEUED.value, "now": now()},
        )
        return int(row["n"]) if row else 0

    async def counts(self) -> dict[str, int]:
        rows = await self.store.fetch_all("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
        counts = {status.value: 0 for status in JobStatus}
        counts.update({row["status"]: int(row["n"]) for row in rows})
        return counts
