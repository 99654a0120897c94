"""The HTML pages agent-relay serves (GitHub setup, operator status), rendered with
Jinja2 through Starlette.

Jinja2 is loaded with the first page, not at start: a relay that nobody opens a page
of spends its life without it (about 1.8 MiB of an idle `serve`, issue 8's memory
target).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from starlette.templating import Jinja2Templates


class Pages:
    """The templates of one directory: autoescaped, and an undefined name is an error."""

    def __init__(
        self, directory: Path, *, filters: Mapping[str, Callable[..., Any]] | None = None
    ) -> None:
        self._directory = directory
        self._filters = dict(filters or {})
        self._templates: Jinja2Templates | None = None

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        return self._loaded().TemplateResponse(
            request, template, context, status_code=status_code, headers=headers
        )

    def _loaded(self) -> Jinja2Templates:
        if self._templates is None:
            import jinja2
            from starlette.templating import Jinja2Templates

            environment = jinja2.Environment(
                loader=jinja2.FileSystemLoader(self._directory),
                autoescape=True,
                undefined=jinja2.StrictUndefined,
            )
            environment.filters.update(self._filters)
            self._templates = Jinja2Templates(env=environment)
        return self._templates
