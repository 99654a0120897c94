"""Reconciliation: asking the agent-server about conversations that went quiet.

The agent-server keeps its outgoing webhooks in memory: it re-sends a refused batch
until it is accepted, but a restart before then loses it, and with it the stop that
would have answered a thread. So every RECONCILE_INTERVAL_SECONDS a periodic job
(db.periodic) looks at the conversations that have an ACTIVE callback and have sent
nothing for RECONCILE_AFTER_SECONDS, counted from the later of the callback's
creation and the conversation's last event, and asks the agent-server about them in
batches (`GET /api/conversations?ids=`):

- stopped (finished, error, stuck, waiting for input...): the `agent.state_changed`
  job its webhook would have queued is queued, keyed by the conversation, so it runs
  in turn with a late webhook's job; the processors answer once either way (a closed
  callback is skipped, the summary instruction is sent once);
- unknown to the agent-server: a `conversation.lost` job asks once more when it runs
  and closes the callbacks as ERROR with a readable reply, and forgets the thread's
  link, so the next mention starts over;
- running: nothing.

A conversation with a job queued or running under its key (a start being retried, a
state change being handled) is left to that job. An unreachable agent-server ends
the run and changes nothing; the next run tries again. Each run reads a bounded
window of ACTIVE callbacks (from where the last run stopped) and asks about a bounded
number of conversations, so a backlog of any size never holds up the queue.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from agent.client import BATCH_LOOKUP_LIMIT
from agent.events import (
    STATE_CHANGED_JOB,
    STOPPED_STATES,
    AgentStateChangedObservation,
    StateChangedPayload,
    state_for_status,
)
from db.conversation_links import forget_links
from db.job_kinds import Job, JobHandler, JobKind, PermanentJobError, RetryableJobError
from db.logcontext import bind
from db.marks import read_mark, run_record, write_mark
from db.metrics import RECONCILE_RUNS, RECONCILED
from db.periodic import PeriodicSeries, PeriodPayload
from db.store import now
from processors.context import ProcessorContext
from processors.runtime import close_callbacks

log = logging.getLogger(__name__)

RECONCILE_JOB = JobKind("maintenance.reconcile", PeriodPayload)


class LostPayload(BaseModel):
    conversation_id: str


# Close the callbacks of a conversation the agent-server no longer knows.
LOST_JOB = JobKind("conversation.lost", LostPayload)

LOST_TEXT = "The agent-server lost this conversation; mention me again to start over."
# The mark that holds where the walk stopped and what the last run found.
MARK = "reconcile"
TITLE = "Reconciliation with the agent-server"
# ACTIVE callbacks read per run, and conversations asked about per run (ten lookups).
SCAN_LIMIT = 5000
CONVERSATIONS_PER_RUN = 10 * BATCH_LOOKUP_LIMIT


@dataclass
class ReconcileRun:
    """What one run did, as the log line, the metrics and the status page tell it."""

    at: float
    quiet: int = 0
    stopped: int = 0
    lost: int = 0
    running: int = 0
    error: str | None = None

    @property
    def checked(self) -> int:
        return self.stopped + self.lost + self.running

    def summary(self) -> str:
        return (
            f"{self.quiet} quiet conversations: {self.stopped} stopped,"
            f" {self.lost} lost, {self.running} running"
        )


@dataclass(frozen=True)
class _Quiet:
    conversation_id: str
    last_agent_event_kind: str | None


class Reconciler:
    def __init__(
        self,
        context: ProcessorContext,
        *,
        interval: float,
        after: float,
        scan_limit: int = SCAN_LIMIT,
        per_run: int = CONVERSATIONS_PER_RUN,
    ) -> None:
        self.context = context
        self.after = after
        self.scan_limit = scan_limit
        self.per_run = per_run
        self.series = PeriodicSeries(context.store, context.queue, RECONCILE_JOB, interval)

    def job_handlers(self) -> dict[str, JobHandler]:
        return {RECONCILE_JOB.name: self.handle, LOST_JOB.name: self.on_lost}

    async def schedule(self) -> int | None:
        return await self.series.schedule()

    async def handle(self, job: Job) -> None:
        period = await self.series.queue_following(job)
        run = await self.run(period)
        RECONCILE_RUNS.labels(outcome="unreachable" if run.error else "ok").inc()
        for outcome in ("stopped", "lost", "running"):
            RECONCILED.labels(outcome=outcome).inc(getattr(run, outcome))
        if run.error:
            log.warning(
                "reconciliation: the agent-server did not answer (%s); %d of %d quiet"
                " conversations checked, the rest wait for the next run",
                run.error,
                run.checked,
                run.quiet,
            )
        elif run.quiet:
            log.info(
                "reconciliation: %d quiet conversations: %d stopped, %d lost, %d running",
                run.quiet,
                run.stopped,
                run.lost,
                run.running,
            )

    async def run(self, period: int) -> ReconcileRun:
        """One look at the quiet conversations; the cursor moves on only past the
        ones the agent-server answered for."""
        store = self.context.store
        mark = await read_mark(store, MARK) or {}
        quiet, cursor = await self._quiet(int(mark.get("cursor") or 0))
        run = ReconcileRun(at=now(), quiet=len(quiet))
        for start in range(0, len(quiet), BATCH_LOOKUP_LIMIT):
            batch = quiet[start : start + BATCH_LOOKUP_LIMIT]
            try:
                found = await self.context.agent.get_conversations(
                    [q.conversation_id for q in batch]
                )
            except (RetryableJobError, PermanentJobError) as exc:
                run.error = str(exc)
                cursor = int(mark.get("cursor") or 0)
                break
            for conversation, info in zip(batch, found, strict=True):
                await self._act(conversation, info, period, run)
        await write_mark(store, MARK, {"cursor": cursor, "last_run": run_record(TITLE, run)})
        return run

    async def _quiet(self, after_id: int) -> tuple[list[_Quiet], int]:
        """The quiet conversations among the next window of ACTIVE callbacks after
        `after_id`, without those a job is working for; and where the next run goes on."""
        rows = await self.context.store.fetch_all(
            "SELECT c.id, c.conversation_id, c.created_at, a.updated_at AS heard_at,"
            " a.last_agent_event_kind FROM conversation_callbacks c"
            " LEFT JOIN agent_conversations a ON a.conversation_id = c.conversation_id"
            " WHERE c.status = 'ACTIVE' AND c.id > :after ORDER BY c.id LIMIT :scan",
            {"after": after_id, "scan": self.scan_limit},
        )
        # The whole window read: the next run starts over from the first callback
        # once this one reached the end.
        cursor = int(rows[-1]["id"]) if len(rows) == self.scan_limit else 0
        cutoff = now() - self.after
        quiet: dict[str, _Quiet] = {}
        for row in rows:
            if max(float(row["created_at"]), float(row["heard_at"] or 0.0)) > cutoff:
                continue
            cid = str(row["conversation_id"])
            if cid not in quiet and len(quiet) == self.per_run:
                cursor = int(row["id"]) - 1  # this one is the next run's first
                break
            quiet.setdefault(cid, _Quiet(cid, row["last_agent_event_kind"]))
        busy = await self._with_pending_jobs(list(quiet))
        return [q for cid, q in quiet.items() if cid not in busy], cursor

    async def _with_pending_jobs(self, conversation_ids: list[str]) -> set[str]:
        if not conversation_ids:
            return set()
        names = {f"c{index}": cid for index, cid in enumerate(conversation_ids)}
        rows = await self.context.store.fetch_all(
            "SELECT DISTINCT job_key FROM jobs WHERE status IN ('queued', 'running')"
            f" AND job_key IN ({', '.join(':' + name for name in names)})",
            names,
        )
        return {str(row["job_key"]) for row in rows}

    async def _act(
        self, quiet: _Quiet, info: dict[str, Any] | None, period: int, run: ReconcileRun
    ) -> None:
        cid = quiet.conversation_id
        queue = self.context.queue
        if info is None:
            run.lost += 1
            await queue.enqueue(
                LOST_JOB,
                LostPayload(conversation_id=cid),
                key=cid,
                idempotency_key=f"{LOST_JOB.name}:{cid}:{period}",
            )
            return
        status = str(info.get("execution_status"))
        state = state_for_status(status, quiet.last_agent_event_kind)
        if state not in STOPPED_STATES:
            run.running += 1
            return
        run.stopped += 1
        # One job per stop the agent-server reports: its updated_at moves with every
        # event but state updates (openhands-agent-server 1.58.2), so a later run that
        # finds the same stop queues nothing, and a new stop (after the summary
        # instruction, say) is a new job.
        stop = info.get("updated_at") or f"period-{period}"
        observation = AgentStateChangedObservation(
            conversation_id=cid,
            agent_state=state,
            reason="found stopped by reconciliation",
            event_id=f"reconcile-{stop}",
        )
        await queue.enqueue(
            STATE_CHANGED_JOB,
            StateChangedPayload(observation=observation),
            key=cid,
            idempotency_key=f"reconcile:{cid}:{status}:{stop}",
        )
        log.info("reconciliation: conversation %s found %s", cid, state.value)

    async def on_lost(self, job: Job) -> None:
        cid = LOST_JOB.payload_of(job).conversation_id
        bind(conversation=cid)
        # Asked again now that every earlier job of the conversation has run.
        if await self.context.agent.get_conversation(cid) is not None:
            return
        log.warning("the agent-server no longer knows conversation %s", cid)
        async with self.context.store.transaction():
            await close_callbacks(
                self.context,
                cid,
                LOST_TEXT,
                reason="the agent-server no longer knows this conversation",
            )
            # The next mention in the thread starts a new conversation.
            await forget_links(self.context.store, cid)
