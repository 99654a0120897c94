"""GitHub's side of redelivery (bots/redelivery.py): the GitHub App's delivery log.

`GET /app/hook/deliveries` lists every attempt (newest first; a redelivery is an
attempt of its own with `redelivery: true` and the original's `guid`), kept three
days. A delivery failed when none of its guid's attempts succeeded; a failure GitHub
reports as status code 0 (no connection, a timeout) or a 5xx is worth a resend
(`POST /app/hook/deliveries/{id}/attempts`), a 4xx is the relay refusing it. The
relay's ledger holds GitHub deliveries under their guid (X-GitHub-Delivery).
"""

from __future__ import annotations

from typing import Any

from bots.github import PLATFORM
from bots.github.api import GithubApi, GithubHookDeliveries, epoch_of
from bots.redelivery import DAY_SECONDS, FailedDelivery, LogPage, Redelivery, Window
from db.job_kinds import JobKind
from db.jobs import JobQueue
from db.periodic import PeriodPayload
from db.store import Store

GITHUB_REDELIVER_JOB = JobKind("github.redeliver", PeriodPayload)
# GitHub keeps an app's deliveries for three days.
LOG_KEPT_SECONDS = 3 * DAY_SECONDS
TITLE = "GitHub redelivery"


def _succeeded(attempt: dict[str, Any]) -> bool:
    code = int(attempt.get("status_code") or 0)
    return attempt.get("status") == "OK" or 200 <= code < 300


class GithubDeliveryLog:
    name = PLATFORM

    def __init__(self, api: GithubApi) -> None:
        self._deliveries = GithubHookDeliveries(api)

    async def failed_since(self, since: float) -> LogPage:
        by_guid: dict[str, list[dict[str, Any]]] = {}
        for attempt in await self._deliveries.since(since):
            by_guid.setdefault(str(attempt.get("guid") or attempt.get("id")), []).append(attempt)
        failed = [
            _failed(guid, attempts)
            for guid, attempts in by_guid.items()
            if not any(_succeeded(attempt) for attempt in attempts)
        ]
        return LogPage(read=len(by_guid), failed=failed)

    def may_resend(self) -> bool:
        return True

    async def resend(self, failed: FailedDelivery) -> None:
        await self._deliveries.redeliver(failed.resend_id)


def _failed(guid: str, attempts: list[dict[str, Any]]) -> FailedDelivery:
    latest = attempts[0]  # newest first
    code = int(latest.get("status_code") or 0)
    event, action = latest.get("event"), latest.get("action")
    return FailedDelivery(
        ledger_ids=(guid,),
        resend_id=str(latest["id"]),
        delivered_at=epoch_of(str(latest.get("delivered_at") or "")),
        status=f"{latest.get('status') or 'failed'} (HTTP {code})" if code else "no response",
        retryable=code == 0 or code >= 500,
        what=f"{event}.{action}" if action else str(event),
    )


def github_redelivery(
    store: Store, queue: JobQueue, api: GithubApi, *, interval: float, retention_days: float
) -> Redelivery:
    """The GitHub App's redelivery: every `interval` seconds, and on demand."""

    async def logs(scope: str | None) -> list[GithubDeliveryLog]:
        return [GithubDeliveryLog(api)]

    return Redelivery(
        store,
        queue,
        platform=PLATFORM,
        title=TITLE,
        kind=GITHUB_REDELIVER_JOB,
        interval=interval,
        window=Window(LOG_KEPT_SECONDS, retention_days),
        logs=logs,
    )
