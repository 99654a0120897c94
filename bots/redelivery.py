"""Redelivery of webhooks a platform failed to deliver, shared by GitHub and GitLab.

A relay that is down for ten minutes would otherwise lose every mention of those
minutes: GitHub never redelivers by itself, GitLab retries only briefly. Both keep a
log of their deliveries and resend one on request. So, periodically (db.periodic) and
on demand (`agent-relay github|gitlab redeliver`), a platform's `DeliveryLog` lists
the deliveries that failed since the last look, and each is resent once when:

- it failed for a reason a resend can cure (no connection, a timeout, a 5xx); one
  the relay refused (a 4xx, e.g. a bad signature) would be refused again, and the
  log says so instead;
- the relay's delivery ledger does not hold its id (the relay may have recorded it
  and then failed to answer in time);
- it was not asked for before (a second ledger, `<platform>.redelivery`).

A resent delivery arrives like any other: the same verification, the same ledger.
The look never reaches further back than the platform keeps its log, nor than the
relay's ledger remembers deliveries (RETENTION_DAYS): an older one could be taken
for new.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from db.deliveries import delivery_known, record_delivery
from db.job_kinds import Job, JobHandler, JobKind, PermanentJobError, RetryableJobError
from db.jobs import JobQueue
from db.marks import read_mark, run_record, write_mark
from db.metrics import REDELIVERIES
from db.periodic import PeriodicSeries, PeriodPayload
from db.store import Store, now

log = logging.getLogger(__name__)

HOUR_SECONDS = 3600.0
DAY_SECONDS = 86400.0
# The first look (no earlier one recorded) reaches back this far.
FIRST_LOOK_SECONDS = 6 * HOUR_SECONDS
# Deliveries made while a look runs may be logged after it: the next look starts a
# little before this one did (a delivery seen twice is resent once all the same).
OVERLAP_SECONDS = 60.0


@dataclass(frozen=True)
class FailedDelivery:
    """A delivery whose every attempt failed, as a platform's log reports it."""

    # The ids the relay's ledger may hold it under (a GitHub guid; GitLab's
    # Idempotency-Key and X-Gitlab-Event-UUID).
    ledger_ids: tuple[str, ...]
    # What the platform's resend call takes (the log entry's id).
    resend_id: str
    delivered_at: float
    # The last attempt's outcome as the platform words it ("timed out", "500"...).
    status: str
    # A resend can cure it: no connection, a timeout, a 5xx.
    retryable: bool
    # What it was, for the log ("issue_comment.created").
    what: str


@dataclass(frozen=True)
class LogPage:
    """What a look at a delivery log found: how many deliveries, which of them failed."""

    read: int
    failed: list[FailedDelivery]


class DeliveryLog(Protocol):
    """One platform delivery log: GitHub's app hook, or one GitLab project hook."""

    # Names the log in its mark and in log lines ("github", "gitlab:42:7").
    name: str

    async def failed_since(self, since: float) -> LogPage: ...

    def may_resend(self) -> bool:
        """False once the platform's limit on resends is reached for now."""
        ...

    async def resend(self, failed: FailedDelivery) -> None: ...


@dataclass
class RedeliveryRun:
    at: float
    since: float
    read: int = 0
    failed: int = 0
    requested: int = 0
    in_ledger: int = 0
    not_retried: int = 0
    already_requested: int = 0
    deferred: int = 0
    error: str | None = None
    # The ids (ledger_ids[0]) of the deliveries asked for in this run.
    requested_ids: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"{self.read} deliveries read, {self.failed} failed: {self.requested} redelivered",
            f"{self.in_ledger} already received",
            f"{self.not_retried} refused by the relay (not retried)",
            f"{self.already_requested} asked for before",
        ]
        if self.deferred:
            parts.append(f"{self.deferred} left for the next run (resend limit)")
        return ", ".join(parts)

    def add(self, other: RedeliveryRun) -> None:
        """Count `other` (one log's look) into this run (all of a platform's logs)."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.requested_ids += other.requested_ids
        self.since = min(self.since, other.since)
        self.error = self.error or other.error


_COUNTS = (
    "read",
    "failed",
    "requested",
    "in_ledger",
    "not_retried",
    "already_requested",
    "deferred",
)


@dataclass(frozen=True)
class Window:
    """How far back a platform's looks may reach."""

    # How long the platform keeps its delivery log.
    log_kept_seconds: float
    # RETENTION_DAYS: how long the relay's ledger remembers a delivery (0: for good).
    retention_days: float

    def earliest(self, at: float) -> float:
        reach = self.log_kept_seconds
        if self.retention_days > 0:
            reach = min(reach, self.retention_days * DAY_SECONDS)
        return at - reach


class Redelivery:
    """The redelivery of one platform: its periodic job and its on-demand runs."""

    def __init__(
        self,
        store: Store,
        queue: JobQueue,
        *,
        platform: str,
        title: str,
        kind: JobKind[PeriodPayload],
        interval: float,
        window: Window,
        # The platform's delivery logs; given a scope (a GitLab project), only its.
        logs: Callable[[str | None], Awaitable[Sequence[DeliveryLog]]],
    ) -> None:
        self.store = store
        self.platform = platform
        self.title = title
        self.window = window
        self.logs = logs
        self.series = PeriodicSeries(store, queue, kind, interval)
        self.kind = kind

    def job_handlers(self) -> dict[str, JobHandler]:
        return {self.kind.name: self.handle}

    async def schedule(self) -> int | None:
        return await self.series.schedule()

    async def handle(self, job: Job) -> None:
        await self.series.queue_following(job)
        await self.run()

    async def run(self, *, since: float | None = None, scope: str | None = None) -> RedeliveryRun:
        """Look at every log (of `scope`) since its last look (or `since`), resend
        what failed."""
        at = now()
        total = RedeliveryRun(at=at, since=at)
        try:
            logs = await self.logs(scope)
        except (RetryableJobError, PermanentJobError) as exc:
            total.error = str(exc)
            logs = []
        for delivery_log in logs:
            total.add(await self._look(delivery_log, since))
        for outcome in ("requested", "in_ledger", "not_retried", "already_requested"):
            REDELIVERIES.labels(platform=self.platform, outcome=outcome).inc(
                getattr(total, outcome)
            )
        await write_mark(
            self.store, self.platform + ".redeliver", {"last_run": self._record(total)}
        )
        level = logging.WARNING if total.error else logging.INFO
        log.log(level, "%s redelivery: %s%s", self.platform, total.summary(), _error(total))
        return total

    def _record(self, run: RedeliveryRun) -> dict[str, object]:
        record = run_record(self.title, run)
        record.pop("requested_ids", None)
        return record

    async def _look(self, delivery_log: DeliveryLog, since: float | None) -> RedeliveryRun:
        mark_name = f"redeliver:{delivery_log.name}"
        at = now()
        if since is None:
            mark = await read_mark(self.store, mark_name) or {}
            since = float(mark.get("last_look") or at - FIRST_LOOK_SECONDS)
        run = RedeliveryRun(at=at, since=max(since, self.window.earliest(at)))
        try:
            page = await delivery_log.failed_since(run.since)
        except (RetryableJobError, PermanentJobError) as exc:
            run.error = f"{delivery_log.name}: {exc}"
            return run  # the last look stays where it was: the next run reads it all
        run.read, run.failed = page.read, len(page.failed)
        next_look = at - OVERLAP_SECONDS
        for failed in page.failed:
            if not await self._resend_once(delivery_log, failed, run):
                next_look = min(next_look, failed.delivered_at - 1.0)
        await write_mark(self.store, mark_name, {"last_look": next_look})
        return run

    async def _resend_once(
        self, delivery_log: DeliveryLog, failed: FailedDelivery, run: RedeliveryRun
    ) -> bool:
        """Resend `failed` if it should be; False when it is left for a later run."""
        for ledger_id in failed.ledger_ids:
            if await delivery_known(self.store, self.platform, ledger_id):
                run.in_ledger += 1
                return True
        first_id = failed.ledger_ids[0]
        if not failed.retryable:
            run.not_retried += 1
            log.warning(
                "%s delivery %s (%s) failed with %s: the relay refused it, so it is not"
                " redelivered",
                self.platform,
                first_id,
                failed.what,
                failed.status,
            )
            return True
        asked = f"{self.platform}.redelivery"
        if await delivery_known(self.store, asked, first_id):
            run.already_requested += 1
            return True
        if not delivery_log.may_resend():
            run.deferred += 1
            return False
        try:
            await delivery_log.resend(failed)
        except (RetryableJobError, PermanentJobError) as exc:
            run.error = run.error or f"{delivery_log.name}: {exc}"
            return False
        await record_delivery(self.store, asked, first_id)
        run.requested += 1
        run.requested_ids.append(first_id)
        log.info(
            "%s delivery %s (%s, %s) redelivery requested",
            self.platform,
            first_id,
            failed.what,
            failed.status,
        )
        return True


def _error(run: RedeliveryRun) -> str:
    return f"; stopped early: {run.error}" if run.error else ""
