"""GitHub REST calls made from jobs, as the app or as one of its installations.

gidgethub does the HTTP (its httpx GitHubAPI, pointed at GITHUB_API_URL) and the
app's JWT (gidgethub.apps). This module adds what a long-running server needs on
top: installation tokens cached until five minutes before they expire (one mint per
installation and hour, not one per request), a fresh token after a 401, and
GitHub's failures turned into job errors: rate limits and outages go back to the
queue (honouring Retry-After or x-ratelimit-reset), anything else fails the job with
a message that names the call and never a token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from gidgethub import BadRequest, GitHubBroken, HTTPException
from gidgethub.apps import get_installation_access_token, get_jwt
from gidgethub.httpx import GitHubAPI

from agent.http import USER_AGENT, retry_after
from bots.github.credentials import AppCredentials, GithubAppSource
from db.job_kinds import PermanentJobError, RetryableJobError

log = logging.getLogger(__name__)

# An installation token lives an hour; it is replaced this long before it expires,
# so a job never starts a call with a token about to lapse.
TOKEN_REFRESH_MARGIN_SECONDS = 300.0
# GitHub's documented advice for a secondary rate limit without Retry-After.
SECONDARY_RATE_LIMIT_WAIT_SECONDS = 60.0


class GithubNotConfigured(PermanentJobError):
    """No app credentials: neither settings nor the setup page provided them."""


class GithubRefused(PermanentJobError):
    """GitHub refused a call for good (a 4xx other than a rate limit); `status` says
    which, for callers to whom a 404 or a 422 is an answer rather than a failure, and
    `detail` GitHub's own words ("" when it gave none)."""

    def __init__(self, message: str, *, status: int, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


@dataclass
class _Token:
    value: str
    refresh_at: float


@asynccontextmanager
async def github_errors(what: str) -> AsyncIterator[None]:
    """Turn a failed call into the job error that says whether to try again."""
    try:
        yield
    except HTTPException as exc:
        status = int(exc.status_code)
        message = f"github {what}: HTTP {status}"
        # gidgethub keeps GitHub's "message" (or the status's phrase) as the only arg.
        detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
        if detail:
            message += f" {detail[:200]}"
        headers = getattr(exc, "headers", None) or {}
        if status == 429 or (status == 403 and _rate_limited(headers, detail)):
            raise RetryableJobError(message, retry_after=retry_after(headers)) from None
        if isinstance(exc, GitHubBroken) or status >= 500:
            raise RetryableJobError(message, retry_after=retry_after(headers)) from None
        raise GithubRefused(message, status=status, detail=detail[:200]) from None
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        raise RetryableJobError(f"github {what}: {type(exc).__name__}") from None


def github_time(text: str) -> float:
    """Epoch seconds of one of GitHub's timestamps ("2016-07-11T22:14:10Z")."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _rate_limited(headers: Any, detail: object) -> bool:
    # Primary limit: no requests left. Secondary limit: Retry-After, or GitHub's
    # message says so.
    if str(headers.get("x-ratelimit-remaining", "")) == "0" or headers.get("retry-after"):
        return True
    return isinstance(detail, str) and "rate limit" in detail.lower()


class GithubApi:
    """The app's GitHub clients: one per call, authorised as the app or an installation."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        source: GithubAppSource,
        api_url: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        # When cached tokens are due for renewal (tests move it forward).
        self._clock = clock
        self._source = source
        self._api_url = api_url.rstrip("/")
        self._tokens: dict[int, _Token] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._slug: str | None = None
        self._jwt: tuple[str, str, float] | None = None
        self._key: tuple[str, PrivateKeyTypes] | None = None

    def _api(self, token: str | None = None) -> GitHubAPI:
        return GitHubAPI(self._http, USER_AGENT, oauth_token=token, base_url=self._api_url)

    async def credentials(self) -> AppCredentials:
        app = await self._source.current()
        if app is None:
            raise GithubNotConfigured(
                "github: no app configured (set GITHUB_APP_ID, GITHUB_PRIVATE_KEY and"
                " GITHUB_WEBHOOK_SECRET, or create one at /github/setup)"
            )
        return app

    async def app_slug(self) -> str | None:
        """The app's slug: from the manifest flow, else asked once with `GET /app`."""
        app = await self.credentials()
        if app.slug:
            return app.slug
        if self._slug is None:
            info = await self.app_info()
            self._slug = str(info.get("slug") or "") or None
        return self._slug

    async def app_info(self) -> dict[str, Any]:
        app = await self.credentials()
        jwt = self._app_jwt(app)
        async with github_errors("GET /app"):
            info: dict[str, Any] = await self._api().getitem("/app", jwt=jwt)
        return info

    async def app_installations(self) -> list[dict[str, Any]]:
        """`GET /app/installations`, every page: where the app is installed."""
        app = await self.credentials()
        jwt = self._app_jwt(app)
        async with github_errors("GET /app/installations"):
            return [item async for item in self._api().getiter("/app/installations", jwt=jwt)]

    async def prepare(self) -> None:
        """Parse the app's key before the first job needs it (a process starting), so
        that no webhook waits behind the parse; a key that does not parse is logged."""
        app = await self._source.current()
        if app is None:
            return
        try:
            self._signing_key(app)
        except PermanentJobError as exc:
            log.error("%s", exc)

    def _signing_key(self, app: AppCredentials) -> PrivateKeyTypes:
        """The app's private key, parsed once. Parsing a PEM (OpenSSL checks the RSA
        key) takes about 36 ms of CPU, all of it holding the event loop; signing with
        the parsed key takes 0.3 ms. gidgethub passes the key on to PyJWT, which takes
        a parsed key as well as a PEM (gidgethub's annotation names only the PEM)."""
        cached = self._key
        if cached is None or cached[0] != app.private_key:
            try:
                key = load_pem_private_key(app.private_key.encode(), password=None)
            except (ValueError, TypeError):
                raise PermanentJobError(
                    "github: the app's private key is not an unencrypted PEM private key"
                ) from None
            cached = self._key = (app.private_key, key)
        return cached[1]

    def _app_jwt(self, app: AppCredentials) -> str:
        """The app's JWT, signed again only every few minutes (GitHub's JWTs last ten)."""
        cached = self._jwt
        if cached is None or cached[0] != app.app_id or self._clock() >= cached[2]:
            token = get_jwt(app_id=app.app_id, private_key=self._signing_key(app))  # type: ignore[arg-type]
            # gidgethub's JWTs last 10 minutes; use one for 8.
            cached = self._jwt = (app.app_id, token, self._clock() + 480.0)
        return cached[1]

    async def installation_token(self, installation_id: int) -> str:
        lock = self._locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(installation_id)
            if cached is not None and self._clock() < cached.refresh_at:
                return cached.value
            app = await self.credentials()
            async with github_errors(f"installation {installation_id} token"):
                minted = await get_installation_access_token(
                    self._api(),
                    installation_id=str(installation_id),
                    app_id=app.app_id,
                    private_key=self._signing_key(app),  # type: ignore[arg-type]
                )
            expires = github_time(str(minted["expires_at"]))
            token = _Token(str(minted["token"]), expires - TOKEN_REFRESH_MARGIN_SECONDS)
            self._tokens[installation_id] = token
            log.info("github: installation %s token minted", installation_id)
            return token.value

    def forget_token(self, installation_id: int) -> None:
        self._tokens.pop(installation_id, None)

    async def call(
        self,
        installation_id: int,
        method: str,
        url: str,
        *,
        data: Any = None,
        accept: str = "application/vnd.github+json",
    ) -> Any:
        """One REST call as the installation; a 401 gets one fresh token and a second try."""
        what = f"{method} {url}"
        for attempt in (1, 2):
            api = self._api(await self.installation_token(installation_id))
            try:
                async with github_errors(what):
                    try:
                        return await _send(api, method, url, data, accept)
                    except BadRequest as exc:
                        if exc.status_code == 401 and attempt == 1:
                            raise _StaleToken from None
                        raise
            except _StaleToken:
                log.info("github: installation %s token refused; minting another", installation_id)
                self.forget_token(installation_id)
        raise AssertionError("unreachable")

    async def call_as_app(self, method: str, url: str, *, data: Any = None) -> Any:
        """One REST call authorised by the app's JWT (the `/app/...` routes and
        `GET /repos/{o}/{r}/installation`)."""
        jwt = self._app_jwt(await self.credentials())
        async with github_errors(f"{method} {url}"):
            return await _send(self._api(), method, url, data, jwt=jwt)

    async def call_with_token(self, token: str, method: str, url: str) -> Any:
        """One REST call authorised by a token the caller holds (one minted for an
        agent's checkout): no cache, no second try."""
        async with github_errors(f"{method} {url}"):
            return await _send(self._api(token), method, url, None)

    async def items(
        self, installation_id: int, url: str, *, key: str = "items"
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a paginated list, following GitHub's Link headers (`key`: the
        member holding a page's items, when the page is an object)."""
        api = self._api(await self.installation_token(installation_id))
        async with github_errors(f"GET {url}"):
            async for item in api.getiter(url, iterable_key=key):
                yield item


async def _send(
    api: GitHubAPI,
    method: str,
    url: str,
    data: Any,
    accept: str = "application/vnd.github+json",
    *,
    jwt: str | None = None,
) -> Any:
    if method == "GET":
        return await api.getitem(url, accept=accept, jwt=jwt)
    if method == "POST":
        return await api.post(url, data=data or {}, accept=accept, jwt=jwt)
    if method == "PATCH":
        return await api.patch(url, data=data or {}, accept=accept, jwt=jwt)
    if method == "DELETE":
        return await api.delete(url, accept=accept, jwt=jwt)
    raise ValueError(f"unsupported method {method}")


class _StaleToken(Exception):
    """A 401 on a cached token: it was revoked or expired early."""


class GithubThread:
    """Where a conversation is held on GitHub: an issue or PR's comments, or one
    review thread of a PR (replies go under its top comment). Its comments are read
    once and kept: a job reads them, then searches them for its marker."""

    def __init__(
        self,
        api: GithubApi,
        installation_id: int,
        repository: str,
        number: int,
        review_thread_id: int | None = None,
    ) -> None:
        self.api = api
        self.installation_id = installation_id
        self.repository = repository
        self.number = number
        self.review_thread_id = review_thread_id
        self._comments: list[dict[str, Any]] | None = None

    async def post(self, body: str) -> int:
        if self.review_thread_id is not None:
            url = (
                f"/repos/{self.repository}/pulls/{self.number}"
                f"/comments/{self.review_thread_id}/replies"
            )
        else:
            url = f"/repos/{self.repository}/issues/{self.number}/comments"
        comment = await self.api.call(self.installation_id, "POST", url, data={"body": body})
        return int(comment["id"])

    async def edit(self, comment_id: int, body: str) -> None:
        kind = "pulls" if self.review_thread_id is not None else "issues"
        await self.api.call(
            self.installation_id,
            "PATCH",
            f"/repos/{self.repository}/{kind}/comments/{comment_id}",
            data={"body": body},
        )

    async def comments(self) -> list[dict[str, Any]]:
        """The thread's comments, oldest first (bots' included), as first read."""
        if self._comments is None:
            self._comments = await self._read_comments()
        return self._comments

    async def _read_comments(self) -> list[dict[str, Any]]:
        api, installation = self.api, self.installation_id
        if self.review_thread_id is None:
            url = f"/repos/{self.repository}/issues/{self.number}/comments?per_page=100"
            return [c async for c in api.items(installation, url)]
        url = f"/repos/{self.repository}/pulls/{self.number}/comments?per_page=100"
        thread = self.review_thread_id
        return [
            c
            async for c in api.items(installation, url)
            if c.get("id") == thread or c.get("in_reply_to_id") == thread
        ]

    async def find_marked(self, mark: str) -> int | None:
        """The comment an earlier attempt of a job posted with `mark` in it, if any."""
        # Newest first; a slice, not reversed(), which mypy types as Any here.
        for comment in (await self.comments())[::-1]:
            if mark in str(comment.get("body") or ""):
                return int(comment["id"])
        return None


class GithubHookDeliveries:
    """The app's webhook delivery log (app JWT): `GET /app/hook/deliveries` (newest
    first, cursor pages, kept 3 days) and `POST /app/hook/deliveries/{id}/attempts`."""

    def __init__(self, api: GithubApi) -> None:
        self._api = api

    async def since(self, since: float) -> list[dict[str, Any]]:
        """Every attempt delivered at `since` or later, newest first, from every page."""
        app = await self._api.credentials()
        jwt = self._api._app_jwt(app)
        found: list[dict[str, Any]] = []
        async with github_errors("GET /app/hook/deliveries"):
            pages = self._api._api().getiter("/app/hook/deliveries?per_page=100", jwt=jwt)
            async for attempt in pages:
                if epoch_of(str(attempt.get("delivered_at") or "")) < since:
                    break
                found.append(attempt)
        return found

    async def redeliver(self, delivery_id: str) -> None:
        app = await self._api.credentials()
        jwt = self._api._app_jwt(app)
        url = f"/app/hook/deliveries/{delivery_id}/attempts"
        async with github_errors(f"POST {url}"):
            await self._api._api().post(url, data={}, jwt=jwt)


def epoch_of(iso: str) -> float:
    """GitHub's ISO 8601 time (`2026-12-04T10:00:00Z`) as epoch seconds; 0 when absent."""
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
