"""Retention: what the relay keeps only for a while, and the job that prunes it.

After RETENTION_DAYS, the periodic `maintenance.prune` job removes:
- done jobs. Their idempotency keys go with them; each key that guards against a
  repeat is either guarded as long by the delivery ledger (event jobs) or by a
  state that never goes back (a reply is queued only while its callback is ACTIVE);
- rows of the delivery ledger (platform deliveries and agent-server event ids). A
  delivery re-sent after that is taken as new, so the setting must stay longer than
  any sender's redelivery window: Slack retries within the hour, GitHub and GitLab
  redeliver recent deliveries by hand, the agent-server retries a batch a few
  seconds apart and re-queues it for its next flush;
- answered approval requests (approved, rejected or expired; db/approvals.py) and
  mentions that waited for a repository pick (db/repository_choices.py);
- the processor settings (`processor_json`, secrets included) of closed callbacks
  whose reply is delivered. The row keeps its status, type, reason and times, so
  `GET /api/callbacks/{id}` still answers.

Kept for good: queued, running and failed jobs (failed ones stay for operators to
read and retry), ACTIVE callbacks and closed ones whose reply job is not done (it
needs the processor to deliver), `conversation_links` (a follow-up weeks later must
reach its conversation; only the workspace clean-up below, which deletes the
conversation, unlinks its threads) and `agent_conversations`. The latter is the memory behind
the agent-server's repeated state: a batch often ends with a `full_state` event that
repeats the execution status, which counts only when it differs from the stored
one. Without the row, a repeated `finished` (after an agent-server restart, say)
would read as a new state change and could answer a follow-up's callback with the
previous turn's answer. It is one short row per conversation.

Deletes go in small batches, each its own short transaction with a pause after it,
so SQLite's single write lock is never held for long and webhooks keep flowing.

The same run then does the composition root's further clean-ups (`also`) with the same
cutoff, so that everything kept "for RETENTION_DAYS" goes by one schedule: the
conversations' working directories and agent conversations
(processors.workspace_cleanup), whose threads then start a new conversation at their
next mention.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from db.callbacks import REPLY_KEY_PREFIX, CallbackStatus
from db.job_kinds import Job, JobKind, JobStatus
from db.jobs import JobQueue
from db.periodic import PeriodicSeries, PeriodPayload
from db.store import Store, now

log = logging.getLogger(__name__)

# The payload of a run: its period's number (db.periodic).
PrunePayload = PeriodPayload

PRUNE_JOB = JobKind("maintenance.prune", PrunePayload)
# A further clean-up of the periodic run, given its cutoff (epoch seconds): what was
# last used before it goes. It bounds its own work per run.
CleanupStep = Callable[[float], Awaitable[object]]
PRUNE_PERIOD_SECONDS = 3600.0
BATCH_SIZE = 500
BATCH_PAUSE_SECONDS = 0.02
DAY_SECONDS = 86400.0
# What a pruned callback's processor_json holds; the index of prunable callbacks
# (migration 3) leaves such rows out.
PRUNED_PROCESSOR_JSON = ""

_DONE = f"'{JobStatus.DONE.value}'"
_CLOSED = f"'{CallbackStatus.COMPLETED.value}', '{CallbackStatus.ERROR.value}'"

# Each statement takes at most :batch rows older than :cutoff and returns one row per
# row it changed. The literals match the partial indexes' predicates (migration 3),
# which SQLite's planner needs to see verbatim to use them.
_PRUNE_STATEMENTS = {
    "jobs": (
        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs"
        f" WHERE status = {_DONE} AND updated_at < :cutoff LIMIT :batch) RETURNING id"
    ),
    "deliveries": (
        "DELETE FROM inbound_deliveries WHERE (source, delivery_id) IN"
        " (SELECT source, delivery_id FROM inbound_deliveries WHERE received_at < :cutoff"
        " LIMIT :batch) RETURNING source"
    ),
    # Mentions that waited for a repository pick (picked, or abandoned) and the
    # channels' repositories stay: only the first kind piles up.
    "choices": (
        "DELETE FROM repository_choices WHERE (platform, delivery_id) IN"
        " (SELECT platform, delivery_id FROM repository_choices WHERE created_at < :cutoff"
        " LIMIT :batch) RETURNING platform"
    ),
    # Answered approval requests (approved, rejected, expired): a pending one, or one
    # whose answer is on its way to the agent, stays whatever its age.
    "approvals": (
        "DELETE FROM approvals WHERE id IN (SELECT id FROM approvals"
        " WHERE state IN ('approved', 'rejected', 'expired')"
        " AND COALESCE(answered_at, created_at) < :cutoff LIMIT :batch) RETURNING id"
    ),
    # While a callback's reply job is not done, its processor is still needed.
    "callbacks": (
        f"UPDATE conversation_callbacks SET processor_json = '{PRUNED_PROCESSOR_JSON}'"
        " WHERE id IN (SELECT cb.id FROM conversation_callbacks cb"
        f" WHERE cb.processor_json <> '{PRUNED_PROCESSOR_JSON}'"
        f" AND cb.status IN ({_CLOSED}) AND cb.updated_at < :cutoff"
        " AND NOT EXISTS (SELECT 1 FROM jobs j"
        f"  WHERE j.idempotency_key = '{REPLY_KEY_PREFIX}' || CAST(cb.id AS TEXT)"
        f"  AND j.status <> {_DONE}) LIMIT :batch) RETURNING id"
    ),
}


@dataclass(frozen=True)
class PruneResult:
    jobs: int
    deliveries: int
    choices: int
    approvals: int
    callbacks: int
    statements: int


async def prune(
    store: Store,
    *,
    older_than: float,
    batch_size: int = BATCH_SIZE,
    pause: float = BATCH_PAUSE_SECONDS,
) -> PruneResult:
    """Remove (or empty) what is older than the epoch time `older_than`, in batches."""
    counts: dict[str, int] = {}
    statements = 0
    for table, statement in _PRUNE_STATEMENTS.items():
        counts[table] = 0
        while True:
            async with store.transaction():
                rows = await store.fetch_all(statement, {"cutoff": older_than, "batch": batch_size})
            statements += 1
            counts[table] += len(rows)
            if len(rows) < batch_size:
                break
            # Let other writers in between batches.
            await asyncio.sleep(pause)
    return PruneResult(statements=statements, **counts)


class Retention:
    """The `maintenance.prune` job: one run per period across all processes
    (db.periodic)."""

    def __init__(
        self,
        store: Store,
        queue: JobQueue,
        *,
        retention_days: float,
        period: float = PRUNE_PERIOD_SECONDS,
        batch_size: int = BATCH_SIZE,
        pause: float = BATCH_PAUSE_SECONDS,
        also: Sequence[CleanupStep] = (),
    ) -> None:
        self.store = store
        self.queue = queue
        self.retention_days = retention_days
        self.period = period
        self.batch_size = batch_size
        self.pause = pause
        self.also = tuple(also)
        self.series = PeriodicSeries(store, queue, PRUNE_JOB, period)

    @property
    def enabled(self) -> bool:
        return self.retention_days > 0

    async def schedule(self) -> int | None:
        """At start-up: queue this period's run unless the series is alive; returns
        the job id when one was queued."""
        if not self.enabled:
            return None
        return await self.series.schedule()

    async def handle(self, job: Job) -> None:
        if not self.enabled:
            log.info("retention: RETENTION_DAYS=0, nothing pruned and no next run")
            return
        await self.series.queue_following(job)
        started = time.monotonic()
        cutoff = now() - self.retention_days * DAY_SECONDS
        result = await prune(
            self.store,
            older_than=cutoff,
            batch_size=self.batch_size,
            pause=self.pause,
        )
        log.info(
            "retention: pruned %d done jobs, %d deliveries, %d repository picks, %d"
            " approval requests and the processor settings of %d closed callbacks older"
            " than %g days"
            " (%d statements, %.2f s)",
            result.jobs,
            result.deliveries,
            result.choices,
            result.approvals,
            result.callbacks,
            self.retention_days,
            result.statements,
            time.monotonic() - started,
        )
        for step in self.also:
            await step(cutoff)
