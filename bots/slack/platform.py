"""Slack as the composition root builds it: the Bolt app's routes, the `slack.event`
job, the Web API client replies go through, and the OAuth installation store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pydantic import SecretStr
from starlette.routing import BaseRoute

from bots.platform import AdminGate, Platform, PlatformPackage, Shared
from bots.slack import PLATFORM
from bots.slack.api import SlackApi
from bots.slack.checks import SlackCheck, SlackCheckSettings
from bots.slack.inbound import build_slack_app, slack_routes
from bots.slack.installations import DatabaseInstallationStore, DatabaseOAuthStateStore
from bots.slack.job import SLACK_EVENT_JOB, SlackEventJob
from bots.slack.links import SlackLinks
from bots.slack.reply import SlackCallbackProcessor
from db.secrets import secret_text


class SlackSettings(SlackCheckSettings, Protocol):
    """The settings Slack reads (its checks' and these)."""

    slack_signing_secret: SecretStr | None
    slack_client_id: str | None
    slack_client_secret: SecretStr | None
    default_repository: str | None


def build(settings: SlackSettings, shared: Shared) -> Platform:
    check, links = SlackCheck(settings).check, SlackLinks()
    mode = settings.slack_mode
    if mode is None:
        return Platform(PLATFORM, enabled=False, check=check, links=links)
    installations = (
        DatabaseInstallationStore(shared.store, shared.secrets) if mode == "oauth" else None
    )
    api = SlackApi(
        settings.slack_api_url,
        bot_token=secret_text(settings.slack_bot_token),
        installation_store=installations,
    )
    event_job = SlackEventJob(
        shared.turns,
        api,
        default_repository=settings.default_repository,
    )
    signing_secret = secret_text(settings.slack_signing_secret)
    assert signing_secret is not None

    def routes(gate: AdminGate) -> Sequence[BaseRoute]:
        # Bolt checks its own requests (signatures, OAuth states): no login here.
        return slack_routes(
            build_slack_app(
                store=shared.store,
                queue=shared.queue,
                signing_secret=signing_secret,
                api_url=settings.slack_api_url,
                bot_token=secret_text(settings.slack_bot_token),
                client_id=settings.slack_client_id,
                client_secret=secret_text(settings.slack_client_secret),
                installation_store=installations,
                state_store=DatabaseOAuthStateStore(shared.store) if installations else None,
                public_url=settings.public_url,
            )
        )

    handlers = {SLACK_EVENT_JOB.name: event_job.handle}
    return Platform(PLATFORM, True, check, links, api, job_handlers=handlers, routes=routes)


SLACK = PlatformPackage(PLATFORM, (SlackCallbackProcessor,), build)
