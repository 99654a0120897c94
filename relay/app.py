"""The composition root: builds every part from Settings and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from agent.client import AgentClient, LLMSettings
from agent.http import new_http_client
from agent.intake import AgentIntake
from bots.platform import Platform, Shared
from db.jobs import JobQueue
from db.migrations import is_current, migrate
from db.retention import PRUNE_JOB, Retention
from db.secrets import SecretBox, secret_text
from db.store import Store
from processors.context import ProcessorContext
from processors.credentials import Credentials
from processors.hosts import WorkspacePolicy
from processors.receiver_guard import guarded_receiver_client
from processors.reconcile import Reconciler
from processors.runtime import job_handlers
from processors.workspace_cleanup import WorkspaceCleanup
from relay.admin.page import AdminPage
from relay.api import RelayApi
from relay.credentials import CredentialsRoute
from relay.doctor.runner import Checks
from relay.health import Health
from relay.limits import BodySizeLimit
from relay.platforms import PLATFORMS, register_processor_kinds
from relay.settings import Settings
from relay.webhook_timing import WebhookTiming
from relay.worker import Worker

log = logging.getLogger(__name__)


@dataclass
class Relay:
    """Everything one agent-relay process runs, built from its settings."""

    settings: Settings
    store: Store
    queue: JobQueue
    agent: AgentClient
    http: httpx.AsyncClient
    worker: Worker
    secrets: SecretBox
    # Every platform of relay.platforms.PLATFORMS, enabled or not, by name.
    platforms: dict[str, Platform]
    retention: Retention | None = None
    reconciler: Reconciler | None = None
    # Webhook receivers' client (ProcessorContext.receiver_http); None: `http`.
    receiver_http: httpx.AsyncClient | None = None
    # The workspaces' tokens (GET /agent/credentials/...).
    credentials: Credentials | None = None

    @classmethod
    def build(cls, settings: Settings) -> Relay:
        register_processor_kinds()
        store = Store(settings.database_url)
        queue = JobQueue(store, lease_seconds=settings.job_lease_seconds)
        agent = AgentClient(
            base_url=settings.agent_server_url,
            api_key=secret_text(settings.agent_server_api_key),
            llm=LLMSettings(
                model=settings.agent_llm_model,
                api_key=secret_text(settings.agent_llm_api_key),
                base_url=settings.agent_llm_base_url,
                extra=settings.agent_llm_extra,
            ),
            workspace_root=settings.workspace_root,
            confirmation_policy=settings.confirmation_policy,
            security_analyzer=settings.security_analyzer,
        )
        http = new_http_client()
        secrets = SecretBox(secret_text(settings.secret_key))
        context = ProcessorContext(
            store=store,
            queue=queue,
            agent=agent,
            http=http,
            summary_mode=settings.summary_mode,
            conversation_url_template=settings.agent_conversation_url,
            confirmation_timeout=settings.confirmation_timeout,
            # Receivers are URLs API users choose; off private networks unless allowed.
            receiver_http=None
            if settings.webhook_allow_private_networks
            else guarded_receiver_client(),
        )
        shared = Shared(store, queue, http, secrets, context.conversation_url)
        platforms = {entry.name: entry.build(settings, shared) for entry in PLATFORMS}
        context = replace(
            context,
            platforms={name: p.api for name, p in platforms.items() if p.api is not None},
            # Checkouts need credentials the agent-server can fetch from the relay:
            # without an address for that, no platform serves workspaces.
            hosts={
                name: p.host
                for name, p in platforms.items()
                if p.host is not None and settings.relay_url_for_agent
            },
            workspace_policy=WorkspacePolicy(
                pull_requests=settings.pull_requests,
                branch_prefix=settings.branch_prefix,
                relay_url=settings.relay_url_for_agent,
            ),
        )
        shared.hosts.update(context.hosts)
        context = replace(
            context,
            credentials=Credentials(store, context.hosts, context.workspace_policy, secrets),
        )
        handlers = job_handlers(context)
        for platform in platforms.values():
            handlers.update(platform.job_handlers)
        retention = Retention(
            store,
            queue,
            retention_days=settings.retention_days,
            period=settings.retention_interval_seconds,
            # Idle conversations' working directories and agent conversations go by
            # the same schedule and cutoff as the rest.
            also=[WorkspaceCleanup(store, agent)],
        )
        handlers[PRUNE_JOB.name] = retention.handle
        reconciler = Reconciler(
            context,
            interval=settings.reconcile_interval_seconds,
            after=settings.reconcile_after_seconds,
        )
        handlers.update(reconciler.job_handlers())
        worker = Worker(queue, handlers, concurrency=settings.worker_concurrency)
        return cls(
            settings,
            store,
            queue,
            agent,
            http,
            worker,
            secrets,
            platforms,
            retention,
            receiver_http=context.receiver_http,
            credentials=context.credentials,
            reconciler=reconciler,
        )

    async def start(
        self, *, migrate_sqlite: bool = True, schedule_maintenance: bool = True
    ) -> None:
        await self.store.connect()
        if self.store.is_sqlite and migrate_sqlite:
            await migrate(self.store)
        elif not await is_current(self.store):
            log.error("database schema is out of date: run `agent-relay migrate`")
        for line in self.settings.feature_report():
            log.info(line)
        for risk in self.settings.risks():
            level = logging.ERROR if risk.level == "fail" else logging.WARNING
            log.log(level, "settings: %s -> %s", risk.detail, risk.fix)
        if self.settings.agent_workspace_dir:
            log.warning(
                "AGENT_WORKSPACE_DIR is the old name of AGENT_WORKSPACE_ROOT, under which"
                " each conversation now gets a directory of its own: rename it"
            )
        if schedule_maintenance and self.retention is not None:
            await self._schedule_retention(self.retention)
        if schedule_maintenance and self.reconciler is not None:
            await self._schedule_series("reconciliation", self.reconciler.schedule)
        for platform in self.platforms.values():
            if schedule_maintenance and platform.enabled and platform.redelivery is not None:
                redelivery = platform.redelivery
                await self._schedule_series(f"{platform.name} redelivery", redelivery.schedule)
        for platform in self.platforms.values():
            if platform.enabled and platform.start is not None:
                try:
                    await platform.start()
                except Exception as exc:
                    # e.g. a schema not migrated yet: the first job does it instead.
                    log.warning("%s: start-up step failed: %s", platform.name, type(exc).__name__)

    async def _schedule_retention(self, retention: Retention) -> None:
        # Processes that run workers start the periodic prune; one more start while
        # it is queued changes nothing.
        try:
            await retention.schedule()
        except Exception as exc:
            # e.g. a schema not migrated yet: serve anyway, as readiness reports it.
            log.warning("could not schedule the retention job: %s: %s", type(exc).__name__, exc)

    async def _schedule_series(self, what: str, schedule: Callable[[], Awaitable[object]]) -> None:
        # As the retention job: one more start while a run is queued changes nothing.
        try:
            await schedule()
        except Exception as exc:
            log.warning("could not schedule the %s job: %s: %s", what, type(exc).__name__, exc)

    async def close(self) -> None:
        await self.agent.aclose()
        await self.http.aclose()
        if self.receiver_http is not None:
            await self.receiver_http.aclose()
        await self.store.disconnect()

    @contextlib.asynccontextmanager
    async def running_worker(self) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(self.worker.run(stop))
        try:
            yield
        finally:
            stop.set()
            await task


def create_app(settings: Settings, *, run_worker: bool = True) -> Starlette:
    relay = Relay.build(settings)
    intake = AgentIntake(
        relay.store,
        relay.queue,
        session_api_key=secret_text(settings.agent_server_api_key),
        webhook_secret=secret_text(settings.agent_webhook_secret),
    )
    api = RelayApi(
        relay.store,
        relay.queue,
        relay.agent,
        secret_text(settings.api_token),
        allow_private_receivers=settings.webhook_allow_private_networks,
    )
    connections = [
        platform.connection
        for platform in relay.platforms.values()
        if platform.enabled and platform.connection is not None
    ]
    health = Health(
        relay.store, relay.queue, relay.worker if run_worker else None, connections=connections
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await relay.start(schedule_maintenance=run_worker)
        for connection in connections:
            await connection.start()
        try:
            if run_worker:
                async with relay.running_worker():
                    yield
            else:
                yield
        finally:
            for connection in connections:
                await connection.stop()
            await relay.close()

    # The operator status page; also the login that guards /github/setup.
    # Its agent-server and platform lines are `agent-relay doctor`'s checks.
    admin = AdminPage(
        settings=settings,
        store=relay.store,
        queue=relay.queue,
        links=[platform.links for platform in relay.platforms.values()],
        checks=Checks(relay),
    )
    credentials = CredentialsRoute(relay.credentials)
    # Webhooks first: Starlette tries routes in order, and they are most of the traffic.
    routes: list[BaseRoute] = [*intake.routes()]
    for platform in relay.platforms.values():
        routes += platform.routes(admin.require_admin)
    routes += [*credentials.routes(), *api.routes(), *admin.routes(), *health.routes()]
    app = Starlette(
        routes=routes,
        # Outermost, so that refused bodies are timed too.
        middleware=[Middleware(WebhookTiming), Middleware(BodySizeLimit)],
        lifespan=lifespan,
    )
    app.state.relay = relay
    return app
