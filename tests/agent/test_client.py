"""What AgentClient asks of the agent-server for confirmations (the fake records it)."""

from __future__ import annotations

import pytest

from agent.client import AgentClient, ConfirmationPolicy, LLMSettings, SecurityAnalyzer
from tests.support.fake_agent_api import FakeAgentServer


def client_of(
    agent_server: FakeAgentServer,
    policy: ConfirmationPolicy = "never",
    analyzer: SecurityAnalyzer = "none",
) -> AgentClient:
    return AgentClient(
        "http://agent-server.test",
        agent_server.api_key,
        LLMSettings(model="openai/fake-model"),
        "workspace",
        transport=agent_server.transport(),
        confirmation_policy=policy,
        security_analyzer=analyzer,
    )


@pytest.mark.parametrize(
    ("policy", "analyzer", "kind", "analyzer_kind"),
    [
        ("never", "none", "NeverConfirm", None),
        ("always", "none", "AlwaysConfirm", None),
        ("risky", "llm", "ConfirmRisky", "LLMSecurityAnalyzer"),
    ],
)
async def test_the_confirmation_policy_is_sent_at_start(
    policy: ConfirmationPolicy, analyzer: SecurityAnalyzer, kind: str, analyzer_kind: str | None
) -> None:
    agent_server = FakeAgentServer()
    client = client_of(agent_server, policy, analyzer)
    try:
        await client.start_conversation("hello")
    finally:
        await client.aclose()

    [start] = agent_server.calls_to("POST", "/api/conversations")
    assert start.body["confirmation_policy"] == {"kind": kind}
    assert start.body.get("security_analyzer") == (
        {"kind": analyzer_kind} if analyzer_kind else None
    )


async def test_an_answer_and_a_run() -> None:
    agent_server = FakeAgentServer()
    conversation_id = agent_server.add_conversation(execution_status="waiting_for_confirmation")
    client = client_of(agent_server, "always")
    try:
        await client.respond_to_confirmation(conversation_id, accept=False, reason="not now")
        await client.run(conversation_id)
        await client.run(conversation_id)  # already running: fine
        await client.respond_to_confirmation(conversation_id, accept=True, reason="ignored")
    finally:
        await client.aclose()

    answers = agent_server.calls_to("POST", "/events/respond_to_confirmation")
    assert [call.body for call in answers] == [
        {"accept": False, "reason": "not now"},
        {"accept": True},
    ]
    assert len(agent_server.calls_to("POST", "/run")) == 2
