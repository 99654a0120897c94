"""GitHub as the composition root builds it: the webhook route and the one-click setup
page, the `github.event` job, the App's REST client replies go through, and the
repository host conversations' checkouts use."""

from __future__ import annotations

from typing import Protocol

from pydantic import SecretStr
from starlette.routing import BaseRoute

from bots.features import Feature, Risk
from bots.github import PLATFORM
from bots.github.api import GithubApi
from bots.github.checks import GithubCheck, GithubCheckSettings
from bots.github.credentials import AppCredentials, GithubAppSource
from bots.github.host import GithubHost
from bots.github.inbound import GITHUB_EVENT_JOB, github_routes
from bots.github.job import GithubEventJob
from bots.github.links import GithubLinks
from bots.github.redelivery import github_redelivery
from bots.github.reply import GithubCallbackProcessor
from bots.github.setup import github_setup_routes
from bots.platform import AdminGate, Platform, PlatformPackage, Shared


class GithubSettings(GithubCheckSettings, Protocol):
    """The settings GitHub reads (its checks' and these)."""

    github_app_id: str | None
    github_webhook_secret: SecretStr | None
    github_url: str
    github_edit_ack_comment: bool
    github_private_key: SecretStr | None
    github_private_key_path: str | None
    bot_mention: str
    trigger_label: str
    github_redeliver_interval_seconds: float
    retention_days: float

    def github_private_key_text(self) -> str | None: ...


def configured_app(settings: GithubSettings) -> AppCredentials | None:
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


def build(settings: GithubSettings, shared: Shared) -> Platform:
    enabled = settings.github_mode is not None
    source = GithubAppSource(shared.store, shared.secrets, configured_app(settings))

    def setup_routes(gate: AdminGate) -> list[BaseRoute]:
        # Always there: without SECRET_KEY the page says that it needs one.
        return list(
            github_setup_routes(
                source=source,
                store=shared.store,
                http=shared.http,
                github_url=settings.github_url,
                api_url=settings.github_api_url,
                public_url=settings.public_url,
                secret_key_set=shared.secrets.available,
                require_admin=gate,
            )
        )

    links = GithubLinks(settings.github_url)
    if not enabled:
        check = GithubCheck(settings, None).check
        return Platform(PLATFORM, enabled=False, check=check, links=links, routes=setup_routes)
    api = GithubApi(shared.http, source, settings.github_api_url)
    event_job = GithubEventJob(
        shared.turns,
        shared.secrets,
        api,
        mention=settings.bot_mention,
        trigger_label=settings.trigger_label,
        edit_ack_comment=settings.github_edit_ack_comment,
    )

    def routes(gate: AdminGate) -> list[BaseRoute]:
        events = github_routes(
            store=shared.store,
            queue=shared.queue,
            source=source,
            mention=settings.bot_mention,
            trigger_label=settings.trigger_label,
        )
        return [*events, *setup_routes(gate)]

    handlers = {GITHUB_EVENT_JOB.name: event_job.handle}
    check = GithubCheck(settings, source).check
    platform = Platform(PLATFORM, True, check, links, api, job_handlers=handlers, routes=routes)
    platform.host = GithubHost(api)
    # Parsing the App's key holds the event loop for tens of milliseconds: once,
    # now, rather than in the first job.
    platform.start = api.prepare
    every, days = settings.github_redeliver_interval_seconds, settings.retention_days
    platform.add_redelivery(
        github_redelivery(shared.store, shared.queue, api, interval=every, retention_days=days)
    )
    return platform


def feature(settings: GithubSettings) -> Feature:
    if settings.github_mode == "settings":
        return Feature(
            "github", True, "app from GITHUB_APP_ID", address=settings.github_url, platform=True
        )
    if settings.github_mode == "setup":
        return Feature(
            "github",
            True,
            "app from the setup page",
            page="/github/setup",
            address=settings.github_url,
            platform=True,
        )
    return Feature(
        "github",
        False,
        missing="set GITHUB_APP_ID, GITHUB_PRIVATE_KEY(_PATH) and GITHUB_WEBHOOK_SECRET,"
        " or SECRET_KEY for the setup page",
        platform=True,
    )


def risks(settings: GithubSettings) -> list[Risk]:
    parts = {
        "GITHUB_APP_ID": bool(settings.github_app_id),
        "GITHUB_PRIVATE_KEY(_PATH)": bool(
            settings.github_private_key or settings.github_private_key_path
        ),
        "GITHUB_WEBHOOK_SECRET": bool(settings.github_webhook_secret),
    }
    if not any(parts.values()) or all(parts.values()):
        return []
    missing = ", ".join(name for name, present in parts.items() if not present)
    return [
        Risk(
            "warn",
            f"the GitHub App settings are incomplete ({missing} unset), so they are unused",
            f"set {missing}",
        )
    ]


GITHUB = PlatformPackage(PLATFORM, feature, risks, (GithubCallbackProcessor,), build)
