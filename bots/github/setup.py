"""One-click GitHub App setup: GET /github/setup and GET /github/setup/callback.

The page posts manifests/github-app.json (bots.github.manifest), filled in with
PUBLIC_URL, to GitHub's "new app" page for the person's account or for an
organisation. GitHub creates the app and sends the browser back to the callback with
a code, which is exchanged (`POST /app-manifests/{code}/conversions`) for the app's
id, slug, private key, webhook secret and client id/secret. GithubAppSource stores
them encrypted with SECRET_KEY and uses them at once: no restart.

Who may finish the flow: the callback must carry a state issued by this page
(db.oauth_states: single-use, expiring) that also matches the HttpOnly cookie the page
set, so a code cannot be slipped to the relay from another browser. Once an app exists
(from the settings or from an earlier run of the flow) the page shows it and its
install link and offers no second one; the callback refuses with 409.

Nothing secret is rendered or logged: pages show the app id, slug and links only.

Who may open the pages at all is the composition root's decision: it passes
`require_admin` (relay/admin/page.py: the status page's login), which answers instead
of the page when the browser has no operator session. The state cookie is written as
the status page's cookies are (bots/web_session.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
from gidgethub import BadRequest, HTTPException
from gidgethub.httpx import GitHubAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from agent.http import USER_AGENT
from bots.github import PLATFORM
from bots.github.credentials import AppCredentials, GithubAppSource
from bots.github.manifest import render_manifest
from bots.pages import Pages
from bots.web_session import PublicSite, RequireAdmin, origin
from db.oauth_states import consume_state, issue_state
from db.secrets import CredentialsUnreadable, SecretKeyMissing
from db.store import Store

log = logging.getLogger(__name__)

STATE_COOKIE = "agent_relay_github_state"
# Between this page and the callback the person is on GitHub, naming the app; GitHub's
# code itself lives an hour, so the state does too.
STATE_TTL_SECONDS = 3600.0
SETUP_PATH = "/github/setup"
CALLBACK_PATH = "/github/setup/callback"
GITHUB_JSON = "application/vnd.github+json"

# GitHub account names: letters, digits and single hyphens, at most 39 characters.
_ORGANIZATION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
# GitHub's manifest codes are short hex strings; anything else never leaves the relay.
_CODE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_CONVERSION_FIELDS = ("id", "slug", "pem", "webhook_secret")

_PAGES = Pages(Path(__file__).resolve().parent / "templates")


class _SetupFlow:
    def __init__(
        self,
        *,
        source: GithubAppSource,
        store: Store,
        http: httpx.AsyncClient,
        github_url: str,
        api_url: str,
        public_url: str | None,
        secret_key_set: bool,
        require_admin: RequireAdmin | None,
    ) -> None:
        self._require_admin = require_admin
        self._source = source
        self._store = store
        self._http = http
        self._github_url = github_url.rstrip("/")
        self._api_url = api_url
        self._public_url = public_url.rstrip("/") if public_url else None
        self._secret_key_set = secret_key_set
        # Serialises "is there an app yet? store this one" within the process.
        self._saving = asyncio.Lock()
        self._site = PublicSite(self._public_url)
        # The cookie goes back only to the setup pages, also behind a path prefix.
        self._cookie_path = self._site.base + SETUP_PATH
        self._setup_url = (self._public_url or "") + SETUP_PATH
        form_targets = {"'self'", origin(self._github_url)}
        if self._site.origin:
            form_targets.add(self._site.origin)
        self._headers = {
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            # No script at all; forms may go to GitHub and back to the relay only.
            "Content-Security-Policy": (
                "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
                f"frame-ancestors 'none'; form-action {' '.join(sorted(form_targets))}"
            ),
        }

    # --- rendering ----------------------------------------------------------------------

    def _page(
        self,
        request: Request,
        mode: str,
        *,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> Response:
        values: dict[str, Any] = {
            "mode": mode,
            "message": None,
            "app": None,
            "installed": False,
            "setup_url": self._setup_url,
            "github_url": self._github_url,
            **context,
        }
        return _PAGES.render(
            request,
            "setup.html",
            values,
            status_code=status_code,
            headers={**self._headers, **(headers or {})},
        )

    def _callback_page(
        self, request: Request, status_code: int, message: str, *, clear_cookie: bool
    ) -> Response:
        # The callback's URL holds the code: no Referer carries it to another site.
        response = self._page(
            request,
            "error",
            status_code=status_code,
            headers={"Referrer-Policy": "no-referrer"},
            message=message,
        )
        if clear_cookie:
            self._clear_cookie(response)
        return response

    def _clear_cookie(self, response: Response) -> None:
        self._site.delete_cookie(response, STATE_COOKIE, self._cookie_path)

    def _app_view(self, app: AppCredentials) -> dict[str, Any]:
        install_url = (
            f"{self._github_url}/apps/{quote(app.slug, safe='')}/installations/new"
            if app.slug
            else None
        )
        return {
            "slug": app.slug,
            "app_id": app.app_id,
            "from_settings": app.source == "settings",
            "html_url": app.html_url,
            "install_url": install_url,
        }

    def _unreadable(self, request: Request) -> Response:
        log.error("github setup: the stored app's credentials do not decrypt with SECRET_KEY")
        return self._page(request, "unreadable", status_code=500)

    def _gate(self, request: Request) -> Response | None:
        return None if self._require_admin is None else self._require_admin(request)

    # --- GET /github/setup --------------------------------------------------------------

    async def setup(self, request: Request) -> Response:
        if (gate := self._gate(request)) is not None:
            return gate
        try:
            app = await self._source.current()
        except CredentialsUnreadable:
            return self._unreadable(request)
        # GitHub sends people here after they install (or reconfigure) the app.
        installed = request.query_params.get("setup_action") in {"install", "update"}
        if app is not None:
            return self._page(request, "app", app=self._app_view(app), installed=installed)
        if self._public_url is None:
            return self._page(request, "needs_public_url")
        if not self._secret_key_set:
            return self._page(request, "needs_secret_key")

        organization = request.query_params.get("organization", "").strip()
        organization_error = None
        if organization and not _ORGANIZATION.fullmatch(organization):
            organization_error = organization
            organization = ""
        state = await issue_state(self._store, PLATFORM, ttl_seconds=STATE_TTL_SECONDS)
        query = urlencode({"state": state})
        response = self._page(
            request,
            "create",
            manifest=json.dumps(render_manifest(self._public_url)),
            personal_action=f"{self._github_url}/settings/apps/new?{query}",
            organization=organization,
            organization_error=organization_error,
            organization_action=(
                f"{self._github_url}/organizations/{quote(organization, safe='')}"
                f"/settings/apps/new?{query}"
                if organization
                else None
            ),
            # The state cookie is set for the host the browser is on; GitHub sends it back
            # to PUBLIC_URL. When they differ, the callback cannot match the two.
            other_host=request.url.netloc != urlsplit(self._public_url).netloc,
        )
        self._site.set_cookie(
            response,
            STATE_COOKIE,
            state,
            max_age=int(STATE_TTL_SECONDS),
            path=self._cookie_path,
            samesite="lax",
        )
        return response

    # --- GET /github/setup/callback -----------------------------------------------------

    async def callback(self, request: Request) -> Response:
        if (gate := self._gate(request)) is not None:
            return gate
        try:
            conversion = await self._checked_conversion(request)
            async with self._saving:
                if await self._source.current() is not None:
                    raise _Refusal(
                        409,
                        "Another setup finished first, so this app was not stored. Delete "
                        f"the app '{conversion['slug']}' in your GitHub settings.",
                    )
                await self._source.save_from_manifest(conversion)
        except CredentialsUnreadable:
            return self._unreadable(request)
        except SecretKeyMissing:
            return self._callback_page(
                request,
                400,
                "The app's credentials could not be stored: set SECRET_KEY.",
                clear_cookie=True,
            )
        except _Refusal as refusal:
            return self._callback_page(
                request, refusal.status_code, refusal.message, clear_cookie=refusal.clear_cookie
            )
        response = RedirectResponse(self._setup_url, status_code=303)
        response.headers["Referrer-Policy"] = "no-referrer"
        self._clear_cookie(response)
        return response

    async def _checked_conversion(self, request: Request) -> dict[str, Any]:
        """GitHub's answer for this callback's code, once every check has passed."""
        if await self._source.current() is not None:
            raise _Refusal(
                409, "A GitHub App is already set up for this relay; a second one is not created."
            )
        if not self._secret_key_set:
            raise _Refusal(
                400,
                "Set SECRET_KEY first: the app's credentials are stored encrypted with it.",
                clear_cookie=False,
            )
        code = request.query_params.get("code", "")
        state = request.query_params.get("state", "")
        cookie = request.cookies.get(STATE_COOKIE, "")
        if not state or not cookie or not secrets.compare_digest(state, cookie):
            log.warning("github setup: callback refused, its state is not this browser's")
            # The cookie may belong to a flow still under way in this browser: kept.
            raise _Refusal(
                400,
                "This link was not started from this browser's setup page. "
                "Start again from the setup page.",
                clear_cookie=False,
            )
        if not await consume_state(self._store, PLATFORM, state):
            log.warning("github setup: callback refused, unknown, expired or used state")
            raise _Refusal(
                400,
                "This setup link has expired or was already used. Start again from the setup page.",
            )
        if not _CODE.fullmatch(code):
            raise _Refusal(400, "GitHub sent no usable code. Start again from the setup page.")
        return await self._convert(code)

    async def _convert(self, code: str) -> dict[str, Any]:
        """`POST /app-manifests/{code}/conversions`: the new app and its credentials."""
        api = GitHubAPI(self._http, USER_AGENT, base_url=self._api_url)
        try:
            answer = await api.post(
                "/app-manifests/{code}/conversions",
                url_vars={"code": code},
                data=b"",
                accept=GITHUB_JSON,
            )
        except BadRequest as exc:
            log.warning("github setup: GitHub refused the manifest code (HTTP %s)", exc.status_code)
            raise _Refusal(
                400,
                "GitHub did not accept this setup code: it works once, within an hour. "
                "Start again from the setup page.",
            ) from None
        except (HTTPException, httpx.HTTPError) as exc:
            log.warning("github setup: code conversion failed (%s)", type(exc).__name__)
            raise _Refusal(
                502, "GitHub could not be reached to finish the setup. Start again in a moment."
            ) from None
        if not isinstance(answer, dict) or any(not answer.get(name) for name in _CONVERSION_FIELDS):
            log.warning("github setup: GitHub's conversion answer lacks the app's credentials")
            raise _Refusal(502, "GitHub's answer lacked the app's credentials. Start again.")
        return answer


class _Refusal(Exception):
    """The callback stops here with a page that says why (and stores nothing)."""

    def __init__(self, status_code: int, message: str, *, clear_cookie: bool = True) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        # The state is spent (or the flow cannot go on): the browser may forget it.
        self.clear_cookie = clear_cookie


def github_setup_routes(
    *,
    source: GithubAppSource,
    store: Store,
    http: httpx.AsyncClient,
    github_url: str,
    api_url: str,
    public_url: str | None,
    secret_key_set: bool,
    require_admin: RequireAdmin | None = None,
) -> list[Route]:
    """The setup page and its callback. `secret_key_set`: SECRET_KEY is configured, so
    the credentials GitHub hands over can be stored (encrypted with it). `require_admin`,
    when given, runs first: a Response from it (the way to a login) answers instead."""
    flow = _SetupFlow(
        source=source,
        store=store,
        http=http,
        github_url=github_url,
        api_url=api_url,
        public_url=public_url,
        secret_key_set=secret_key_set,
        require_admin=require_admin,
    )
    return [
        Route(SETUP_PATH, flow.setup, methods=["GET"]),
        Route(CALLBACK_PATH, flow.callback, methods=["GET"]),
    ]
