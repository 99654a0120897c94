"""HTTP helpers every room shares (agent/ is the lowest room that speaks HTTP).

Every outbound call agent-relay makes (to the agent-server, to a webhook receiver,
to a platform API) goes through `send`: connection errors, timeouts, 429 and 5xx
become RetryableJobError (honouring Retry-After); any other 4xx, and any redirect,
becomes PermanentJobError, since sending the same request again cannot fix it.
Inbound routes answer errors with `problem` and read bearer tokens with
`bearer_token_matches`.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import HttpxAiohttpClient
from starlette.requests import Request
from starlette.responses import JSONResponse

from db.job_kinds import PermanentJobError, RetryableJobError

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# Who is calling, for the platform APIs that ask (GitHub refuses a request without a
# User-Agent): gidgethub and gidgetlab send their `requester` argument as it.
USER_AGENT = "agent-relay"


def new_http_client(
    *, timeout: httpx.Timeout = DEFAULT_TIMEOUT, **options: Any
) -> httpx.AsyncClient:
    """An httpx client whose connections are aiohttp's (httpx-aiohttp, by the httpx
    maintainer): httpx's own transport cost about as much CPU as the rest of a
    callback's registration, and twice the time to a reply with 20 conversations
    at once (bench/RESULTS.md, issue 8). Redirects are not followed (see `send`).
    `options` go to httpx.AsyncClient; an explicit `transport` is kept."""
    return _CookielessClient(
        timeout=timeout,
        follow_redirects=False,
        event_hooks={"request": [_credentials_in_the_header_only]},
        **options,
    )


class _NoCookies(httpx.Cookies):
    """A jar that never takes what a response sets."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _CookielessClient(HttpxAiohttpClient):
    """Keeps no cookies. The relay calls APIs and webhook receivers that authenticate
    each request by its headers: a cookie one receiver sets has no business in a later
    request, and httpx's parsing of Set-Cookie (through urllib's cookie jar, on every
    response, whether it sets one or not) was a tenth of each call's CPU."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("agent-relay's HTTP clients keep no cookies")


async def _credentials_in_the_header_only(request: httpx.Request) -> None:
    """httpx has made a URL's credentials (https://user:pass@host) into the request's
    Authorization header by the time request hooks run; aiohttp refuses them in the
    URL next to that header, so they leave the URL."""
    if request.url.userinfo:
        request.url = request.url.copy_with(userinfo=b"")


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    what: str,
    *,
    accept: tuple[int, ...] = (),
    **kwargs: Any,
) -> httpx.Response:
    """`what` names the peer in error messages and must never contain a secret;
    statuses in `accept` are returned to the caller instead of raised."""
    try:
        response = await client.request(method, url, **kwargs)
    except (httpx.TransportError, aiohttp.ClientError) as exc:
        raise RetryableJobError(f"{what}: {failure_name(exc)}") from exc
    if response.status_code in accept:
        return response
    if 300 <= response.status_code < 400:
        # Redirects are not followed (a redirected POST may lose its body or land
        # somewhere unchecked): a receiver that answers one is misconfigured.
        raise PermanentJobError(f"{what} answered {response.status_code} (redirects are refused)")
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryableJobError(
            f"{what} answered {response.status_code}", retry_after=retry_after(response.headers)
        )
    if response.status_code >= 400:
        raise PermanentJobError(f"{what} answered {response.status_code}: {response.text[:200]}")
    return response


# httpx's names for what aiohttp saw on the wire, most specific first. Written here
# because httpx-aiohttp (new_http_client) maps a refused connection to ConnectTimeout,
# and passes some errors (a malformed response) on untranslated; operators read
# these names in job errors and in `agent-relay doctor`.
_AIOHTTP_FAILURES: tuple[tuple[type[aiohttp.ClientError], str], ...] = (
    (aiohttp.ConnectionTimeoutError, "ConnectTimeout"),
    (aiohttp.ServerTimeoutError, "ReadTimeout"),
    (aiohttp.ClientConnectorError, "ConnectError"),
    (aiohttp.ServerDisconnectedError, "RemoteProtocolError"),
    (aiohttp.ClientResponseError, "RemoteProtocolError"),
    (aiohttp.ClientPayloadError, "ReadError"),
    (aiohttp.ClientOSError, "NetworkError"),
)


def failure_name(exc: BaseException) -> str:
    """What went wrong on the wire, in httpx's words whichever transport saw it."""
    cause = exc.__cause__ if isinstance(exc, httpx.TransportError) else exc
    if isinstance(cause, aiohttp.ClientError):
        for failure, name in _AIOHTTP_FAILURES:
            if isinstance(cause, failure):
                return name
        return "TransportError"
    return type(exc).__name__


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait before asking again, from a refusal's headers (any platform's,
    the agent-server's, a receiver's): Retry-After in seconds or as an HTTP date; else
    the epoch second a rate limit resets, GitLab's RateLimit-Reset or GitHub's
    X-RateLimit-Reset (which counts only when X-RateLimit-Remaining says none are
    left); else None, and the queue's own backoff decides."""
    lowered = {str(name).lower(): str(value) for name, value in headers.items()}
    current = time.time() if now is None else now
    value = lowered.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - current)
            except (TypeError, ValueError):
                pass
    reset = lowered.get("ratelimit-reset")
    if not reset and lowered.get("x-ratelimit-remaining") == "0":
        reset = lowered.get("x-ratelimit-reset")
    if reset:
        try:
            return max(0.0, float(reset) - current)
        except ValueError:
            return None
    return None


def problem(status: int, detail: str) -> JSONResponse:
    """A one-line error answer: {"error": detail}."""
    return JSONResponse({"error": detail}, status_code=status)


def bearer_token_matches(request: Request, expected: str | None) -> bool:
    """`Authorization: Bearer <expected>`, compared in constant time; False if unset."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return bool(
        expected
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token.strip().encode(), expected.encode())
    )
