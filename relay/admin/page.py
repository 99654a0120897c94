"""The operator status page: GET /admin, its login and logout, and "retry this job".

Who may see it: whoever knows API_TOKEN. Without API_TOKEN every /admin route answers
404 with a page that says to set it (and the GitHub setup page stays open, as before).

Its cookies and form tokens are relay/admin/session.py's; cookies are HttpOnly,
SameSite, and Secure behind an https PUBLIC_URL (bots/web_session.py). Every POST
carries a CSRF token in a hidden field, checked in constant time; a POST whose Origin
header names another origin is refused as well. Failed logins are throttled per client
address. Forms are parsed by Starlette's `request.form()` (python-multipart) with
small limits: a few fields of a few KiB, no files; more is a 400.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bots.links import ThreadLinks
from bots.web_session import LoginThrottle, PublicSite, safe_next
from db.jobs import JobQueue
from db.store import Store
from relay.admin.outbound import CHECK_TTL_SECONDS, NoChecks, OutboundChecks
from relay.admin.render import render
from relay.admin.session import AdminSession
from relay.admin.status import StatusReader
from relay.settings import Settings

log = logging.getLogger(__name__)

ADMIN_PATH = "/admin"
LOGIN_PATH = "/admin/login"
LOGOUT_PATH = "/admin/logout"
RETRY_PATH = "/admin/jobs/{job_id:int}/retry"
REFRESH_SECONDS = 15

# The page's forms have at most three small fields (csrf, next, token).
_MAX_FORM_FIELDS = 10
_MAX_FORM_FIELD_BYTES = 8 * 1024


class AdminPage:
    """The /admin routes, and `require_admin` for other operator pages."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        queue: JobQueue,
        links: Sequence[ThreadLinks],
        checks: OutboundChecks | None = None,
        clock: Callable[[], float] = time.time,
        throttle: LoginThrottle | None = None,
        check_ttl: float = CHECK_TTL_SECONDS,
    ) -> None:
        # Behind a proxy that serves the relay under a path prefix (PUBLIC_URL's path),
        # links, redirects and cookie paths carry the prefix.
        self._site = PublicSite(settings.public_url)
        self._base = self._site.base
        self._session = AdminSession(
            api_token=settings.api_token.get_secret_value() if settings.api_token else None,
            secret_key=settings.secret_key.get_secret_value() if settings.secret_key else None,
            site=self._site,
            page_path=self._base + ADMIN_PATH,
            clock=clock,
        )
        self._queue = queue
        self._clock = clock
        self._throttle = throttle or LoginThrottle()
        self._status = StatusReader(
            settings=settings,
            store=store,
            queue=queue,
            checks=checks or NoChecks(),
            links=links,
            clock=clock,
            check_ttl=check_ttl,
        )

    @property
    def enabled(self) -> bool:
        return self._session.enabled

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
        if not self.enabled or self._session.nonce(request) is not None:
            return None
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return self._login_redirect(target)

    def _login_redirect(self, target: str) -> Response:
        query = "" if target == ADMIN_PATH else f"?next={quote(target, safe='/')}"
        return RedirectResponse(f"{self._base}{LOGIN_PATH}{query}", status_code=303)

    # --- GET /admin ---------------------------------------------------------------------

    async def status(self, request: Request) -> Response:
        if not self.enabled:
            return self._disabled(request)
        nonce = self._session.nonce(request)
        if nonce is None:
            return self._login_redirect(ADMIN_PATH)
        flash = self._session.flash(request)
        response = self._page(
            request,
            "admin.html",
            view=await self._status.read(),
            now=self._clock(),
            csrf=self._session.csrf(nonce),
            flash=flash,
            refresh=REFRESH_SECONDS,
        )
        if flash is not None:
            self._session.clear_flash(response)
        return response

    # --- login and logout ---------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        if not self.enabled:
            return self._disabled(request)
        target = safe_next(request.query_params.get("next"), ADMIN_PATH)
        if self._session.nonce(request) is not None:
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
        nonce = self._session.login_nonce(request)
        response = self._page(
            request,
            "admin_login.html",
            status_code=status_code,
            headers=headers,
            csrf=self._session.login_csrf(nonce),
            next=target,
            error=error,
        )
        self._session.set_login_cookie(response, nonce)
        return response

    async def login(self, request: Request) -> Response:
        if not self.enabled:
            return self._disabled(request)
        form = await _form(request)
        if not self._site.same_origin(request) or not self._session.login_form_matches(
            request, form.get("csrf")
        ):
            return self._refused(request, "This login form has expired or was not this page's.")
        target = safe_next(form.get("next"), ADMIN_PATH)
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
        if not self._session.token_matches(form.get("token", "")):
            self._throttle.failed(client)
            log.warning("status page: a login with a wrong token (from %s)", client)
            return self._login_page(
                request, target, status_code=401, error="That is not the API_TOKEN."
            )
        self._throttle.succeeded(client)
        response = RedirectResponse(f"{self._base}{target}", status_code=303)
        self._session.start(response)
        log.info("status page: logged in (from %s)", client)
        return response

    async def logout(self, request: Request) -> Response:
        if not self.enabled:
            return self._disabled(request)
        nonce = self._session.nonce(request)
        if nonce is not None:
            refusal = await self._checked_post(request, nonce)
            if refusal is not None:
                return refusal
        response = RedirectResponse(f"{self._base}{LOGIN_PATH}", status_code=303)
        self._session.close(response)
        return response

    # --- POST /admin/jobs/{id}/retry ----------------------------------------------------

    async def retry(self, request: Request) -> Response:
        if not self.enabled:
            return self._disabled(request)
        nonce = self._session.nonce(request)
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
        self._session.set_flash(response, text)
        return response

    async def _checked_post(self, request: Request, nonce: str) -> Response | None:
        form = await _form(request)
        if not self._site.same_origin(request) or not self._session.csrf_matches(
            nonce, form.get("csrf", "")
        ):
            return self._refused(request, "This form has expired or was not this page's.")
        return None

    # --- rendering ----------------------------------------------------------------------

    def _page(
        self,
        request: Request,
        template: str,
        *,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> Response:
        return render(
            request, template, base=self._base, status_code=status_code, headers=headers, **context
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


async def _form(request: Request) -> dict[str, str]:
    """The text fields of a form (the last value of each); {} for a body that is not a
    form. Starlette answers 400 for a form over the limits."""
    form = await request.form(
        max_files=0, max_fields=_MAX_FORM_FIELDS, max_part_size=_MAX_FORM_FIELD_BYTES
    )
    return {name: value for name, value in form.items() if isinstance(value, str)}
