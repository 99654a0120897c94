"""Runs the checks: all of them for `agent-relay doctor`, the agent-server's and the
platforms' for the status page, each run with its own short-timeout HTTP client."""

from __future__ import annotations

import asyncio
import logging

from bots.checks import CheckResult
from relay.doctor.agent_server import agent_server_checks
from relay.doctor.database import database_checks, probe_database
from relay.doctor.public_url import public_url_checks
from relay.doctor.run import DEFAULT_CHECK_TIMEOUT, Deployment, Run
from relay.doctor.settings import settings_checks

log = logging.getLogger(__name__)


class Checks:
    """The checks of one relay (built with Relay.build; workers need not run).

    The relay's store may be connected already (a running server); with
    `connect_database` the database check connects it first (the CLI), and reports
    when it cannot. `gitlab_project` ("group/name") adds the check of that project's
    hook to this relay.
    """

    def __init__(
        self,
        relay: Deployment,
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
        async with self._run() as run:
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
        async with self._run() as run:
            return run.scrubbed(await run.guarded("platforms", self._platforms(run)))

    async def agent_server(self) -> list[CheckResult]:
        """The agent-server checks only: it answers, it takes the key (the status page)."""
        async with self._run() as run:
            return run.scrubbed(await run.guarded("agent-server", agent_server_checks(run)))

    async def connect(self) -> None:
        async with self._connect_lock:
            if self.connect_database and not self.connected:
                await self.relay.store.connect()
                self.connected = True

    def _run(self) -> Run:
        return Run(
            self.relay,
            timeout=self.timeout,
            project=self.gitlab_project,
            connector=self,
            probe_database=probe_database,
        )

    async def _platforms(self, run: Run) -> list[CheckResult]:
        """Each platform's own check (relay.platforms' order), at the same time."""
        checks = [platform.check for platform in self.relay.platforms.values()]
        groups = await asyncio.gather(*(check(run) for check in checks))
        return [result for group in groups for result in group]
