"""Slack as the composition root builds it: the Bolt app's routes, the `slack.event`
job, the Web API client replies go through, and the OAuth installation store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pydantic import SecretStr
from slack_bolt.async_app import AsyncApp
from starlette.routing import BaseRoute

from bots.features import Feature, Risk
from bots.platform import AdminGate, Platform, PlatformPackage, Shared
from bots.slack import PLATFORM
from bots.slack.api import SlackApi
from bots.slack.blocks import (
    APPROVE_ACTION,
    NO_REPOSITORY_ACTION,
    PICK_ACTION,
    REJECT_ACTION,
    STOP_ACTION,
)
from bots.slack.checks import SlackCheck, SlackCheckSettings
from bots.slack.controls import SlackControls
from bots.slack.inbound import build_slack_app, slack_routes
from bots.slack.installations import DatabaseInstallationStore, DatabaseOAuthStateStore
from bots.slack.interactions import SLACK_INTERACTION_JOB, Modal, SlackInteractionJob
from bots.slack.job import SLACK_EVENT_JOB, SlackEventJob
from bots.slack.links import SlackLinks
from bots.slack.picks import RepositoryPicks
from bots.slack.reply import SlackCallbackProcessor
from bots.slack.socket_mode import SlackSocketMode
from db.secrets import secret_text

# The controls that ask for a reason in a modal before they count.
MODALS = {
    REJECT_ACTION: Modal(
        title="Reject",
        label="Why? The agent reads this and tries another way.",
        submit="Reject",
    )
}


class SlackSettings(SlackCheckSettings, Protocol):
    """The settings Slack reads (its checks' and these)."""

    slack_signing_secret: SecretStr | None
    slack_client_id: str | None
    slack_client_secret: SecretStr | None
    default_repository: str | None
    secret_key: SecretStr | None
    slack_approvers: list[str]


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
    controls = SlackControls(shared.turns, frozenset(settings.slack_approvers))
    picks = RepositoryPicks(event_job.repositories, shared.queue)
    interaction_job = SlackInteractionJob(
        api,
        {
            STOP_ACTION: controls.on_stop,
            APPROVE_ACTION: controls.on_approve,
            # The Reject button opens MODALS[REJECT_ACTION]; its submission lands here.
            REJECT_ACTION: controls.on_reject,
            PICK_ACTION: picks.on_pick,
            NO_REPOSITORY_ACTION: picks.on_no_repository,
        },
    )
    signing_secret = secret_text(settings.slack_signing_secret)
    app_token = secret_text(settings.slack_app_token)

    def bolt_app() -> AsyncApp:
        return build_slack_app(
            store=shared.store,
            queue=shared.queue,
            signing_secret=None if app_token else signing_secret,
            api_url=settings.slack_api_url,
            bot_token=secret_text(settings.slack_bot_token),
            client_id=settings.slack_client_id,
            client_secret=secret_text(settings.slack_client_secret),
            installation_store=installations,
            state_store=DatabaseOAuthStateStore(shared.store) if installations else None,
            public_url=settings.public_url,
            modals=MODALS,
            repository_options=event_job.repositories.options,
        )

    def routes(gate: AdminGate) -> Sequence[BaseRoute]:
        # Bolt checks its own requests (signatures, OAuth states): no login here.
        # In Socket Mode the events come over the connection: no route at all.
        return [] if app_token else slack_routes(bolt_app())

    handlers = {
        SLACK_EVENT_JOB.name: event_job.handle,
        SLACK_INTERACTION_JOB.name: interaction_job.handle,
    }
    platform = Platform(PLATFORM, True, check, links, api, job_handlers=handlers, routes=routes)
    if app_token:
        platform.connection = SlackSocketMode(bolt_app, app_token)
    return platform


def feature(settings: SlackSettings) -> Feature:
    if settings.slack_mode == "oauth":
        return Feature("slack", True, "many workspaces", "OAuth at /slack/install", platform=True)
    if settings.slack_mode == "single" and settings.slack_app_token:
        return Feature(
            "slack", True, "one workspace over Socket Mode", "SLACK_APP_TOKEN", platform=True
        )
    if settings.slack_mode == "single":
        return Feature("slack", True, "one workspace", "SLACK_BOT_TOKEN", platform=True)
    if settings.slack_signing_secret and settings.slack_client_id and not settings.secret_key:
        missing = "OAuth needs SECRET_KEY to encrypt bot tokens"
    else:
        missing = "set SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN or SLACK_CLIENT_ID/SECRET"
    return Feature("slack", False, missing=missing, platform=True)


def risks(settings: SlackSettings) -> list[Risk]:
    risks = []
    oauth_asked = bool(settings.slack_client_id or settings.slack_client_secret)
    if oauth_asked and not (settings.slack_client_id and settings.slack_client_secret):
        missing = "SLACK_CLIENT_SECRET" if settings.slack_client_id else "SLACK_CLIENT_ID"
        risks.append(Risk("warn", f"Slack OAuth is half set: {missing} is unset", f"set {missing}"))
    if oauth_asked and not settings.secret_key:
        risks.append(
            Risk(
                "warn",
                "Slack OAuth needs SECRET_KEY to encrypt the workspaces' bot tokens",
                "set SECRET_KEY (at least 16 characters; keep it)",
            )
        )
    if settings.slack_mode == "oauth" and settings.slack_bot_token:
        risks.append(
            Risk(
                "warn",
                "SLACK_BOT_TOKEN is ignored: OAuth installations win",
                "unset SLACK_BOT_TOKEN",
            )
        )
    credentials = settings.slack_bot_token or settings.slack_client_id
    if credentials and not (settings.slack_signing_secret or settings.slack_app_token):
        risks.append(
            Risk(
                "warn",
                "Slack credentials are set but SLACK_SIGNING_SECRET is not: Slack is off",
                "set SLACK_SIGNING_SECRET",
            )
        )
    return risks


SLACK = PlatformPackage(PLATFORM, feature, risks, (SlackCallbackProcessor,), build)
