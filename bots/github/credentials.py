"""The GitHub App's own credentials: from the settings, or stored by the manifest flow.

A deployment has one GitHub App. Its id, private key and webhook secret come either
from GITHUB_APP_ID / GITHUB_PRIVATE_KEY(_PATH) / GITHUB_WEBHOOK_SECRET, or from the
one-click manifest flow (/github/setup), which stores them encrypted with SECRET_KEY
in the installations table (platform "github-app"). The settings win when both exist.
Stored credentials are read from the database until found, so an app created through
the setup page works at once, in this process and in separate workers, without a
restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from db.installations import get_installation, save_installation
from db.secrets import SecretBox
from db.store import Store

log = logging.getLogger(__name__)

# The installations row that holds the app created by the manifest flow.
APP_PLATFORM = "github-app"
APP_ACCOUNT = "app"


@dataclass(frozen=True)
class AppCredentials:
    app_id: str
    # The app's URL name; its own comments come from `{slug}[bot]`. Unknown for an
    # app configured by hand until `GET /app` has been asked (bots.github.api).
    slug: str | None
    private_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    html_url: str | None = None
    # "settings" or "manifest": where these came from, for the setup page and doctor.
    source: str = "settings"


class GithubAppSource:
    """Where this process finds the app's credentials (settings first, then the database)."""

    def __init__(self, store: Store, box: SecretBox, configured: AppCredentials | None) -> None:
        self._store = store
        self._box = box
        self._configured = configured
        self._stored: AppCredentials | None = None

    @property
    def configured_by_settings(self) -> bool:
        return self._configured is not None

    async def current(self) -> AppCredentials | None:
        if self._configured is not None:
            return self._configured
        if self._stored is None and self._box.available:
            self._stored = await load_stored_app(self._store, self._box)
        return self._stored

    async def save_from_manifest(self, conversion: dict[str, Any]) -> AppCredentials:
        """Store what `POST /app-manifests/{code}/conversions` returned; use it at once."""
        credentials = AppCredentials(
            app_id=str(conversion["id"]),
            slug=str(conversion["slug"]),
            private_key=str(conversion["pem"]),
            webhook_secret=str(conversion["webhook_secret"]),
            client_id=conversion.get("client_id"),
            client_secret=conversion.get("client_secret"),
            html_url=conversion.get("html_url"),
            source="manifest",
        )
        owner = conversion.get("owner") or {}
        await save_installation(
            self._store,
            self._box,
            platform=APP_PLATFORM,
            account_id=APP_ACCOUNT,
            details={
                "app_id": credentials.app_id,
                "slug": credentials.slug,
                "name": conversion.get("name"),
                "html_url": credentials.html_url,
                "owner": owner.get("login"),
            },
            credentials={
                "private_key": credentials.private_key,
                "webhook_secret": credentials.webhook_secret,
                "client_id": credentials.client_id,
                "client_secret": credentials.client_secret,
            },
        )
        self._stored = credentials
        log.info(
            "github: app %s (%s) stored from the manifest flow",
            credentials.slug,
            credentials.app_id,
        )
        return credentials


async def load_stored_app(store: Store, box: SecretBox) -> AppCredentials | None:
    row = await get_installation(store, box, APP_PLATFORM, APP_ACCOUNT)
    if row is None or row.credentials is None:
        return None
    secrets = row.credentials
    return AppCredentials(
        app_id=str(row.details["app_id"]),
        slug=row.details.get("slug"),
        private_key=secrets["private_key"],
        webhook_secret=secrets["webhook_secret"],
        client_id=secrets.get("client_id"),
        client_secret=secrets.get("client_secret"),
        html_url=row.details.get("html_url"),
        source="manifest",
    )
