"""One run of the checks: what every check of it shares, and what it checks (the
deployment, read through a Protocol so that doctor does not import the relay that
builds it)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import httpx

from agent.client import AgentClient
from agent.http import new_http_client
from bots.checks import CheckResult, fail
from bots.platform import Platform
from db.jobs import JobQueue
from db.secrets import SecretBox
from db.store import Store
from relay.doctor.results import Scrubber, error_text
from relay.settings import Settings

log = logging.getLogger(__name__)

# Seconds one check may take; a peer slower than this is reported as not answering.
DEFAULT_CHECK_TIMEOUT = 5.0
_SEE_DEBUG_LOG = "run again with LOG_LEVEL=DEBUG to see where"


class Connector(Protocol):
    """Connects the deployment's store first when the checks run outside a server
    (the CLI), once for all the runs of one Checks."""

    connect_database: bool
    connected: bool

    async def connect(self) -> None: ...


class Deployment(Protocol):
    """What the checks look at: relay.app.Relay, built from the settings (its workers
    need not run)."""

    settings: Settings
    store: Store
    queue: JobQueue
    agent: AgentClient
    secrets: SecretBox
    platforms: dict[str, Platform]


class Run:
    """One run of the checks (the `bots.checks.CheckRun` platforms are handed): its
    own short-timeout HTTP client, and the database probe that the checks which read
    the database wait for."""

    def __init__(
        self,
        deployment: Deployment,
        *,
        timeout: float,
        project: str | None,
        connector: Connector,
        probe_database: Callable[[Run], Awaitable[CheckResult]],
    ) -> None:
        self.relay = deployment
        self.settings = deployment.settings
        self.timeout = timeout
        self.project = project
        self.connector = connector
        self._probe_database = probe_database
        # The relay's own kind of client: what it checks is what the relay will meet.
        self.http: httpx.AsyncClient = new_http_client(timeout=httpx.Timeout(self.timeout))
        self._scrubber = Scrubber(self.settings)
        self._database: asyncio.Task[CheckResult] | None = None

    async def __aenter__(self) -> Run:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    @property
    def store(self) -> Store:
        return self.relay.store

    @property
    def secrets(self) -> SecretBox:
        return self.relay.secrets

    def add_secret(self, value: str) -> None:
        self._scrubber.add(value)

    def scrubbed(self, results: list[CheckResult]) -> list[CheckResult]:
        return self._scrubber.scrubbed(results)

    async def bounded(
        self, name: str, check: Callable[[], Awaitable[CheckResult]], fix: str | None
    ) -> CheckResult:
        """`check`, or a failed result when it takes longer than the timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                return await check()
        except TimeoutError:
            return fail(name, f"no answer within {self.timeout:g} s", fix)
        except Exception as exc:
            # An answer no check expected (a proxy's HTML page...): a failed line,
            # never a traceback instead of the report.
            log.debug("check %s broke", name, exc_info=True)
            return fail(name, f"unexpected {error_text(exc)}", fix)

    async def guarded(self, name: str, checks: Awaitable[list[CheckResult]]) -> list[CheckResult]:
        """A group of checks; one failed line if it breaks outside any single check."""
        try:
            return await checks
        except Exception as exc:
            log.debug("checks of %s broke", name, exc_info=True)
            return [fail(name, f"unexpected {error_text(exc)}", _SEE_DEBUG_LOG)]

    def database_probe(self) -> asyncio.Task[CheckResult]:
        """Connect (when asked) and read the schema version, once per run."""
        if self._database is None:
            self._database = asyncio.ensure_future(
                self.bounded("database", lambda: self._probe_database(self), "check DATABASE_URL")
            )
        return self._database

    async def database_ready(self) -> str | None:
        """None when the database answers, else why it does not."""
        probe = await self.database_probe()
        return None if probe.status == "ok" else "the database does not answer"
