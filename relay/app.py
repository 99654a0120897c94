"""The composition root: builds every part from Settings and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.middleware import Middleware

from agent.client import AgentClient, LLMSettings
from agent.http import new_http_client
from agent.intake import AgentIntake
from bots.github.api import GithubApi
from bots.github.credentials import AppCredentials, GithubAppSource
from bots.github.inbound import GITHUB_EVENT_JOB, github_routes
from bots.github.job import GithubMentions
from bots.github.reply import GithubCallbackProcessor
from bots.github.setup import github_setup_routes
from bots.github.triggers import PLATFORM as GITHUB
from bots.gitlab.api import GitlabApi
from bots.gitlab.inbound import GITLAB_EVENT_JOB, GitlabEvents
from bots.gitlab.job import GitlabMentions
from bots.gitlab.reply import GitlabCallbackProcessor
from bots.gitlab.triggers import PLATFORM as GITLAB
from bots.slack.api import SlackApi
from bots.slack.inbound import build_slack_app, slack_routes
from bots.slack.installations import DatabaseInstallationStore, DatabaseOAuthStateStore
from bots.slack.job import SLACK_EVENT_JOB, SlackMentions
from bots.slack.reply import SlackCallbackProcessor
from bots.slack.triggers import PLATFORM as SLACK
from db.jobs import JobQueue
from db.migrations import is_current, migrate
from db.retention import PRUNE_JOB, Retention
from db.secrets import SecretBox
from db.store import Store
from processors import webhook  # noqa: F401  (registers the "webhook" processor kind)
from processors.base import ProcessorContext
from processors.receiver_guard import guarded_receiver_client
from processors.runtime import job_handlers
from relay.admin.page import AdminPage
from relay.api import RelayApi
from relay.doctor.runner import Checks
from relay.health import Health
from relay.limits import BodySizeLimit
from relay.settings import Settings
from relay.webhook_timing import WebhookTiming
from relay.worker import Worker

log = logging.getLogger(__name__)


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


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
    slack_installations: DatabaseInstallationStore | None = None
    github_source: GithubAppSource | None = None
    github: GithubApi | None = None
    gitlab: GitlabApi | None = None
    retention: Retention | None = None
    # Webhook receivers' client (ProcessorContext.receiver_http); None: `http`.
    receiver_http: httpx.AsyncClient | None = None

    @classmethod
    def build(cls, settings: Settings) -> Relay:
        store = Store(settings.database_url)
        queue = JobQueue(store, lease_seconds=settings.job_lease_seconds)
        agent = AgentClient(
            base_url=settings.agent_server_url,
            api_key=_secret(settings.agent_server_api_key),
            llm=LLMSettings(
                model=settings.agent_llm_model,
                api_key=_secret(settings.agent_llm_api_key),
                base_url=settings.agent_llm_base_url,
                extra=settings.agent_llm_extra,
            ),
            workspace_dir=settings.agent_workspace_dir,
        )
        http = new_http_client()
        secrets = SecretBox(_secret(settings.secret_key))
        platforms: dict[str, object] = {}
        slack_installations = None
        slack_teams = None
        if settings.slack_mode == "oauth":
            slack_installations = DatabaseInstallationStore(store, secrets)
        if settings.slack_mode is not None:
            slack_teams = platforms[SLACK] = SlackApi(
                settings.slack_api_url,
                bot_token=_secret(settings.slack_bot_token),
                installation_store=slack_installations,
            )
        github_source = github_clients = None
        if settings.github_mode is not None:
            github_source = GithubAppSource(store, secrets, configured_github_app(settings))
            github_clients = platforms[GITHUB] = GithubApi(
                http, github_source, settings.github_api_url
            )
        gitlab = None
        if settings.gitlab_enabled:
            assert settings.gitlab_token is not None
            gitlab = platforms[GITLAB] = GitlabApi(
                http, settings.gitlab_url, settings.gitlab_token.get_secret_value()
            )
        context = ProcessorContext(
            store=store,
            queue=queue,
            agent=agent,
            http=http,
            summary_mode=settings.summary_mode,
            conversation_url_template=settings.agent_conversation_url,
            platforms=platforms,
            # Receivers are URLs API users choose; off private networks unless allowed.
            receiver_http=None
            if settings.webhook_allow_private_networks
            else guarded_receiver_client(),
        )
        handlers = job_handlers(context)
        if slack_teams is not None:
            handlers[SLACK_EVENT_JOB] = SlackMentions(
                store,
                queue,
                slack_teams,
                new_processor=SlackCallbackProcessor,
                conversation_url=context.conversation_url,
                default_repository=settings.default_repository,
            ).handle
        if github_clients is not None:
            handlers[GITHUB_EVENT_JOB] = GithubMentions(
                store,
                queue,
                secrets,
                github_clients,
                new_processor=GithubCallbackProcessor,
                conversation_url=context.conversation_url,
                mention=settings.bot_mention,
                trigger_label=settings.trigger_label,
                edit_ack_comment=settings.github_edit_ack_comment,
            ).handle
        if gitlab is not None:
            handlers[GITLAB_EVENT_JOB] = GitlabMentions(
                store,
                queue,
                gitlab,
                new_processor=GitlabCallbackProcessor,
                conversation_url=context.conversation_url,
                mention=settings.bot_mention,
                trigger_label=settings.trigger_label,
            ).handle
        retention = Retention(
            store,
            queue,
            retention_days=settings.retention_days,
            period=settings.retention_interval_seconds,
        )
        handlers[PRUNE_JOB] = retention.handle
        worker = Worker(queue, handlers, concurrency=settings.worker_concurrency)
        return cls(
            settings,
            store,
            queue,
            agent,
            http,
            worker,
            secrets,
            slack_installations,
            github_source,
            github_clients,
            gitlab,
            retention,
            receiver_http=context.receiver_http,
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
        if schedule_maintenance and self.retention is not None:
            await self._schedule_retention(self.retention)
        if self.github is not None:
            try:
                await self.github.prepare()
            except Exception as exc:
                # e.g. a schema not migrated yet: the first job parses it instead.
                log.warning("could not load the GitHub App's key: %s", type(exc).__name__)

    async def _schedule_retention(self, retention: Retention) -> None:
        # Processes that run workers start the periodic prune; one more start while
        # it is queued changes nothing.
        try:
            await retention.schedule()
        except Exception as exc:
            # e.g. a schema not migrated yet: serve anyway, as readiness reports it.
            log.warning("could not schedule the retention job: %s: %s", type(exc).__name__, exc)

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


def configured_github_app(settings: Settings) -> AppCredentials | None:
    """The GitHub App of GITHUB_APP_ID and friends, when the settings name one."""
    if settings.github_mode != "settings":
        return None
    assert settings.github_app_id and settings.github_webhook_secret
    private_key = settings.github_private_key_text()
    assert private_key is not None
    return AppCredentials(
        app_id=settings.github_app_id,
        slug=None,
        private_key=private_key,
        webhook_secret=settings.github_webhook_secret.get_secret_value(),
    )


def create_app(settings: Settings, *, run_worker: bool = True) -> Starlette:
    relay = Relay.build(settings)
    intake = AgentIntake(
        relay.store,
        relay.queue,
        session_api_key=_secret(settings.agent_server_api_key),
        webhook_secret=_secret(settings.agent_webhook_secret),
    )
    api = RelayApi(
        relay.store,
        relay.queue,
        relay.agent,
        _secret(settings.api_token),
        allow_private_receivers=settings.webhook_allow_private_networks,
    )
    health = Health(relay.store, relay.queue, relay.worker if run_worker else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await relay.start(schedule_maintenance=run_worker)
        try:
            if run_worker:
                async with relay.running_worker():
                    yield
            else:
                yield
        finally:
            await relay.close()

    # The operator status page; also the login that guards /github/setup.
    # Its agent-server and platform lines are `agent-relay doctor`'s checks.
    admin = AdminPage(settings=settings, store=relay.store, queue=relay.queue, checks=Checks(relay))
    routes = [*health.routes(), *intake.routes(), *api.routes(), *admin.routes()]
    if settings.slack_mode is not None:
        assert settings.slack_signing_secret is not None
        routes += slack_routes(
            build_slack_app(
                store=relay.store,
                queue=relay.queue,
                signing_secret=settings.slack_signing_secret.get_secret_value(),
                api_url=settings.slack_api_url,
                bot_token=_secret(settings.slack_bot_token),
                client_id=settings.slack_client_id,
                client_secret=_secret(settings.slack_client_secret),
                installation_store=relay.slack_installations,
                state_store=DatabaseOAuthStateStore(relay.store)
                if relay.slack_installations is not None
                else None,
                public_url=settings.public_url,
            )
        )
    if relay.github_source is not None:
        routes += github_routes(
            store=relay.store,
            queue=relay.queue,
            source=relay.github_source,
            mention=settings.bot_mention,
            trigger_label=settings.trigger_label,
        )
    # Always there: without SECRET_KEY the page says that it needs one.
    routes += github_setup_routes(
        source=relay.github_source or GithubAppSource(relay.store, relay.secrets, None),
        store=relay.store,
        http=relay.http,
        github_url=settings.github_url,
        api_url=settings.github_api_url,
        public_url=settings.public_url,
        secret_key_set=relay.secrets.available,
        require_admin=admin.require_admin,
    )
    if relay.gitlab is not None:
        assert settings.gitlab_webhook_secret is not None
        gitlab = relay.gitlab
        routes += GitlabEvents(
            store=relay.store,
            queue=relay.queue,
            secret=settings.gitlab_webhook_secret.get_secret_value(),
            mention=settings.bot_mention,
            trigger_label=settings.trigger_label,
            known_bot_user_id=lambda: gitlab.known_bot_user_id,
        ).routes()
    app = Starlette(
        routes=routes,
        # Outermost, so that refused bodies are timed too.
        middleware=[Middleware(WebhookTiming), Middleware(BodySizeLimit)],
        lifespan=lifespan,
    )
    app.state.relay = relay
    return app
