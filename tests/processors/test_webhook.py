"""WebhookProcessor: the signed JSON POST, its failures, and its stored settings."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from db.callbacks import ConversationCallback, get_callback, insert_callback
from db.job_kinds import PermanentJobError, RetryableJobError
from db.store import Store
from processors.base import Reply, ReplyStatus
from processors.context import ProcessorContext
from processors.receiver_guard import guarded_receiver_client
from processors.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, WebhookProcessor
from tests.support.fake_agent_api import (
    WEBHOOK_SECRET,
    WEBHOOK_URL,
    FakeAgentServer,
    FakeWebhookReceiver,
    processor_context,
)
from tests.support.loopback import LoopbackServer
from tests.support.receiver import RecordingReceiver

CONVERSATION_ID = "35d77258005d458983a8431e1722da40"


@pytest.fixture
def receiver() -> FakeWebhookReceiver:
    return FakeWebhookReceiver()


@pytest.fixture
async def context(receiver: FakeWebhookReceiver) -> AsyncIterator[ProcessorContext]:
    # Delivering touches no database: a store that is never connected will do.
    unused_store = Store("sqlite:///:memory:")
    async with processor_context(unused_store, FakeAgentServer(), receiver) as ready:
        yield ready


def webhook_processor() -> WebhookProcessor:
    return WebhookProcessor.model_validate({"url": WEBHOOK_URL, "secret": WEBHOOK_SECRET})


def a_reply(**changes: object) -> Reply:
    fields: dict[str, object] = {
        "callback_id": 7,
        "conversation_id": CONVERSATION_ID,
        "status": ReplyStatus.COMPLETED,
        "summary": 'Fixed on branch fix-1 — ünïcödé and "quotes".',
        "url": f"https://agent.example.test/conversations/{CONVERSATION_ID}",
        "delivery_id": "0123456789abcdef0123456789abcdef",
    }
    return Reply.model_validate({**fields, **changes})


async def test_delivery_posts_the_documented_body(
    context: ProcessorContext, receiver: FakeWebhookReceiver
) -> None:
    reply = a_reply()
    await webhook_processor().deliver(reply, context)

    [delivery] = receiver.received
    assert delivery.url == WEBHOOK_URL
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.json() == {
        "conversation_id": CONVERSATION_ID,
        "callback_id": 7,
        "status": "completed",
        "summary": reply.summary,
        "url": reply.url,
        "pull_request": None,
    }


async def test_error_reply_has_status_error_and_may_have_no_url(
    context: ProcessorContext, receiver: FakeWebhookReceiver
) -> None:
    await webhook_processor().deliver(a_reply(status=ReplyStatus.ERROR, url=None), context)
    body = receiver.received[0].json()
    assert body["status"] == "error"
    assert body["url"] is None


async def test_signature_is_hmac_sha256_of_the_exact_raw_body(
    context: ProcessorContext, receiver: FakeWebhookReceiver
) -> None:
    await webhook_processor().deliver(a_reply(), context)

    [delivery] = receiver.received
    expected = hmac.new(WEBHOOK_SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
    signature = delivery.headers[SIGNATURE_HEADER.lower()]
    assert signature == f"sha256={expected}"
    assert hmac.compare_digest(signature, "sha256=" + expected)
    wrong = hmac.new(b"another-secret", delivery.body, hashlib.sha256).hexdigest()
    assert signature != f"sha256={wrong}"
    # Re-serialising the parsed body need not give the same bytes: receivers must
    # verify the raw body, which is what was signed.
    assert json.loads(delivery.body) == delivery.json()


async def test_delivery_id_is_the_replys_and_stable_across_deliveries(
    context: ProcessorContext, receiver: FakeWebhookReceiver
) -> None:
    reply = a_reply()
    processor = webhook_processor()
    await processor.deliver(reply, context)
    await processor.deliver(reply, context)

    first, second = receiver.received
    assert first.headers[DELIVERY_HEADER.lower()] == reply.delivery_id
    assert second.headers[DELIVERY_HEADER.lower()] == reply.delivery_id
    assert first.body == second.body
    assert first.headers[SIGNATURE_HEADER.lower()] == second.headers[SIGNATURE_HEADER.lower()]


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_server_errors_and_rate_limits_are_retryable(
    context: ProcessorContext, receiver: FakeWebhookReceiver, status: int
) -> None:
    receiver.answer_next(status)
    with pytest.raises(RetryableJobError) as raised:
        await webhook_processor().deliver(a_reply(), context)
    assert raised.value.retry_after is None
    assert WEBHOOK_SECRET not in str(raised.value)


async def test_retry_after_of_a_429_is_honoured(
    context: ProcessorContext, receiver: FakeWebhookReceiver
) -> None:
    receiver.answer_next(429, headers={"Retry-After": "42"})
    with pytest.raises(RetryableJobError) as raised:
        await webhook_processor().deliver(a_reply(), context)
    assert raised.value.retry_after == 42.0


@pytest.mark.parametrize("status", [301, 302, 307, 400, 401, 404, 410])
async def test_client_errors_and_redirects_are_permanent(
    context: ProcessorContext, receiver: FakeWebhookReceiver, status: int
) -> None:
    receiver.answer_next(status)
    with pytest.raises(PermanentJobError):
        await webhook_processor().deliver(a_reply(), context)


async def test_secret_round_trips_through_the_callback_row(store: Store) -> None:
    callback = await insert_callback(
        store, ConversationCallback.for_processor(CONVERSATION_ID, webhook_processor())
    )
    assert callback.id is not None
    stored = await get_callback(store, callback.id)
    assert stored is not None
    assert stored.processor_type == "webhook"

    loaded = stored.get_processor()
    assert isinstance(loaded, WebhookProcessor)
    assert loaded.url == WEBHOOK_URL
    assert loaded.secret.get_secret_value() == WEBHOOK_SECRET
    assert WEBHOOK_SECRET not in repr(loaded)
    assert WEBHOOK_SECRET not in str(loaded)
    assert WEBHOOK_SECRET not in json.dumps(stored.public_view())


def test_secret_is_masked_in_repr() -> None:
    processor = webhook_processor()
    assert WEBHOOK_SECRET not in repr(processor)
    assert "**" in repr(processor)
    assert processor.model_dump()["secret"].get_secret_value() == WEBHOOK_SECRET


@pytest.mark.parametrize(
    "url",
    ["ftp://example.test/hook", "example.test/hook", "file:///etc/passwd", "", "javascript:x"],
)
def test_url_must_be_http_or_https(url: str) -> None:
    with pytest.raises(ValidationError, match="http"):
        WebhookProcessor.model_validate({"url": url, "secret": WEBHOOK_SECRET})


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "https://example.test/hook"])
def test_http_and_https_urls_are_accepted(url: str) -> None:
    assert WebhookProcessor.model_validate({"url": url, "secret": WEBHOOK_SECRET}).url == url


@pytest.mark.parametrize("secret", ["", "short", "1234567"])
def test_short_secret_is_rejected(secret: str) -> None:
    with pytest.raises(ValidationError, match="secret"):
        WebhookProcessor.model_validate({"url": WEBHOOK_URL, "secret": secret})


# -- outbound safety: the guarded receiver client (processors/receiver_guard.py) -----------


class Redirector(LoopbackServer):
    """Answers every request with a 307 to `location`."""

    def __init__(self, location: str) -> None:
        super().__init__()
        self.location = location
        self.hits = 0

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        redirector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                redirector.hits += 1
                self.send_response(307)
                self.send_header("Location", redirector.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def to_loopback(port: int) -> Callable[[str, int], tuple[str, int]]:
    """Sends a checked public address's connection to a loopback port instead."""
    return lambda address, _: ("127.0.0.1", port)


async def public_resolver(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]


async def test_a_loopback_receiver_is_refused_for_good_naming_the_setting(
    context: ProcessorContext, receiver: FakeWebhookReceiver
) -> None:
    with RecordingReceiver() as loopback:
        processor = WebhookProcessor.model_validate(
            {"url": f"{loopback.url}/hook?token=query-secret", "secret": WEBHOOK_SECRET}
        )
        async with guarded_receiver_client() as guarded:
            with pytest.raises(PermanentJobError) as refused:
                await processor.deliver(a_reply(), replace(context, receiver_http=guarded))
        assert loopback.requests == []
    message = str(refused.value)
    assert message.startswith("webhook receiver of callback 7: refused to connect: 127.0.0.1")
    assert "WEBHOOK_ALLOW_PRIVATE_NETWORKS=true" in message
    assert WEBHOOK_SECRET not in message and "query-secret" not in message
    assert receiver.received == []  # nor did it go through the shared client


async def test_delivery_goes_through_the_receiver_client(
    context: ProcessorContext, receiver: FakeWebhookReceiver
) -> None:
    other = FakeWebhookReceiver()
    async with httpx.AsyncClient(transport=other.transport()) as receiver_http:
        await webhook_processor().deliver(a_reply(), replace(context, receiver_http=receiver_http))
    assert len(other.received) == 1
    assert receiver.received == []


async def test_a_redirect_from_a_receiver_is_refused_and_not_followed(
    context: ProcessorContext,
) -> None:
    with RecordingReceiver() as target, Redirector(f"{target.url}/elsewhere") as redirector:
        guarded = guarded_receiver_client(public_resolver, connect_to=to_loopback(redirector.port))
        async with guarded:
            processor = WebhookProcessor.model_validate(
                {"url": "http://receiver.example.test/hook", "secret": WEBHOOK_SECRET}
            )
            with pytest.raises(PermanentJobError, match=r"307 \(redirects are refused\)"):
                await processor.deliver(a_reply(), replace(context, receiver_http=guarded))
        assert redirector.hits == 1
        assert target.requests == []
