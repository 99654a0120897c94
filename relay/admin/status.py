"""What the operator status page (/admin, relay/admin/page.py) shows: read from the
database, the settings and the outbound checks (relay/admin/outbound.py).

Nothing here returns a secret: the checks' texts are scrubbed of every configured
secret (and of tokens read from the database) before they leave relay/doctor;
platforms are described by their features (`Settings.features()`: mode and base
URLs), the agent-server's URL loses any user:password part, mentions are built from
thread keys by each platform's links (never from processor settings, which hold
webhook secrets), and job errors are the queue's `last_error`, which
`agent-relay jobs list` shows too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from agent.intake import DELIVERY_SOURCE as AGENT_SOURCE
from bots.checks import CheckResult
from bots.features import Feature
from bots.links import Thread, ThreadLinks
from db.callbacks import CallbackStatus
from db.job_kinds import Job, JobStatus
from db.jobs import JobQueue
from db.marks import last_runs
from db.store import Store
from relay.admin.outbound import (
    CHECK_TTL_SECONDS,
    CheckedState,
    Outbound,
    OutboundChecks,
    TimedCache,
    checked_state,
    platform_of,
    run_outbound,
)
from relay.settings import Settings

FAILED_JOBS_SHOWN = 50
MENTIONS_SHOWN = 10


@dataclass(frozen=True)
class Mention:
    """A platform thread with a conversation, newest activity first."""

    label: str
    url: str | None
    conversation_id: str
    conversation_url: str | None
    callback_status: str | None
    execution_status: str | None
    updated_at: float


@dataclass(frozen=True)
class PlatformHealth:
    platform: str
    name: str
    configured: bool
    mode: str
    credentials: CheckedState | None
    last_event_at: float | None
    setup_path: str | None = None


@dataclass(frozen=True)
class AgentHealth:
    url: str
    reachability: CheckedState | None
    last_event_at: float | None


@dataclass(frozen=True)
class PeriodicRun:
    """The last run of a periodic job that looks for missed work (db.marks)."""

    title: str
    at: float
    summary: str
    error: str | None


@dataclass(frozen=True)
class StatusView:
    job_counts: dict[str, int]
    callback_counts: dict[str, int]
    failed_jobs: list[Job]
    agent: AgentHealth
    platforms: list[PlatformHealth]
    mentions: dict[str, list[Mention]]
    checks_error: str | None
    # Reconciliation and redelivery: each one's last run.
    recovery: list[PeriodicRun] = field(default_factory=list)


def public_url_of(url: str) -> str:
    """`url` without user:password, query or fragment: what may be shown."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _mode(feature: Feature) -> str:
    """How a platform runs, as its row says: `one workspace (SLACK_BOT_TOKEN)`,
    `app from GITHUB_APP_ID, https://github.com`..."""
    if not feature.enabled:
        return "not configured"
    how = f"{feature.mode} ({feature.source})" if feature.source else feature.mode
    address = public_url_of(feature.address) if feature.address else None
    return ", ".join(part for part in (how, address) if part)


class StatusReader:
    """Reads a StatusView; outbound checks come from a cache of CHECK_TTL_SECONDS."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        queue: JobQueue,
        checks: OutboundChecks,
        links: Sequence[ThreadLinks],
        clock: Callable[[], float] = time.time,
        check_ttl: float = CHECK_TTL_SECONDS,
    ) -> None:
        self._settings = settings
        self._store = store
        self._queue = queue
        # The platforms the page has rows for, in relay.platforms' order.
        self._links = list(links)
        names = [links.platform for links in self._links]
        self._outbound = TimedCache(lambda: run_outbound(checks, names), ttl=check_ttl, clock=clock)

    async def read(self) -> StatusView:
        outbound = await self._outbound.get()
        last_events = await self._last_events()
        return StatusView(
            job_counts=await self._queue.counts(),
            callback_counts=await self._callback_counts(),
            failed_jobs=await self._queue.newest(status=JobStatus.FAILED, limit=FAILED_JOBS_SHOWN),
            agent=AgentHealth(
                url=public_url_of(self._settings.agent_server_url),
                reachability=checked_state(outbound.agent),
                last_event_at=last_events.get(AGENT_SOURCE),
            ),
            platforms=self._platforms(outbound, last_events),
            mentions={links.platform: await self._mentions(links) for links in self._links},
            checks_error=outbound.error,
            recovery=await self._recovery(),
        )

    async def _recovery(self) -> list[PeriodicRun]:
        return [
            PeriodicRun(
                title=str(run.get("title") or "?"),
                at=float(run.get("at") or 0.0),
                summary=str(run.get("summary") or ""),
                error=str(run["error"]) if run.get("error") else None,
            )
            for run in await last_runs(self._store)
        ]

    async def _callback_counts(self) -> dict[str, int]:
        rows = await self._store.fetch_all(
            "SELECT status, COUNT(*) AS n FROM conversation_callbacks GROUP BY status"
        )
        counts = {status.value: 0 for status in CallbackStatus}
        counts.update({row["status"]: int(row["n"]) for row in rows})
        return counts

    async def _last_events(self) -> dict[str, float]:
        """When each configured source's newest delivery was recorded (the ledger keeps
        RETENTION_DAYS, so an older last event shows as none)."""
        sources = [AGENT_SOURCE]
        sources += [p.platform for p in self._platforms(Outbound([], []), {}) if p.configured]
        found: dict[str, float] = {}
        for source in sources:
            row = await self._store.fetch_one(
                "SELECT received_at FROM inbound_deliveries WHERE source = :source"
                " ORDER BY received_at DESC LIMIT 1",
                {"source": source},
            )
            if row is not None:
                found[source] = float(row["received_at"])
        return found

    def _platforms(self, outbound: Outbound, last_events: dict[str, float]) -> list[PlatformHealth]:
        names = [links.platform for links in self._links]
        checks: dict[str, list[CheckResult]] = {}
        for result in outbound.platforms:
            platform = platform_of(result, names)
            if platform is not None:
                checks.setdefault(platform, []).append(result)
        features = {feature.name: feature for feature in self._settings.features()}
        rows = []
        for links in self._links:
            feature = features[links.platform]
            rows.append(
                PlatformHealth(
                    links.platform,
                    links.title,
                    feature.enabled,
                    _mode(feature),
                    checked_state(checks.get(links.platform, [])),
                    last_events.get(links.platform),
                    setup_path=feature.page,
                )
            )
        return rows

    async def _mentions(self, links: ThreadLinks) -> list[Mention]:
        rows = await self._store.fetch_all(
            "SELECT l.thread_key, l.conversation_id, l.updated_at, a.execution_status,"
            " (SELECT c.status FROM conversation_callbacks c"
            "  WHERE c.conversation_id = l.conversation_id AND c.processor_type = :platform"
            "  ORDER BY c.id DESC LIMIT 1) AS callback_status"
            " FROM conversation_links l"
            " LEFT JOIN agent_conversations a ON a.conversation_id = l.conversation_id"
            " WHERE l.platform = :platform ORDER BY l.updated_at DESC LIMIT :limit",
            {"platform": links.platform, "limit": MENTIONS_SHOWN},
        )
        threads = [Thread(str(row["thread_key"]), str(row["conversation_id"])) for row in rows]
        found = await links.thread_links(self._store, threads)
        return [
            Mention(
                label=link.label,
                url=link.url,
                conversation_id=thread.conversation_id,
                conversation_url=self._conversation_url(thread.conversation_id),
                callback_status=row["callback_status"],
                execution_status=row["execution_status"],
                updated_at=float(row["updated_at"]),
            )
            for thread, link, row in zip(threads, found, rows, strict=True)
        ]

    def _conversation_url(self, conversation_id: str) -> str | None:
        # The same link the platforms post (processors.base.ProcessorContext); the
        # setting's validator has checked that the template formats.
        template = self._settings.agent_conversation_url
        return template.format(conversation_id=conversation_id) if template else None
