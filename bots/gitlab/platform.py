"""GitLab as the composition root builds it: the webhook route, the `gitlab.event`
job, the REST client (as the bot user) replies go through, and the repository host
conversations' checkouts are made with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pydantic import SecretStr
from starlette.routing import BaseRoute

from bots.features import Feature, Risk
from bots.gitlab import PLATFORM
from bots.gitlab.api import GitlabApi
from bots.gitlab.checks import GitlabCheck, GitlabCheckSettings
from bots.gitlab.host import GitlabHost
from bots.gitlab.inbound import GITLAB_EVENT_JOB, GitlabEvents
from bots.gitlab.job import GitlabEventJob
from bots.gitlab.links import GitlabLinks
from bots.gitlab.redelivery import gitlab_redelivery
from bots.gitlab.reply import GitlabCallbackProcessor
from bots.platform import AdminGate, Platform, PlatformPackage, Shared
from db.secrets import secret_text


class GitlabSettings(GitlabCheckSettings, Protocol):
    """The settings GitLab reads (its checks' and these)."""

    gitlab_webhook_secret: SecretStr | None
    # The token the agent pushes with (GITLAB_TOKEN when unset).
    gitlab_agent_token: SecretStr | None
    bot_mention: str
    trigger_label: str
    gitlab_redeliver_interval_seconds: float
    retention_days: float


def build(settings: GitlabSettings, shared: Shared) -> Platform:
    check, links = GitlabCheck(settings).check, GitlabLinks(settings.gitlab_url)
    if not settings.gitlab_enabled:
        return Platform(PLATFORM, enabled=False, check=check, links=links)
    assert settings.gitlab_token is not None and settings.gitlab_webhook_secret is not None
    token = settings.gitlab_token.get_secret_value()
    api = GitlabApi(shared.http, settings.gitlab_url, token)
    agent_token = secret_text(settings.gitlab_agent_token) or token
    host = GitlabHost(api, shared.http, settings.gitlab_url, agent_token)
    event_job = GitlabEventJob(
        shared.turns,
        api,
        mention=settings.bot_mention,
        trigger_label=settings.trigger_label,
    )
    events = GitlabEvents(
        store=shared.store,
        queue=shared.queue,
        secret=settings.gitlab_webhook_secret.get_secret_value(),
        mention=settings.bot_mention,
        trigger_label=settings.trigger_label,
        known_bot_user_id=lambda: api.known_bot_user_id,
    )

    def routes(gate: AdminGate) -> Sequence[BaseRoute]:
        return events.routes()

    handlers = {GITLAB_EVENT_JOB.name: event_job.handle}
    platform = Platform(
        PLATFORM, True, check, links, api, job_handlers=handlers, routes=routes, host=host
    )
    every, days = settings.gitlab_redeliver_interval_seconds, settings.retention_days
    platform.add_redelivery(
        gitlab_redelivery(shared.store, shared.queue, api, interval=every, retention_days=days)
    )
    return platform


def feature(settings: GitlabSettings) -> Feature:
    return Feature(
        "gitlab",
        settings.gitlab_enabled,
        address=settings.gitlab_url,
        missing="set GITLAB_TOKEN and GITLAB_WEBHOOK_SECRET",
        platform=True,
    )


def risks(settings: GitlabSettings) -> list[Risk]:
    if bool(settings.gitlab_token) == bool(settings.gitlab_webhook_secret):
        return []
    missing = "GITLAB_WEBHOOK_SECRET" if settings.gitlab_token else "GITLAB_TOKEN"
    return [Risk("warn", f"GitLab is off: {missing} is unset", f"set {missing}")]


GITLAB = PlatformPackage(PLATFORM, feature, risks, (GitlabCallbackProcessor,), build)
