"""Processors run against an in-memory agent-server and webhook receiver (httpx mocks)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from db.store import Store
from processors.base import ProcessorContext
from tests.support.fake_agent_api import FakeAgentServer, FakeWebhookReceiver, processor_context


@pytest.fixture
def agent_server() -> FakeAgentServer:
    return FakeAgentServer()


@pytest.fixture
def receiver() -> FakeWebhookReceiver:
    return FakeWebhookReceiver()


@pytest.fixture
async def context(
    store: Store, agent_server: FakeAgentServer, receiver: FakeWebhookReceiver
) -> AsyncIterator[ProcessorContext]:
    async with processor_context(store, agent_server, receiver) as ready:
        yield ready
