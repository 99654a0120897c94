"""Fixtures every end-to-end module shares: the relay's port and a real agent-server
whose webhooks go to it (module-scoped: one agent-server start per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.agent_server import AgentServerProcess, free_port


@pytest.fixture(scope="module")
def relay_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def agent_server(
    tmp_path_factory: pytest.TempPathFactory, relay_port: int
) -> Iterator[AgentServerProcess]:
    with AgentServerProcess(
        tmp_path_factory.mktemp("agent-server"),
        webhook_base_url=f"http://127.0.0.1:{relay_port}/agent",
    ) as server:
        yield server
