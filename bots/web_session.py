"""What the relay's HTML pages (the status page, the GitHub setup page) share about
browsers: this relay's public origin and path prefix, cookies, signed values, safe
redirect targets, and a limit on failed logins.

Cookies are HttpOnly, under PUBLIC_URL's path prefix (a proxy may serve the relay
under one), and Secure behind an https PUBLIC_URL. Signed values are itsdangerous's,
one salt per purpose, so a value made for one purpose is worthless for another.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

# Failed logins a client address may make per window before it must wait.
LOGIN_FAILURES_ALLOWED = 10
LOGIN_FAILURE_WINDOW_SECONDS = 600.0

# Checks a page runs on a request before answering: None lets it through, a Response
# (the way to a login) answers instead.
RequireAdmin = Callable[[Request], Response | None]

SameSite = Literal["lax", "strict"]


def origin(url: str) -> str:
    """`scheme://host[:port]` of `url`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class PublicSite:
    """This relay as browsers reach it at PUBLIC_URL: its origin, the path prefix it is
    served under (links, redirects and cookie paths carry it), and its cookies."""

    def __init__(self, public_url: str | None) -> None:
        self.base = urlsplit(public_url).path.rstrip("/") if public_url else ""
        self.origin = origin(public_url) if public_url else None
        self.secure = bool(public_url and public_url.startswith("https://"))

    def set_cookie(
        self,
        response: Response,
        name: str,
        value: str,
        *,
        max_age: int,
        path: str,
        samesite: SameSite,
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=path,
            secure=self.secure,
            httponly=True,
            samesite=samesite,
        )

    def delete_cookie(self, response: Response, name: str, path: str) -> None:
        response.delete_cookie(name, path=path, secure=self.secure, httponly=True)

    def same_origin(self, request: Request) -> bool:
        """No Origin header (older browsers, scripts), or this relay's own origin: the
        one PUBLIC_URL names, or the one the request was addressed to."""
        claimed = request.headers.get("origin")
        if claimed is None:
            return True
        own = {f"{request.url.scheme}://{request.url.netloc}"}
        if self.origin:
            own.add(self.origin)
        return claimed in own


class _ClockedSigner(TimestampSigner):
    """itsdangerous's time-stamped signatures, on the page's clock (tests move it)."""

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class Sealed:
    """A value signed for one purpose (`salt`), good for `max_age` seconds."""

    def __init__(self, key: bytes, salt: str, *, max_age: int, clock: Callable[[], float]) -> None:
        self._serializer = URLSafeTimedSerializer(
            key,
            salt=salt,
            signer=_ClockedSigner,
            signer_kwargs={"clock": clock, "digest_method": hashlib.sha256},
        )
        self._max_age = max_age

    def seal(self, value: str) -> str:
        return self._serializer.dumps(value)

    def unseal(self, sealed: str | None) -> str | None:
        """The value, when `sealed` was made by this relay for this purpose and is
        young enough; else None."""
        if not sealed:
            return None
        try:
            value = self._serializer.loads(sealed, max_age=self._max_age)
        except BadData:  # a bad signature, an expired one, or a broken payload
            return None
        return value if isinstance(value, str) else None


def safe_next(target: str | None, fallback: str) -> str:
    """Where to go after a login: a path on this relay, else `fallback`.
    `//host` and `/\\host` are other sites to a browser, so they are refused too."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or any(ch == "\\" or ch.isspace() or ord(ch) < 0x20 for ch in target)
    ):
        return fallback
    return target


class LoginThrottle:
    """Per-process limit on failed logins, by client address: after
    LOGIN_FAILURES_ALLOWED failures within the window, logins wait for the oldest to
    age out. It slows guessing; the secret's length is what makes guessing hopeless."""

    def __init__(
        self,
        *,
        allowed: int = LOGIN_FAILURES_ALLOWED,
        window: float = LOGIN_FAILURE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self._allowed = allowed
        self._window = window
        self._clock = clock
        self._max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}

    def wait_seconds(self, client: str) -> float:
        """0 when `client` may try now, else how long it must wait."""
        failures = self._recent(client)
        if len(failures) < self._allowed:
            return 0.0
        return max(1.0, failures[0] + self._window - self._clock())

    def failed(self, client: str) -> None:
        if client not in self._failures and len(self._failures) >= self._max_clients:
            # Bounded memory: forget the clients whose failures are oldest.
            for stale in sorted(self._failures, key=lambda c: self._failures[c][-1])[:1000]:
                del self._failures[stale]
        self._failures.setdefault(client, deque()).append(self._clock())

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.get(client, deque())
        while failures and failures[0] <= self._clock() - self._window:
            failures.popleft()
        if not failures:
            self._failures.pop(client, None)
        return failures
