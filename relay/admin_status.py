"""What the operator status page (/admin, relay/admin.py) shows: read from the database,
the settings and the outbound checks of relay/checks.py, cached for a minute.

The agent-server and platform checks are `agent-relay doctor`'s own (relay.checks.Checks),
so the page and the command agree. Nothing here returns a secret: those checks' texts
are scrubbed of every configured secret (and of tokens read from the database) before
they leave relay/checks.py; platforms are described by their mode and base URLs, the
agent-server's URL loses any user:password part, mentions are built from thread keys
(never from processor settings, which hold webhook secrets), and job errors are the
queue's `last_error`, which `agent-relay jobs list` shows too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from agent.events import START_JOB
from agent.intake import DELIVERY_SOURCE as AGENT_SOURCE
from bots.checks import CheckResult, CheckStatus
from bots.github.setup import SETUP_PATH as GITHUB_SETUP_PATH
from bots.github.triggers import PLATFORM as GITHUB
from bots.gitlab.triggers import PLATFORM as GITLAB
from bots.gitlab.triggers import Noteable
from bots.slack.triggers import PLATFORM as SLACK
from db.callbacks import CallbackStatus
from db.jobs import Job, JobQueue, JobStatus
from db.store import Store
from relay.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Outbound checks (agent-server, platform credentials) are cached this long, so a page
# that refreshes itself every few seconds does not call them each time.
CHECK_TTL_SECONDS = 60.0
# All outbound checks together (each one has its own, shorter timeout in relay/checks.py;
# a Slack deployment with many workspaces asks them a few at a time).
CHECKS_TIMEOUT_SECONDS = 15.0
FAILED_JOBS_SHOWN = 50
MENTIONS_SHOWN = 10

_SLACK_WEB = "https://slack.com"
_GITHUB_KEY = re.compile(r"(?P<repo>[^#\s]+/[^#\s]+)#(?P<number>\d+)(?:/r(?P<review>\d+))?")
_GITLAB_KEY = re.compile(r"(?P<project>\d+):(?P<kind>issue|merge_request):(?P<iid>\d+)")
# Which status a part shows when its checks disagree: the worst one.
_SEVERITY: dict[CheckStatus, int] = {"skip": 0, "ok": 1, "warn": 2, "fail": 3}


class OutboundChecks(Protocol):
    """The checks the page asks of its peers; relay.checks.Checks is the real one.
    Both return CheckResults named after what they checked ("agent-server key",
    "slack workspace T0ACME", "github app"...), with secrets already scrubbed."""

    async def agent_server(self) -> list[CheckResult]: ...

    async def platforms(self) -> list[CheckResult]: ...


class NoChecks:
    """Checks for a page built without peers to ask (unit tests of other parts)."""

    async def agent_server(self) -> list[CheckResult]:
        return []

    async def platforms(self) -> list[CheckResult]:
        return []


@dataclass(frozen=True)
class CheckedState:
    """One part's checks as the page shows them: the worst status among them, and the
    results worth showing (skipped ones only when nothing else was checked)."""

    status: CheckStatus
    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def checked_state(results: Sequence[CheckResult]) -> CheckedState | None:
    """The state of one part's results; None when there are none ("not checked")."""
    if not results:
        return None
    status = max((result.status for result in results), key=_SEVERITY.__getitem__)
    shown = [result for result in results if status == "skip" or result.status != "skip"]
    return CheckedState(status, tuple(shown))


def platform_of(result: CheckResult) -> str | None:
    """The platform a result is of (`slack workspace T1`: slack), else None."""
    first = result.name.split(" ", 1)[0]
    return first if first in (SLACK, GITHUB, GITLAB) else None


class TimedCache(Generic[T]):
    """The last answer of `produce` for `ttl` seconds; one call at a time."""

    def __init__(
        self, produce: Callable[[], Awaitable[T]], *, ttl: float, clock: Callable[[], float]
    ) -> None:
        self._produce = produce
        self._ttl = ttl
        self._clock = clock
        self._lock = asyncio.Lock()
        self._value: T | None = None
        self._expires = 0.0

    async def get(self) -> T:
        async with self._lock:
            if self._value is None or self._clock() >= self._expires:
                self._value = await self._produce()
                self._expires = self._clock() + self._ttl
            return self._value


@dataclass(frozen=True)
class Outbound:
    """One run of the outbound checks; `error` when they could not run at all."""

    agent: list[CheckResult]
    platforms: list[CheckResult]
    error: str | None = None


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
class StatusView:
    job_counts: dict[str, int]
    callback_counts: dict[str, int]
    failed_jobs: list[Job]
    agent: AgentHealth
    platforms: list[PlatformHealth]
    mentions: dict[str, list[Mention]]
    checks_error: str | None


def public_url_of(url: str) -> str:
    """`url` without user:password, query or fragment: what may be shown."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def slack_thread(thread_key: str) -> tuple[str, str | None]:
    """`{team}:{channel}:{thread_ts}` -> a label and Slack's documented redirect to the
    channel (a thread permalink needs the workspace's domain, which is not stored)."""
    team, _, rest = thread_key.partition(":")
    channel, _, thread_ts = rest.partition(":")
    if not (team and channel and thread_ts):
        return thread_key, None
    query = urlencode({"team": team, "channel": channel})
    return f"{channel} thread {thread_ts}", f"{_SLACK_WEB}/app_redirect?{query}"


def github_thread(thread_key: str, github_url: str) -> tuple[str, str | None]:
    """`owner/repo#n` (or `owner/repo#n/r{id}`, a review thread) -> label and web URL."""
    match = _GITHUB_KEY.fullmatch(thread_key)
    if match is None:
        return thread_key, None
    repo, number, review = match.group("repo", "number", "review")
    base = f"{github_url.rstrip('/')}/{quote(repo, safe='/')}"
    if review is not None:
        return f"{repo}#{number} (review thread)", f"{base}/pull/{number}#discussion_r{review}"
    # GitHub sends /issues/{n} of a pull request on to /pull/{n}.
    return f"{repo}#{number}", f"{base}/issues/{number}"


def gitlab_thread(
    thread_key: str, gitlab_url: str, project_path: str | None
) -> tuple[str, str | None]:
    """`{project_id}:{issue|merge_request}:{iid}` -> label and web URL. Without the
    project's path (not stored with the link) GitLab can only send `/projects/{id}` to
    the project's page."""
    match = _GITLAB_KEY.fullmatch(thread_key)
    if match is None:
        return thread_key, None
    project, kind, iid = match.group("project", "kind", "iid")
    noteable = Noteable(kind)
    sign = "#" if noteable is Noteable.ISSUE else "!"
    base = gitlab_url.rstrip("/")
    if project_path:
        url = f"{base}/{quote(project_path, safe='/')}/-/{noteable.path}/{iid}"
        return f"{project_path}{sign}{iid}", url
    return f"project {project}, {noteable.noun} {sign}{iid}", f"{base}/projects/{project}"


class StatusReader:
    """Reads a StatusView; outbound checks come from a cache of CHECK_TTL_SECONDS."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        queue: JobQueue,
        checks: OutboundChecks,
        clock: Callable[[], float] = time.time,
        check_ttl: float = CHECK_TTL_SECONDS,
    ) -> None:
        self._settings = settings
        self._store = store
        self._queue = queue
        self._checks = checks
        self._outbound = TimedCache(self._run_checks, ttl=check_ttl, clock=clock)

    async def read(self) -> StatusView:
        outbound = await self._outbound.get()
        by_platform: dict[str, list[CheckResult]] = {}
        for result in outbound.platforms:
            platform = platform_of(result)
            if platform is not None:
                by_platform.setdefault(platform, []).append(result)
        last_events = await self._last_events()
        return StatusView(
            job_counts=await self._queue.counts(),
            callback_counts=await self._callback_counts(),
            failed_jobs=await self._queue.list(status=JobStatus.FAILED, limit=FAILED_JOBS_SHOWN),
            agent=AgentHealth(
                url=public_url_of(self._settings.agent_server_url),
                reachability=checked_state(outbound.agent),
                last_event_at=last_events.get(AGENT_SOURCE),
            ),
            platforms=self._platforms(by_platform, last_events),
            mentions={
                SLACK: await self._mentions(SLACK),
                GITHUB: await self._mentions(GITHUB),
                GITLAB: await self._mentions(GITLAB),
            },
            checks_error=outbound.error,
        )

    async def _run_checks(self) -> Outbound:
        try:
            async with asyncio.timeout(CHECKS_TIMEOUT_SECONDS):
                agent, platforms = await asyncio.gather(
                    self._checks.agent_server(), self._checks.platforms()
                )
        except TimeoutError:
            log.warning("status page: the outbound checks took over %g s", CHECKS_TIMEOUT_SECONDS)
            return Outbound([], [], f"they took longer than {CHECKS_TIMEOUT_SECONDS:g} s")
        except Exception as exc:
            # The page still shows everything else; the message names the kind only
            # (relay/checks.py turns what it expects into results: this is a bug).
            log.warning("status page: the outbound checks broke: %s", type(exc).__name__)
            return Outbound([], [], f"they broke ({type(exc).__name__})")
        # A whole group that broke inside relay/checks.py ("platforms": unexpected ...).
        broken = [r for r in platforms if r.failed and platform_of(r) is None]
        error = "; ".join(f"{r.name}: {r.detail}" for r in broken) or None
        return Outbound(agent, platforms, error)

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
        sources += [p.platform for p in self._platforms({}, {}) if p.configured]
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

    def _platforms(
        self, checks: dict[str, list[CheckResult]], last_events: dict[str, float]
    ) -> list[PlatformHealth]:
        settings = self._settings
        slack_mode = {
            "oauth": "many workspaces (OAuth at /slack/install)",
            "single": "one workspace (SLACK_BOT_TOKEN)",
            None: "not configured",
        }[settings.slack_mode]
        github_mode = {
            "settings": "app from GITHUB_APP_ID",
            "setup": "app from the setup page",
            None: "not configured",
        }[settings.github_mode]
        gitlab_on = settings.gitlab_enabled
        return [
            PlatformHealth(
                SLACK,
                "Slack",
                settings.slack_mode is not None,
                slack_mode,
                checked_state(checks.get(SLACK, [])),
                last_events.get(SLACK),
            ),
            PlatformHealth(
                GITHUB,
                "GitHub",
                settings.github_mode is not None,
                f"{github_mode}, {public_url_of(settings.github_url)}"
                if settings.github_mode
                else github_mode,
                checked_state(checks.get(GITHUB, [])),
                last_events.get(GITHUB),
                setup_path=GITHUB_SETUP_PATH if settings.github_mode == "setup" else None,
            ),
            PlatformHealth(
                GITLAB,
                "GitLab",
                gitlab_on,
                public_url_of(settings.gitlab_url) if gitlab_on else "not configured",
                checked_state(checks.get(GITLAB, [])),
                last_events.get(GITLAB),
            ),
        ]

    async def _mentions(self, platform: str) -> list[Mention]:
        rows = await self._store.fetch_all(
            "SELECT l.thread_key, l.conversation_id, l.updated_at, a.execution_status,"
            " (SELECT c.status FROM conversation_callbacks c"
            "  WHERE c.conversation_id = l.conversation_id AND c.processor_type = :platform"
            "  ORDER BY c.id DESC LIMIT 1) AS callback_status"
            " FROM conversation_links l"
            " LEFT JOIN agent_conversations a ON a.conversation_id = l.conversation_id"
            " WHERE l.platform = :platform ORDER BY l.updated_at DESC LIMIT :limit",
            {"platform": platform, "limit": MENTIONS_SHOWN},
        )
        paths = await self._gitlab_paths(rows) if platform == GITLAB else {}
        mentions = []
        for row in rows:
            key, conversation_id = str(row["thread_key"]), str(row["conversation_id"])
            if platform == SLACK:
                label, url = slack_thread(key)
            elif platform == GITHUB:
                label, url = github_thread(key, self._settings.github_url)
            else:
                label, url = gitlab_thread(
                    key, self._settings.gitlab_url, paths.get(conversation_id)
                )
            mentions.append(
                Mention(
                    label=label,
                    url=url,
                    conversation_id=conversation_id,
                    conversation_url=self._conversation_url(conversation_id),
                    callback_status=row["callback_status"],
                    execution_status=row["execution_status"],
                    updated_at=float(row["updated_at"]),
                )
            )
        return mentions

    async def _gitlab_paths(self, rows: Sequence[dict[str, Any]]) -> dict[str, str]:
        """Project paths by conversation, from the tags of the job that started each
        conversation (bots.gitlab.job tags it with the project's path); gone once
        retention has pruned that job."""
        conversations = sorted({str(row["conversation_id"]) for row in rows})
        if not conversations:
            return {}
        names = {f"c{index}": value for index, value in enumerate(conversations)}
        found = await self._store.fetch_all(
            "SELECT job_key, payload FROM jobs WHERE kind = :kind AND job_key IN ("
            + ", ".join(f":{name}" for name in names)
            + ")",
            {"kind": START_JOB, **names},
        )
        paths: dict[str, str] = {}
        for row in found:
            try:
                project = json.loads(row["payload"]).get("tags", {}).get("project")
            except (ValueError, AttributeError):
                continue
            if isinstance(project, str) and project:
                paths[str(row["job_key"])] = project
        return paths

    def _conversation_url(self, conversation_id: str) -> str | None:
        # The same link the platforms post (processors.base.ProcessorContext); the
        # setting's validator has checked that the template formats.
        template = self._settings.agent_conversation_url
        return template.format(conversation_id=conversation_id) if template else None
