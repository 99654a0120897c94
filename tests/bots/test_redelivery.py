"""bots/redelivery.py: two runs that overlap ask for a failed delivery once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from bots.redelivery import DeliveryLog, FailedDelivery, LogPage, Redelivery, Window
from db.job_kinds import JobKind, RetryableJobError
from db.jobs import JobQueue
from db.periodic import PeriodPayload
from db.store import Store, now

KIND = JobKind("test.redeliver", PeriodPayload)


@dataclass
class SlowLog:
    """One failed delivery; its resend waits until released (or fails once)."""

    name: str = "hook"
    release: asyncio.Event = field(default_factory=asyncio.Event)
    fail_first: bool = False
    resent: list[str] = field(default_factory=list)
    # Set once a resend is under way (waiting for `release`).
    asking: asyncio.Event = field(default_factory=asyncio.Event)

    async def failed_since(self, since: float) -> LogPage:
        failed = FailedDelivery(("guid-1",), "77", now() - 5, "timed out", True, "issue_comment")
        return LogPage(read=1, failed=[failed])

    def may_resend(self) -> bool:
        return True

    async def resend(self, failed: FailedDelivery) -> None:
        if self.fail_first:
            self.fail_first = False
            raise RetryableJobError("GitHub answered 502")
        self.asking.set()
        await self.release.wait()
        self.resent.append(failed.resend_id)


def redelivery(store: Store, log: SlowLog) -> Redelivery:
    async def logs(scope: str | None) -> Sequence[DeliveryLog]:
        return [log]

    return Redelivery(
        store,
        JobQueue(store),
        platform="github",
        title="GitHub",
        kind=KIND,
        interval=60,
        window=Window(log_kept_seconds=3 * 86400, retention_days=7),
        logs=logs,
    )


async def test_overlapping_runs_ask_once(store: Store) -> None:
    log = SlowLog()
    first = asyncio.create_task(redelivery(store, log).run())
    async with asyncio.timeout(10):
        await log.asking.wait()  # the first run is asking, and waits for its answer
    # The second run, while the first one's request is under way, asks for nothing
    # (were it to ask, it would wait for `release` too, and time out).
    async with asyncio.timeout(10):
        second = await redelivery(store, log).run()
    log.release.set()
    runs = [await first, second]

    assert log.resent == ["77"]
    assert sorted(run.requested for run in runs) == [0, 1]


async def test_a_request_that_failed_is_asked_again_next_time(store: Store) -> None:
    log = SlowLog(fail_first=True)
    log.release.set()

    failed = await redelivery(store, log).run()
    again = await redelivery(store, log).run(since=now() - 60)

    assert (failed.requested, again.requested) == (0, 1)
    assert log.resent == ["77"]
