"""relay/doctor/agent_server.py: an agent-server that is down, or that refuses the key."""

from __future__ import annotations

from tests.support.deployment import Peers, closed_port_url
from tests.support.doctor import only, run_checks, settings_of


async def test_an_agent_server_that_is_down_fails(peers: Peers, database_url: str) -> None:
    down = closed_port_url()

    results = await run_checks(settings_of(peers.environment(database_url), AGENT_SERVER_URL=down))

    agent = only(results, "agent-server")
    assert (agent.status, agent.detail) == ("fail", f"{down} does not answer (ConnectError)")
    assert agent.fix is not None and "AGENT_SERVER_URL" in agent.fix
    assert only(results, "agent-server key").status == "skip"


async def test_an_agent_server_that_refuses_the_key_fails_the_key_check(
    peers: Peers, database_url: str
) -> None:
    results = await run_checks(
        settings_of(peers.environment(database_url), AGENT_SERVER_API_KEY="not-the-session-key")
    )

    assert only(results, "agent-server").status == "ok"
    key = only(results, "agent-server key")
    assert (key.status, key.detail) == ("fail", "refused X-Session-API-Key (HTTP 401)")
    assert key.fix is not None and key.fix.startswith("set AGENT_SERVER_API_KEY")
