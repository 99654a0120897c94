"""agent.http.send through the agent-server client's real transport (httpx-aiohttp):
whatever breaks on the wire is a retryable failure, never an unknown exception."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email.utils import formatdate

import aiohttp
import httpx
import pytest

from agent.client import AgentClient, LLMSettings
from agent.http import new_http_client, retry_after, send
from db.job_kinds import RetryableJobError
from tests.support.deployment import closed_port_url

CONVERSATION = "0" * 31 + "1"


def agent_client(url: str) -> AgentClient:
    return AgentClient(url, "key", LLMSettings(model="m"), "/workspace")


async def serving(answer: bytes, heads: list[bytes] | None = None) -> AsyncIterator[str]:
    """A loopback server that reads a request (its head goes to `heads`) and writes
    `answer`, then hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if heads is not None:
            heads.append(head)
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
async def garbage_server() -> AsyncIterator[str]:
    async for url in serving(b"this is not HTTP\r\n\r\n"):
        yield url


@pytest.fixture
async def hang_up_server() -> AsyncIterator[str]:
    async for url in serving(b""):
        yield url


@pytest.fixture
def request_heads() -> list[bytes]:
    return []


@pytest.fixture
async def answering_server(request_heads: list[bytes]) -> AsyncIterator[str]:
    body = b'{"id": "' + CONVERSATION.encode() + b'", "execution_status": "running"}'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    async for url in serving(head % len(body) + body, request_heads):
        yield url


async def test_the_agent_client_reads_an_answer_over_aiohttp(answering_server: str) -> None:
    client = agent_client(answering_server)
    try:
        info = await client.get_conversation(CONVERSATION)
    finally:
        await client.aclose()
    assert info == {"id": CONVERSATION, "execution_status": "running"}


async def test_credentials_in_the_agent_url_travel_as_basic_auth(
    answering_server: str, request_heads: list[bytes]
) -> None:
    with_credentials = answering_server.replace("//", "//operator:p%40ss@")
    client = agent_client(with_credentials)
    try:
        assert await client.get_conversation(CONVERSATION) is not None
    finally:
        await client.aclose()
    [head] = request_heads
    lines = head.decode().lower().split("\r\n")
    assert lines[0] == f"get /api/conversations/{CONVERSATION} http/1.1"
    authorizations = [line for line in lines if line.startswith("authorization:")]
    assert authorizations == ["authorization: basic b3blcmf0b3i6cebzcw=="]  # operator:p@ss
    assert "x-session-api-key: key" in lines


async def test_credentials_in_a_request_url_travel_as_basic_auth(
    answering_server: str, request_heads: list[bytes]
) -> None:
    """Any client of new_http_client: a receiver's URL may carry them too."""
    url = answering_server.replace("//", "//operator:p%40ss@") + "/hook"
    async with new_http_client() as client:
        response = await send(client, "POST", url, "receiver POST", content=b"{}")
    assert response.status_code == 200
    [head] = request_heads
    lines = head.decode().lower().split("\r\n")
    assert lines[0] == "post /hook http/1.1"
    assert [line for line in lines if line.startswith("authorization:")] == [
        "authorization: basic b3blcmf0b3i6cebzcw=="  # operator:p@ss
    ]


@pytest.mark.parametrize(
    ("peer", "failure"),
    [
        ("closed", "ConnectError"),
        ("garbage", "RemoteProtocolError"),
        ("hang_up", "RemoteProtocolError"),
    ],
)
async def test_a_broken_peer_is_a_retryable_failure_named_as_httpx_names_it(
    peer: str, failure: str, garbage_server: str, hang_up_server: str
) -> None:
    url = {"closed": closed_port_url(), "garbage": garbage_server, "hang_up": hang_up_server}[peer]
    client = agent_client(url)
    try:
        with pytest.raises(RetryableJobError) as raised:
            await client.get_conversation(CONVERSATION)
    finally:
        await client.aclose()
    assert str(raised.value) == f"agent-server GET /conversations/{CONVERSATION}: {failure}"


async def test_an_aiohttp_error_left_untranslated_is_retryable() -> None:
    def raise_aiohttp_error(request: httpx.Request) -> httpx.Response:
        raise aiohttp.ClientPayloadError("truncated")

    async with httpx.AsyncClient(transport=httpx.MockTransport(raise_aiohttp_error)) as client:
        with pytest.raises(RetryableJobError, match="ReadError"):
            await send(client, "GET", "http://peer.test/x", "peer GET /x")


async def test_a_cookie_a_peer_sets_never_rides_along_to_the_next_request(
    request_heads: list[bytes],
) -> None:
    """The relay keeps no cookies: what one receiver sets must not reach another
    request (to it or to anyone else)."""
    head = (
        b"HTTP/1.1 200 OK\r\nSet-Cookie: session=from-the-peer; Path=/\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    async for url in serving(head, request_heads):
        async with new_http_client() as client:
            await send(client, "GET", f"{url}/first", "peer")
            await send(client, "GET", f"{url}/second", "peer")
            assert len(client.cookies) == 0
            with pytest.raises(TypeError):
                client.cookies = {"session": "set-by-hand"}
    assert len(request_heads) == 2
    assert b"cookie" not in request_heads[1].lower()


def test_retry_after_reads_seconds_dates_and_reset_times() -> None:
    now = 1_700_000_000.0
    assert retry_after({"Retry-After": "12"}, now=now) == 12
    assert retry_after({"retry-after": "-3"}, now=now) == 0
    date = formatdate(now + 40, usegmt=True)
    assert retry_after({"Retry-After": date}, now=now) == pytest.approx(40, abs=1)
    assert retry_after({"RateLimit-Reset": str(int(now + 60))}, now=now) == 60
    assert retry_after({"RateLimit-Reset": str(int(now - 60))}, now=now) == 0
    assert retry_after({"Retry-After": "soon"}, now=now) is None
    assert retry_after({}, now=now) is None


def test_retry_after_reads_github_s_reset_only_when_no_requests_are_left() -> None:
    now = 1_700_000_000.0
    reset = str(int(now + 30))
    exhausted = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    assert retry_after(exhausted, now=now) == 30
    assert retry_after({"X-RateLimit-Remaining": "12", "X-RateLimit-Reset": reset}, now=now) is None
    assert retry_after({**exhausted, "Retry-After": "5"}, now=now) == 5
