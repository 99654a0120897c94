"""Who is logged in to the status page, and the cookies and form tokens that say so.

The key of the page's cookies and form tokens is derived from SECRET_KEY when set,
else from API_TOKEN, and always mixes in API_TOKEN: rotating API_TOKEN (or SECRET_KEY)
logs everyone out. A session is a random nonce signed with the time it began; the
server refuses it after SESSION_SECONDS (itsdangerous's max_age), whatever the
cookie's Max-Age says.

Every form carries a CSRF token. A session's token is the signature of the session's
nonce. The login form's token is a time-stamped signature of a random value in a
login cookie (double submit), good for LOGIN_FORM_SECONDS.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable

from itsdangerous import Signer
from starlette.requests import Request
from starlette.responses import Response

from bots.web_session import PublicSite, Sealed

SESSION_COOKIE = "agent_relay_admin"
LOGIN_COOKIE = "agent_relay_admin_login"
FLASH_COOKIE = "agent_relay_admin_flash"
SESSION_SECONDS = 12 * 3600
LOGIN_FORM_SECONDS = 3600
FLASH_SECONDS = 60

_NONCE = re.compile(r"[A-Za-z0-9_-]{43}")
_SALT = "agent-relay admin"


def signing_key(api_token: str, secret_key: str | None) -> bytes:
    """The key of the page's cookies and form tokens (see the module's docstring)."""
    return hmac.new(
        (secret_key or api_token).encode(),
        b"agent-relay admin session\x00" + api_token.encode(),
        hashlib.sha256,
    ).digest()


def _nonce(value: str | None) -> str | None:
    return value if value is not None and _NONCE.fullmatch(value) else None


class AdminSession:
    """The status page's session, login form and flash cookies. `page_path` is the
    status page's path (with PUBLIC_URL's prefix): the cookies only it reads live there."""

    def __init__(
        self,
        *,
        api_token: str | None,
        secret_key: str | None,
        site: PublicSite,
        page_path: str,
        clock: Callable[[], float],
    ) -> None:
        self._api_token = api_token
        key = signing_key(api_token or "", secret_key)
        self._sessions = Sealed(key, f"{_SALT} session", max_age=SESSION_SECONDS, clock=clock)
        self._login_forms = Sealed(key, f"{_SALT} login", max_age=LOGIN_FORM_SECONDS, clock=clock)
        self._flashes = Sealed(key, f"{_SALT} flash", max_age=FLASH_SECONDS, clock=clock)
        # Forms of a session: valid as long as the session is, so no time of their own.
        self._session_forms = Signer(key, salt=f"{_SALT} csrf", digest_method=hashlib.sha256)
        self._site = site
        self._page_path = page_path

    @property
    def enabled(self) -> bool:
        return bool(self._api_token)

    def token_matches(self, token: str) -> bool:
        """Is `token` API_TOKEN (compared in constant time)?"""
        assert self._api_token is not None
        return hmac.compare_digest(token.encode(), self._api_token.encode())

    # --- the session --------------------------------------------------------------------

    def nonce(self, request: Request) -> str | None:
        """The nonce of a valid, unexpired session cookie, else None."""
        return _nonce(self._sessions.unseal(request.cookies.get(SESSION_COOKIE)))

    def csrf(self, nonce: str) -> str:
        """The form token of the session `nonce` names."""
        return self._session_forms.get_signature(nonce).decode()

    def csrf_matches(self, nonce: str, token: str) -> bool:
        return self._session_forms.verify_signature(nonce, token)

    def start(self, response: Response) -> None:
        """Start a session: its cookie set, the login form's cookie gone."""
        self._site.set_cookie(
            response,
            SESSION_COOKIE,
            self._sessions.seal(secrets.token_urlsafe(32)),
            max_age=SESSION_SECONDS,
            path=self._site.base or "/",
            # Lax, not Strict: GitHub sends the browser back to /github/setup/callback
            # (gated by this session) from its own site. Every POST needs a CSRF token.
            samesite="lax",
        )
        self._site.delete_cookie(response, LOGIN_COOKIE, self._page_path)

    def close(self, response: Response) -> None:
        self._site.delete_cookie(response, SESSION_COOKIE, self._site.base or "/")

    # --- the login form -----------------------------------------------------------------

    def login_nonce(self, request: Request) -> str:
        """The value a login form's token signs: the login cookie's, else a new one."""
        return _nonce(request.cookies.get(LOGIN_COOKIE)) or secrets.token_urlsafe(32)

    def login_csrf(self, nonce: str) -> str:
        return self._login_forms.seal(nonce)

    def set_login_cookie(self, response: Response, nonce: str) -> None:
        # Set again with each form shown, so the cookie outlives the form.
        self._site.set_cookie(
            response,
            LOGIN_COOKIE,
            nonce,
            max_age=LOGIN_FORM_SECONDS,
            path=self._page_path,
            samesite="strict",
        )

    def login_form_matches(self, request: Request, csrf: str | None) -> bool:
        """Was the login form (token `csrf`) shown by this relay to this browser?"""
        nonce = _nonce(request.cookies.get(LOGIN_COOKIE))
        signed = self._login_forms.unseal(csrf)
        return (
            nonce is not None
            and signed is not None
            and hmac.compare_digest(signed.encode(), nonce.encode())
        )

    # --- the flash message --------------------------------------------------------------

    def flash(self, request: Request) -> str | None:
        return self._flashes.unseal(request.cookies.get(FLASH_COOKIE))

    def set_flash(self, response: Response, text: str) -> None:
        self._site.set_cookie(
            response,
            FLASH_COOKIE,
            self._flashes.seal(text),
            max_age=FLASH_SECONDS,
            path=self._page_path,
            samesite="strict",
        )

    def clear_flash(self, response: Response) -> None:
        self._site.delete_cookie(response, FLASH_COOKIE, self._page_path)
