"""The operator status page: GET /admin, its login and logout, and "retry this job".

Who may see it: whoever knows API_TOKEN. Without API_TOKEN every /admin route answers
404 with a page that says to set it (and the GitHub setup page stays open, as before).

Cookies are signed with itsdangerous, one salt per purpose (session, login form, flash
message), so a value made for one purpose is worthless for another. The key is derived
from SECRET_KEY when set, else from API_TOKEN, and always mixes in API_TOKEN: rotating
API_TOKEN (or SECRET_KEY) logs everyone out. A session is a random nonce signed with the
time it began; the server refuses it after SESSION_SECONDS (itsdangerous's max_age),
whatever the cookie's Max-Age says. Cookies are HttpOnly, SameSite, and Secure behind
an https PUBLIC_URL.

Forms: every POST carries a CSRF token in a hidden field, checked in constant time;
a POST whose Origin header names another origin is refused as well. A session's token
is the signature of the session's nonce. The login form's token is a time-stamped
signature of a random value in a login cookie (double submit), good for
LOGIN_FORM_SECONDS. Failed logins are throttled per client address. Forms are parsed
by Starlette's `request.form()` (python-multipart) with small limits: a few fields of a
few KiB, no files; more is a 400.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from itsdangerous import BadData, Signer, TimestampSigner, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bots.pages import Pages
from db.jobs import JobQueue
from db.store import Store
from relay.admin_status import CHECK_TTL_SECONDS, NoChecks, OutboundChecks, StatusReader
from relay.settings import Settings

log = logging.getLogger(__name__)

ADMIN_PATH = "/admin"
LOGIN_PATH = "/admin/login"
LOGOUT_PATH = "/admin/logout"
RETRY_PATH = "/admin/jobs/{job_id:int}/retry"

SESSION_COOKIE = "agent_relay_admin"
LOGIN_COOKIE = "agent_relay_admin_login"
FLASH_COOKIE = "agent_relay_admin_flash"
SESSION_SECONDS = 12 * 3600
LOGIN_FORM_SECONDS = 3600
FLASH_SECONDS = 60
REFRESH_SECONDS = 15
# Failed logins a client address may make per window before it must wait.
LOGIN_FAILURES_ALLOWED = 10
LOGIN_FAILURE_WINDOW_SECONDS = 600.0

_NONCE = re.compile(r"[A-Za-z0-9_-]{43}")
# The page's forms have at most three small fields (csrf, next, token).
_MAX_FORM_FIELDS = 10
_MAX_FORM_FIELD_BYTES = 8 * 1024

# Checks the status page (and any page gated with it) runs on a request: None lets it
# through, a Response (the way to the login) answers instead.
RequireAdmin = Callable[[Request], Response | None]


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "never"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_PAGES = Pages(Path(__file__).resolve().parent / "templates", filters={"when": _when})

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # No script at all; forms post to this relay only.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
}


def signing_key(api_token: str, secret_key: str | None) -> bytes:
    """The key of the page's cookies and form tokens (see the module's docstring)."""
    return hmac.new(
        (secret_key or api_token).encode(),
        b"agent-relay admin session\x00" + api_token.encode(),
        hashlib.sha256,
    ).digest()


class _ClockedSigner(TimestampSigner):
    """itsdangerous's time-stamped signatures, on the page's clock (tests move it)."""

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class _Sealed:
    """A value signed for one purpose, good for `max_age` seconds."""

    def __init__(
        self, key: bytes, purpose: str, *, max_age: int, clock: Callable[[], float]
    ) -> None:
        self._serializer = URLSafeTimedSerializer(
            key,
            salt=f"agent-relay admin {purpose}",
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


def safe_next(target: str | None) -> str:
    """Where to go after the login: a path on this relay, else the status page.
    `//host` and `/\\host` are other sites to a browser, so they are refused too."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or any(ch == "\\" or ch.isspace() or ord(ch) < 0x20 for ch in target)
    ):
        return ADMIN_PATH
    return target


class LoginThrottle:
    """Per-process limit on failed logins, by client address: after
    LOGIN_FAILURES_ALLOWED failures within the window, logins wait for the oldest to
    age out. It slows guessing; API_TOKEN's length is what makes guessing hopeless."""

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


class AdminPage:
    """The /admin routes, and `require_admin` for other operator pages."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        queue: JobQueue,
        checks: OutboundChecks | None = None,
        clock: Callable[[], float] = time.time,
        throttle: LoginThrottle | None = None,
        check_ttl: float = CHECK_TTL_SECONDS,
    ) -> None:
        self._api_token = (
            settings.api_token.get_secret_value() if settings.api_token is not None else None
        )
        secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
        key = signing_key(self._api_token or "", secret_key)
        self._sessions = _Sealed(key, "session", max_age=SESSION_SECONDS, clock=clock)
        self._login_forms = _Sealed(key, "login", max_age=LOGIN_FORM_SECONDS, clock=clock)
        self._flashes = _Sealed(key, "flash", max_age=FLASH_SECONDS, clock=clock)
        # Forms of a session: valid as long as the session is, so no time of their own.
        self._session_forms = Signer(
            key, salt="agent-relay admin csrf", digest_method=hashlib.sha256
        )
        self._queue = queue
        self._clock = clock
        self._throttle = throttle or LoginThrottle()
        self._status = StatusReader(
            settings=settings,
            store=store,
            queue=queue,
            checks=checks or NoChecks(),
            clock=clock,
            check_ttl=check_ttl,
        )
        public_url = settings.public_url
        # Behind a proxy that serves the relay under a path prefix (PUBLIC_URL's path),
        # links, redirects and cookie paths carry the prefix.
        self._base = urlsplit(public_url).path.rstrip("/") if public_url else ""
        self._public_origin = _origin(public_url) if public_url else None
        self._secure = bool(public_url and public_url.startswith("https://"))

    @property
    def enabled(self) -> bool:
        return bool(self._api_token)

    def routes(self) -> list[Route]:
        return [
            Route(ADMIN_PATH, self.status, methods=["GET"]),
            Route(LOGIN_PATH, self.login_form, methods=["GET"]),
            Route(LOGIN_PATH, self.login, methods=["POST"]),
            Route(LOGOUT_PATH, self.logout, methods=["POST"]),
            Route(RETRY_PATH, self.retry, methods=["POST"]),
        ]

    # --- the gate -----------------------------------------------------------------------

    def require_admin(self, request: Request) -> Response | None:
        """None when `request` may see an operator page (a live session, or no API_TOKEN
        at all); otherwise the redirect to the login, which comes back here after."""
        if not self.enabled or self._session_nonce(request) is not None:
            return None
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return self._login_redirect(target)

    def _login_redirect(self, target: str) -> Response:
        query = "" if target == ADMIN_PATH else f"?next={quote(target, safe='/')}"
        return RedirectResponse(f"{self._base}{LOGIN_PATH}{query}", status_code=303)

    def _session_nonce(self, request: Request) -> str | None:
        """The nonce of a valid, unexpired session cookie, else None."""
        nonce = self._sessions.unseal(request.cookies.get(SESSION_COOKIE))
        return nonce if nonce is not None and _NONCE.fullmatch(nonce) else None

    def _csrf(self, nonce: str) -> str:
        return self._session_forms.get_signature(nonce).decode()

    # --- GET /admin ---------------------------------------------------------------------

    async def status(self, request: Request) -> Response:
        if not self.enabled:
            return self._disabled(request)
        nonce = self._session_nonce(request)
        if nonce is None:
            return self._login_redirect(ADMIN_PATH)
        flash = self._flash(request)
        response = self._page(
            request,
            "admin.html",
            view=await self._status.read(),
            now=self._clock(),
            csrf=self._csrf(nonce),
            flash=flash,
            refresh=REFRESH_SECONDS,
        )
        if flash is not None:
            self._delete_cookie(response, FLASH_COOKIE, self._admin_path)
        return response

    def _flash(self, request: Request) -> str | None:
        return self._flashes.unseal(request.cookies.get(FLASH_COOKIE))

    def _set_flash(self, response: Response, text: str) -> None:
        self._set_cookie(
            response,
            FLASH_COOKIE,
            self._flashes.seal(text),
            max_age=FLASH_SECONDS,
            path=self._admin_path,
            samesite="strict",
        )

    # --- login and logout ---------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        if not self.enabled:
            return self._disabled(request)
        target = safe_next(request.query_params.get("next"))
        if self._session_nonce(request) is not None:
            return RedirectResponse(f"{self._base}{target}", status_code=303)
        return self._login_page(request, target)

    def _login_page(
        self,
        request: Request,
        target: str,
        *,
        status_code: int = 200,
        error: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not _NONCE.fullmatch(nonce):
            nonce = secrets.token_urlsafe(32)
        response = self._page(
            request,
            "admin_login.html",
            status_code=status_code,
            headers=headers,
            csrf=self._login_forms.seal(nonce),
            next=target,
            error=error,
        )
        # Set again each time, so the cookie outlives the form just shown.
        self._set_cookie(
            response,
            LOGIN_COOKIE,
            nonce,
            max_age=LOGIN_FORM_SECONDS,
            path=self._admin_path,
            samesite="strict",
        )
        return response

    async def login(self, request: Request) -> Response:
        if not self.enabled:
            return self._disabled(request)
        assert self._api_token is not None
        form = await _form(request)
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        signed = self._login_forms.unseal(form.get("csrf"))
        if (
            not self._same_origin(request)
            or not _NONCE.fullmatch(nonce)
            or signed is None
            or not hmac.compare_digest(signed.encode(), nonce.encode())
        ):
            return self._refused(request, "This login form has expired or was not this page's.")
        target = safe_next(form.get("next"))
        client = request.client.host if request.client else "unknown"
        wait = self._throttle.wait_seconds(client)
        if wait:
            return self._login_page(
                request,
                target,
                status_code=429,
                error=f"Too many wrong tokens. Try again in {int(wait) // 60 + 1} minutes.",
                headers={"Retry-After": str(int(wait))},
            )
        token = form.get("token", "")
        if not hmac.compare_digest(token.encode(), self._api_token.encode()):
            self._throttle.failed(client)
            log.warning("status page: a login with a wrong token (from %s)", client)
            return self._login_page(
                request, target, status_code=401, error="That is not the API_TOKEN."
            )
        self._throttle.succeeded(client)
        response = RedirectResponse(f"{self._base}{target}", status_code=303)
        self._set_cookie(
            response,
            SESSION_COOKIE,
            self._sessions.seal(secrets.token_urlsafe(32)),
            max_age=SESSION_SECONDS,
            path=self._base or "/",
            # Lax, not Strict: GitHub sends the browser back to /github/setup/callback
            # (gated by this session) from its own site. Every POST needs a CSRF token.
            samesite="lax",
        )
        self._delete_cookie(response, LOGIN_COOKIE, self._admin_path)
        log.info("status page: logged in (from %s)", client)
        return response

    async def logout(self, request: Request) -> Response:
        if not self.enabled:
            return self._disabled(request)
        nonce = self._session_nonce(request)
        if nonce is not None:
            refusal = await self._checked_post(request, nonce)
            if refusal is not None:
                return refusal
        response = RedirectResponse(f"{self._base}{LOGIN_PATH}", status_code=303)
        self._delete_cookie(response, SESSION_COOKIE, self._base or "/")
        return response

    # --- POST /admin/jobs/{id}/retry ----------------------------------------------------

    async def retry(self, request: Request) -> Response:
        if not self.enabled:
            return self._disabled(request)
        nonce = self._session_nonce(request)
        if nonce is None:
            return self._refused(request, "Your session has ended. Log in again.")
        refusal = await self._checked_post(request, nonce)
        if refusal is not None:
            return refusal
        job_id = int(request.path_params["job_id"])
        # The operation `agent-relay jobs retry` runs.
        if await self._queue.retry(job_id):
            log.info("status page: job %s queued again", job_id)
            text = f"Job {job_id} is queued again."
        else:
            text = f"Job {job_id} was not failed (any more): nothing changed."
        response = RedirectResponse(f"{self._base}{ADMIN_PATH}", status_code=303)
        self._set_flash(response, text)
        return response

    async def _checked_post(self, request: Request, nonce: str) -> Response | None:
        form = await _form(request)
        if not self._same_origin(request) or not self._session_forms.verify_signature(
            nonce, form.get("csrf", "")
        ):
            return self._refused(request, "This form has expired or was not this page's.")
        return None

    def _same_origin(self, request: Request) -> bool:
        """No Origin header (older browsers, scripts), or this relay's own origin: the
        one PUBLIC_URL names, or the one the request was addressed to."""
        origin = request.headers.get("origin")
        if origin is None:
            return True
        own = {f"{request.url.scheme}://{request.url.netloc}"}
        if self._public_origin:
            own.add(self._public_origin)
        return origin in own

    # --- rendering ----------------------------------------------------------------------

    @property
    def _admin_path(self) -> str:
        return self._base + ADMIN_PATH

    def _page(
        self,
        request: Request,
        template: str,
        *,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> Response:
        return _PAGES.render(
            request,
            template,
            {"base": self._base, **context},
            status_code=status_code,
            headers={**_HEADERS, **(headers or {})},
        )

    def _disabled(self, request: Request) -> Response:
        return self._page(
            request,
            "admin_message.html",
            status_code=404,
            title="Status page off",
            message="The status page is off: set API_TOKEN and restart the relay.",
            link=None,
        )

    def _refused(self, request: Request, message: str) -> Response:
        log.warning("status page: a form was refused (%s %s)", request.method, request.url.path)
        return self._page(
            request,
            "admin_message.html",
            status_code=403,
            title="Refused",
            message=f"{message} Nothing was changed.",
            link=f"{self._base}{ADMIN_PATH}",
        )

    def _set_cookie(
        self, response: Response, name: str, value: str, *, max_age: int, path: str, samesite: str
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=path,
            secure=self._secure,
            httponly=True,
            samesite=samesite,  # type: ignore[arg-type]
        )

    def _delete_cookie(self, response: Response, name: str, path: str) -> None:
        response.delete_cookie(name, path=path, secure=self._secure, httponly=True)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def _form(request: Request) -> dict[str, str]:
    """The text fields of a form (the last value of each); {} for a body that is not a
    form. Starlette answers 400 for a form over the limits."""
    form = await request.form(
        max_files=0, max_fields=_MAX_FORM_FIELDS, max_part_size=_MAX_FORM_FIELD_BYTES
    )
    return {name: value for name, value in form.items() if isinstance(value, str)}
