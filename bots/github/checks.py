"""Doctor's GitHub checks: does GitHub take the app's JWT (`GET /app`), where is the
app installed, and may it write to repositories, which the agent's pushes need unless
PULL_REQUESTS=off? Asked through the relay's own GitHub client and GITHUB_API_URL."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bots.checks import (
    CheckResult,
    CheckRun,
    PublicUrlSettings,
    fail,
    ok,
    public_link,
    reason,
    skip,
    status_of,
    warn,
)
from bots.github.api import GithubApi
from bots.github.credentials import AppCredentials, GithubAppSource
from db.job_kinds import PermanentJobError, RetryableJobError

_GITHUB_DOWN = "check GITHUB_API_URL and GitHub's status"
PERMISSIONS_CHECK = "github permissions"


class GithubCheckSettings(PublicUrlSettings, Protocol):
    """The settings GitHub's checks read."""

    github_api_url: str
    github_url: str

    @property
    def github_mode(self) -> Literal["settings", "setup"] | None: ...

    # PULL_REQUESTS: "draft", "ready" or "off" (no pushes: contents read is enough).
    @property
    def pull_requests(self) -> str: ...


@dataclass(frozen=True)
class GithubCheck:
    settings: GithubCheckSettings
    # Where the relay finds the app (None: GitHub is off).
    source: GithubAppSource | None

    async def check(self, run: CheckRun) -> list[CheckResult]:
        source = self.source
        if self.settings.github_mode is None or source is None:
            return [skip("github", "not configured")]
        if not source.configured_by_settings:
            unavailable = await run.database_ready()
            if unavailable:
                return [skip("github app", f"cannot read the stored app: {unavailable}")]
        try:
            async with asyncio.timeout(run.timeout):
                app = await source.current()
        except Exception as exc:
            return [
                fail(
                    "github app",
                    f"the stored app is unreadable ({type(exc).__name__})",
                    "set SECRET_KEY back to the key it was stored with",
                )
            ]
        if app is None:
            setup = public_link(self.settings.public_url, "/github/setup")
            return [warn("github app", "no app yet", f"create one at {setup}")]
        for secret in (app.private_key, app.webhook_secret, app.client_secret):
            if secret:
                run.add_secret(secret)
        return await self._app_and_installations(
            run, GithubApi(run.http, source, self.settings.github_api_url), app
        )

    async def _app_and_installations(
        self, run: CheckRun, clients: GithubApi, app: AppCredentials
    ) -> list[CheckResult]:
        found: dict[str, Any] = {}
        checked = await run.bounded("github app", lambda: _app(clients, app, found), _GITHUB_DOWN)
        if checked.status != "ok":
            return [
                checked,
                skip("github installations", "the app check failed"),
                skip(PERMISSIONS_CHECK, "the app check failed"),
            ]
        listed: list[dict[str, Any]] = []
        installations = await run.bounded(
            "github installations",
            lambda: _installations(clients, found.get("html_url") or app.html_url, listed),
            _GITHUB_DOWN,
        )
        permissions = _permissions(self.settings, found, listed)
        return [checked, installations, permissions]


async def _app(clients: GithubApi, app: AppCredentials, found: dict[str, Any]) -> CheckResult:
    """`GET /app` with the app's JWT; what GitHub answers is put into `found`."""
    origin = "settings" if app.source == "settings" else "the setup page"
    try:
        found.update(await clients.app_info())
    except PermanentJobError as exc:
        if app.source == "settings":
            fix = (
                "check GITHUB_APP_ID and GITHUB_PRIVATE_KEY(_PATH); generate a new private"
                " key in the app's settings if this one was revoked"
            )
        else:
            fix = (
                "set GITHUB_APP_ID, GITHUB_PRIVATE_KEY(_PATH) and GITHUB_WEBHOOK_SECRET of a"
                " working app (settings win over the stored one)"
            )
        status = status_of(exc)
        if status in (401, 403, 404):
            detail = f"GET /app refused the app's JWT (HTTP {status})"
        else:
            detail = reason(exc)
        return fail("github app", f"{detail}; app {app.app_id} from {origin}", fix)
    except RetryableJobError as exc:
        return fail("github app", reason(exc), _GITHUB_DOWN)
    slug = found.get("slug") or found.get("name") or "?"
    return ok("github app", f"{slug} (id {app.app_id}, from {origin})")


async def _installations(
    clients: GithubApi, html_url: str | None, listed: list[dict[str, Any]]
) -> CheckResult:
    """`GET /app/installations`; what GitHub lists is put into `listed`."""
    try:
        installations = await clients.app_installations()
    except (PermanentJobError, RetryableJobError) as exc:
        return fail("github installations", reason(exc), _GITHUB_DOWN)
    listed.extend(installations)
    if not installations:
        where = f"{html_url}/installations/new" if html_url else "the app's page on GitHub"
        return warn(
            "github installations", "the app is installed nowhere", f"install it from {where}"
        )
    accounts = [_account(installation) for installation in installations]
    suspended = [
        account for account, i in zip(accounts, installations, strict=True) if i.get("suspended_at")
    ]
    detail = f"{len(installations)} installation(s): {', '.join(accounts)}"
    if suspended:
        return warn(
            "github installations",
            f"{detail}; suspended: {', '.join(suspended)}",
            "unsuspend the app in those accounts' GitHub settings",
        )
    return ok("github installations", detail)


def _permissions(
    settings: GithubCheckSettings, app: dict[str, Any], installations: list[dict[str, Any]]
) -> CheckResult:
    """Whether the app, and each installation, may write to repositories' contents: the
    agent pushes its work with a token of the installation, which can hold no more
    than the installation granted. An app whose owner added the permission later has
    it in `GET /app` at once, but each installation only once its owner accepts it."""
    contents = (app.get("permissions") or {}).get("contents") or "none"
    if settings.pull_requests == "off":
        return ok(PERMISSIONS_CHECK, f"contents: {contents}; PULL_REQUESTS=off pushes nothing")
    if contents != "write":
        return warn(
            PERMISSIONS_CHECK,
            f"the app has contents: {contents}, not write: the agent cannot push its work"
            " and no pull request is opened",
            f"edit the app at {_app_settings_url(settings, app)}: Repository permissions,"
            " Contents: Read and write; then accept the new permission on each"
            " installation (or set PULL_REQUESTS=off)",
        )
    behind = [
        installation
        for installation in installations
        if (installation.get("permissions") or {}).get("contents") != "write"
    ]
    if behind:
        accounts = ", ".join(_account(installation) for installation in behind)
        pages = ", ".join(str(i.get("html_url") or _account(i)) for i in behind)
        return warn(
            PERMISSIONS_CHECK,
            f"the installation(s) of {accounts} have not accepted contents: write: the"
            " agent cannot push there",
            f"accept the app's new permissions on each installation ({pages})",
        )
    return ok(PERMISSIONS_CHECK, "contents: write (the agent pushes its work)")


def _account(installation: dict[str, Any]) -> str:
    return str((installation.get("account") or {}).get("login") or installation.get("id"))


def _app_settings_url(settings: GithubCheckSettings, app: dict[str, Any]) -> str:
    """The app's permissions page: under its owner's settings (an organisation's, or
    the personal account's)."""
    slug = app.get("slug") or "<app>"
    owner = app.get("owner") or {}
    base = settings.github_url.rstrip("/")
    if owner.get("type") == "Organization" and owner.get("login"):
        return f"{base}/organizations/{owner['login']}/settings/apps/{slug}/permissions"
    return f"{base}/settings/apps/{slug}/permissions"
