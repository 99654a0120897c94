"""How the status page's HTML is rendered: its templates, and the headers every page
of it carries."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from bots.pages import Pages


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


def render(
    request: Request,
    template: str,
    *,
    base: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response:
    """`template` with `context`; `base` is PUBLIC_URL's path prefix, for its links."""
    return _PAGES.render(
        request,
        template,
        {"base": base, **context},
        status_code=status_code,
        headers={**_HEADERS, **(headers or {})},
    )
