"""A job that runs once per period across every process sharing the database.

Each run is a job keyed by its period's number (an idempotency key), so however many
processes queue a period's run, it is queued once. A run queues the next period's run
before it does its work, so that a run that keeps failing does not end the series;
start-up queues the current period's run when no run is queued or under way, which
starts the series and revives it if it was ever cut. Retention's pruning, the
reconciliation with the agent-server and the platforms' redelivery checks all run
this way.
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from db.job_kinds import Job, JobKind, JobStatus
from db.jobs import JobQueue
from db.store import Store, now


class PeriodPayload(BaseModel):
    # The number of the period the run belongs to (epoch seconds // period length).
    period: int


class PeriodicSeries:
    """The runs of `kind`, one every `period` seconds."""

    def __init__(
        self, store: Store, queue: JobQueue, kind: JobKind[PeriodPayload], period: float
    ) -> None:
        self.store = store
        self.queue = queue
        self.kind = kind
        self.period = period

    def current_period(self) -> int:
        return math.floor(now() / self.period)

    async def schedule(self) -> int | None:
        """At start-up: queue this period's run unless the series is alive; returns
        the job id when one was queued."""
        alive = await self.store.fetch_one(
            "SELECT id FROM jobs WHERE kind = :kind AND status IN (:queued, :running) LIMIT 1",
            {
                "kind": self.kind.name,
                "queued": JobStatus.QUEUED.value,
                "running": JobStatus.RUNNING.value,
            },
        )
        if alive is not None:
            return None
        return await self.queue_run(self.current_period())

    async def queue_run(self, period_number: int) -> int | None:
        """Queue the run of `period_number`, due when that period starts (None when
        it is queued already)."""
        return await self.queue.enqueue(
            self.kind,
            PeriodPayload(period=period_number),
            idempotency_key=f"{self.kind.name}:{period_number}",
            delay=max(0.0, period_number * self.period - now()),
        )

    async def queue_following(self, job: Job) -> int:
        """From a run's handler, first: queue the next run, and return the period of
        the run at hand. After a stop of several periods the next run is the next
        period's, not each missed one in turn."""
        period = self.kind.payload_of(job).period
        await self.queue_run(max(period, self.current_period()) + 1)
        return period
