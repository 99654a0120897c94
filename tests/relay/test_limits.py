"""BodySizeLimit: declared and streamed bodies over the limit get 413, others pass."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from relay.limits import MAX_BODY_BYTES, BodySizeLimit

LIMIT = 1000


class BodyLengthApp:
    """A Starlette app answering with the length of the body it read; counts calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.app = Starlette(
            routes=[Route("/echo", self.echo, methods=["POST"])],
            middleware=[Middleware(BodySizeLimit, max_bytes=LIMIT)],
        )

    async def echo(self, request: Request) -> JSONResponse:
        self.calls += 1
        return JSONResponse({"length": len(await request.body())})


@pytest.fixture
async def echo() -> AsyncIterator[tuple[BodyLengthApp, httpx.AsyncClient]]:
    app = BodyLengthApp()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app.app), base_url="http://relay.test"
    ) as client:
        yield app, client


async def chunks(total: int, size: int = 100) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"x" * piece


def test_default_limit_is_one_mebibyte() -> None:
    assert MAX_BODY_BYTES == 1024 * 1024


@pytest.mark.parametrize("length", [0, 1, LIMIT])
async def test_bodies_up_to_the_limit_pass(
    echo: tuple[BodyLengthApp, httpx.AsyncClient], length: int
) -> None:
    _, client = echo
    response = await client.post("/echo", content=b"x" * length)
    assert response.status_code == 200
    assert response.json() == {"length": length}


async def test_declared_length_over_the_limit_is_refused_before_the_app_runs(
    echo: tuple[BodyLengthApp, httpx.AsyncClient],
) -> None:
    app, client = echo
    response = await client.post("/echo", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert str(LIMIT) in response.json()["error"]
    assert app.calls == 0


async def test_streamed_body_without_length_is_cut_off_past_the_limit(
    echo: tuple[BodyLengthApp, httpx.AsyncClient],
) -> None:
    _, client = echo
    request = client.build_request("POST", "/echo", content=chunks(LIMIT * 3))
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await client.send(request)
    assert response.status_code == 413


async def test_streamed_body_within_the_limit_passes(
    echo: tuple[BodyLengthApp, httpx.AsyncClient],
) -> None:
    _, client = echo
    response = await client.post("/echo", content=chunks(LIMIT))
    assert response.status_code == 200
    assert response.json() == {"length": LIMIT}


async def run_raw(
    app: BodySizeLimit, headers: list[tuple[bytes, bytes]], body_parts: list[bytes]
) -> list[Message]:
    """Drive the middleware with hand-made ASGI messages; returns what it sent."""
    incoming: list[Message] = [
        {"type": "http.request", "body": part, "more_body": index < len(body_parts) - 1}
        for index, part in enumerate(body_parts)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": headers,
        "query_string": b"",
    }
    await app(scope, receive, send)
    return sent


async def reading_app(scope: Scope, receive: Receive, send: Send) -> None:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize("declared", [b"abc", b"-1", b"99999999999"])
async def test_unusable_declared_lengths_are_refused(declared: bytes) -> None:
    sent = await run_raw(
        BodySizeLimit(reading_app, max_bytes=LIMIT), [(b"content-length", declared)], [b"x"]
    )
    assert sent[0]["status"] == 413


async def test_lying_content_length_is_still_cut_off() -> None:
    sent = await run_raw(
        BodySizeLimit(reading_app, max_bytes=LIMIT),
        [(b"content-length", b"10")],
        [b"x" * 600, b"x" * 600],
    )
    assert sent[0]["status"] == 413


async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        pass

    await BodySizeLimit(lifespan_app, max_bytes=LIMIT)({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]
