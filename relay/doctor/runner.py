"""Runs the checks: all of them for `agent-relay doctor`, the agent-server's and the
platforms' for the status page, each run with its own short-timeout HTTP client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import httpx

from agent.http import new_http_client
from bots.checks import CheckResult, fail
from db.secrets import SecretBox
from db.store import Store
from relay.doctor.agent_server import agent_server_checks
from relay.doctor.database import database_checks, probe_database
from relay.doctor.platforms import platform_checks
from relay.doctor.public_url import public_url_checks
from relay.doctor.results import Scrubber, error_text
from relay.doctor.settings import settings_checks

if TYPE_CHECKING:
    from relay.app import Relay

log = logging.getLogger(__name__)

# Seconds one check may take; a peer slower than this is reported as not answering.
DEFAULT_CHECK_TIMEOUT = 5.0
_SEE_DEBUG_LOG = "run again with LOG_LEVEL=DEBUG to see where"


class Checks:
    """The checks of one relay (built with Relay.build; workers need not run).

    The relay's store may be connected already (a running server); with
    `connect_database` the database check connects it first (the CLI), and reports
    when it cannot. `gitlab_project` ("group/name") adds the check of that project's
    hook to this relay.
    """

    def __init__(
        self,
        relay: Relay,
        *,
        timeout: float = DEFAULT_CHECK_TIMEOUT,
        gitlab_project: str | None = None,
        connect_database: bool = False,
    ) -> None:
        self.relay = relay
        self.settings = relay.settings
        self.timeout = timeout
        self.gitlab_project = gitlab_project
        self.connect_database = connect_database
        self.connected = False
        self._connect_lock = asyncio.Lock()

    async def run_all(self) -> list[CheckResult]:
        """Every check, in a fixed order (settings, database, agent-server, platforms,
        PUBLIC_URL); the ones that talk to peers run concurrently."""
        async with Run(self) as run:
            groups = await asyncio.gather(
                run.guarded("database", database_checks(run)),
                run.guarded("agent-server", agent_server_checks(run)),
                run.guarded("platforms", self._platforms(run)),
                run.guarded("public url", public_url_checks(run)),
            )
            results = settings_checks(self.settings)
            for group in groups:
                results += group
            return run.scrubbed(results)

    async def platforms(self) -> list[CheckResult]:
        """The platform credential checks only: Slack, GitHub, GitLab."""
        async with Run(self) as run:
            return run.scrubbed(await run.guarded("platforms", self._platforms(run)))

    async def agent_server(self) -> list[CheckResult]:
        """The agent-server checks only: it answers, it takes the key (the status page)."""
        async with Run(self) as run:
            return run.scrubbed(await run.guarded("agent-server", agent_server_checks(run)))

    async def connect(self) -> None:
        async with self._connect_lock:
            if self.connect_database and not self.connected:
                await self.relay.store.connect()
                self.connected = True

    async def _platforms(self, run: Run) -> list[CheckResult]:
        checks = platform_checks(self.relay, gitlab_project=self.gitlab_project)
        groups = await asyncio.gather(*(check(run) for check in checks))
        return [result for group in groups for result in group]


class Run:
    """One run of the checks (the `bots.checks.CheckRun` platforms are handed): its
    own short-timeout HTTP client, and the database probe that the checks which read
    the database wait for."""

    def __init__(self, checks: Checks) -> None:
        self.checks = checks
        self.relay = checks.relay
        self.settings = checks.settings
        self.timeout = checks.timeout
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
                self.bounded("database", lambda: probe_database(self), "check DATABASE_URL")
            )
        return self._database

    async def database_ready(self) -> str | None:
        """None when the database answers, else why it does not."""
        probe = await self.database_probe()
        return None if probe.status == "ok" else "the database does not answer"
