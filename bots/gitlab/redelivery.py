"""GitLab's side of redelivery (bots/redelivery.py): the events of each project hook
`agent-relay gitlab install-webhook` recorded (bots/gitlab/hooks.py).

GitLab (17.3) lists a hook's deliveries of the last 7 days, each with the request's
headers and the receiver's `response_status` ("200", "500", or a text such as
"internal error" when nothing answered), and (17.4) resends one with its original
Idempotency-Key, at most 5 a minute per hook: the rest wait for the next run. A
delivery failed when none of the attempts sharing its Idempotency-Key succeeded. The
log has no delivery time: the time of the change the event reports (its object's
`updated_at`) stands for it.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import datetime
from typing import Any

from bots.gitlab import PLATFORM
from bots.gitlab.api import GitlabApi, GitlabHookEvents
from bots.gitlab.hooks import InstalledHook, installed_hooks
from bots.redelivery import DAY_SECONDS, FailedDelivery, LogPage, Redelivery, Window
from db.job_kinds import JobKind
from db.jobs import JobQueue
from db.periodic import PeriodPayload
from db.store import Store

GITLAB_REDELIVER_JOB = JobKind("gitlab.redeliver", PeriodPayload)
# GitLab keeps a hook's events for 7 days.
LOG_KEPT_SECONDS = 7 * DAY_SECONDS
TITLE = "GitLab redelivery"
# GitLab's limit on resends (per hook and user).
RESENDS_PER_MINUTE = 5
PER_PAGE = 100
# A hook's log is read at most this far (7 days of a busy project's notes and issues).
MAX_PAGES = 50


class ResendBudget:
    """GitLab's 5 resends a minute per hook, counted in this process."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._sent: dict[str, deque[float]] = {}

    def available(self, hook: str) -> bool:
        sent = self._sent.setdefault(hook, deque())
        while sent and self._clock() - sent[0] >= 60.0:
            sent.popleft()
        return len(sent) < RESENDS_PER_MINUTE

    def spend(self, hook: str) -> None:
        self._sent.setdefault(hook, deque()).append(self._clock())


def _header(event: dict[str, Any], name: str) -> str | None:
    headers = event.get("request_headers") or {}
    for key, value in headers.items() if isinstance(headers, dict) else ():
        if key.lower() == name and value:
            return str(value)
    return None


def _outcome(event: dict[str, Any]) -> int | None:
    """The receiver's HTTP status; None when nothing answered (no connection, timeout)."""
    status = str(event.get("response_status") or "")
    return int(status) if status.isdigit() else None


def _happened_at(event: dict[str, Any]) -> float:
    """When the change the event reports was made (its object's updated_at, else
    created_at); the log itself carries no delivery time. Now when neither parses."""
    data = event.get("request_data") or {}
    attributes = data.get("object_attributes") if isinstance(data, dict) else None
    for name in ("updated_at", "created_at"):
        raw = attributes.get(name) if isinstance(attributes, dict) else None
        if isinstance(raw, str):
            try:
                # Webhooks write "2026-01-05 10:00:00 UTC"; the API ISO 8601.
                return datetime.fromisoformat(raw.replace(" UTC", "+00:00")).timestamp()
            except ValueError:
                continue
    return time.time()


class GitlabHookLog:
    def __init__(self, api: GitlabApi, hook: InstalledHook, budget: ResendBudget) -> None:
        self.hook = hook
        self.name = f"{PLATFORM}:{hook.project_id}:{hook.hook_id}"
        self._events = GitlabHookEvents(api, hook.project_id, hook.hook_id)
        self._budget = budget

    async def failed_since(self, since: float) -> LogPage:
        attempts: dict[str, list[dict[str, Any]]] = {}
        for number in range(1, MAX_PAGES + 1):
            page = await self._events.page(number, PER_PAGE)
            recent = [event for event in page if _happened_at(event) >= since]
            for event in recent:
                key = _header(event, "idempotency-key") or _header(event, "x-gitlab-event-uuid")
                attempts.setdefault(key or str(event.get("id")), []).append(event)
            if len(page) < PER_PAGE or not recent:
                break
        failed = [
            _failed(tries)
            for tries in attempts.values()
            if not any(200 <= (_outcome(event) or 0) < 300 for event in tries)
        ]
        return LogPage(read=len(attempts), failed=failed)

    def may_resend(self) -> bool:
        return self._budget.available(self.name)

    async def resend(self, failed: FailedDelivery) -> None:
        self._budget.spend(self.name)
        await self._events.resend(failed.resend_id)


def _failed(tries: list[dict[str, Any]]) -> FailedDelivery:
    latest = tries[0]  # newest first
    code = _outcome(latest)
    ids = [_header(latest, "idempotency-key"), _header(latest, "x-gitlab-event-uuid")]
    return FailedDelivery(
        ledger_ids=tuple(i for i in ids if i) or (str(latest.get("id")),),
        resend_id=str(latest.get("id")),
        delivered_at=_happened_at(latest),
        status=f"HTTP {code}" if code else str(latest.get("response_status") or "no response"),
        retryable=code is None or code >= 500,
        what=_header(latest, "x-gitlab-event") or str(latest.get("trigger") or "event"),
    )


def gitlab_redelivery(
    store: Store,
    queue: JobQueue,
    api: GitlabApi,
    *,
    interval: float,
    retention_days: float,
) -> Redelivery:
    """Every recorded hook's redelivery: every `interval` seconds, and on demand (the
    scope of a run, when given, is one project: its path or id)."""
    budget = ResendBudget()

    async def logs(project: str | None) -> list[GitlabHookLog]:
        hooks = await installed_hooks(store)
        chosen = [h for h in hooks if project in (None, h.project, str(h.project_id))]
        return [GitlabHookLog(api, hook, budget) for hook in chosen]

    return Redelivery(
        store,
        queue,
        platform=PLATFORM,
        title=TITLE,
        kind=GITLAB_REDELIVER_JOB,
        interval=interval,
        window=Window(LOG_KEPT_SECONDS, retention_days),
        logs=logs,
    )
