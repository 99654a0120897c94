"""Smoke test of the e2e harness: the real agent-server, the scripted fake LLM and a
recording webhook receiver. One agent-server process serves the whole module."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.agent_server import AgentServerProcess, start_conversation_body
from tests.support.fake_llm import FakeLLM, fail, finish, say
from tests.support.receiver import RecordingReceiver
from tests.support.waiting import wait_for, wait_until

pytestmark = pytest.mark.agent_server

WEBHOOK_SECRET = "harness-webhook-secret"


@dataclass
class Harness:
    llm: FakeLLM
    receiver: RecordingReceiver
    server: AgentServerProcess
    workspace: Path

    def start(self, text: str, conversation_id: str | None = None) -> httpx.Response:
        body = start_conversation_body(
            self.llm.base_url,
            self.workspace,
            text,
            conversation_id=conversation_id,
            tags={"source": "test"},
        )
        return httpx.post(
            f"{self.server.url}/api/conversations",
            json=body,
            headers=self.server.headers,
            timeout=30,
        )

    def describe(self, conversation_id: str) -> str:
        kinds = [
            (
                e.get("kind"),
                e.get("source"),
                e.get("key"),
                e.get("value") if e.get("key") == "execution_status" else None,
            )
            for e in self.receiver.agent_events(conversation_id)
        ]
        return f"events so far: {kinds}\nagent-server log:\n{self.server.log_tail(30)}"


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    base = tmp_path_factory.mktemp("agent-server")
    workspace = base / "project"
    workspace.mkdir()
    with (
        FakeLLM() as llm,
        RecordingReceiver() as receiver,
        AgentServerProcess(
            base / "server",
            webhook_base_url=f"{receiver.url}/agent",
            webhook_headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"},
        ) as server,
    ):
        yield Harness(llm, receiver, server, workspace)


def test_finish_run_posts_finished_batch(harness: Harness) -> None:
    harness.llm.set_rules([("hello", finish("Hi from the fake LLM."))])
    chosen = str(uuid.uuid4())
    response = harness.start("hello", conversation_id=chosen)
    assert response.status_code == 201, response.text
    info = response.json()
    assert info["id"] == chosen  # the server uses the id we chose
    assert info["tags"] == {"source": "test"}

    wait_until(
        lambda: "finished" in harness.receiver.execution_statuses(chosen),
        timeout=30,
        message=lambda: harness.describe(chosen),
    )
    batches = harness.receiver.requests_to("/agent/events/")
    assert batches
    for batch in batches:
        assert re.fullmatch(r"/agent/events/[0-9a-f]{32}", batch.path)
        assert batch.headers["x-session-api-key"] == harness.server.api_key
        assert batch.headers["authorization"] == f"Bearer {WEBHOOK_SECRET}"
        assert isinstance(batch.json(), list)
    assert any(b.path == f"/agent/events/{uuid.UUID(chosen).hex}" for b in batches)

    events = harness.receiver.agent_events(chosen)
    finish_events = [
        e for e in events if e["kind"] == "ActionEvent" and e["action"]["kind"] == "FinishAction"
    ]
    assert [e["action"]["message"] for e in finish_events] == ["Hi from the fake LLM."]
    # The conversation-info webhook went to {base}/conversations.
    infos = [r.json() for r in harness.receiver.requests_to("/agent/conversations")]
    assert any(i["id"] == chosen for i in infos)

    agent = httpx.Client(base_url=harness.server.url, headers=harness.server.headers, timeout=30)
    with agent:
        final = agent.get(f"/api/conversations/{chosen}/agent_final_response")
        assert final.json() == {"response": "Hi from the fake LLM."}
        page = agent.get(
            f"/api/conversations/{chosen}/events/search",
            params={"sort_order": "TIMESTAMP_DESC", "kind": "ActionEvent", "limit": 1},
        ).json()
        assert page["items"][0]["action"] == {
            "message": "Hi from the fake LLM.",
            "kind": "FinishAction",
        }

        # Starting again with the same id: 200, the existing conversation, no new run.
        # Title requests do not count: the agent-server sends its title request in
        # the background, before or after this point.
        requests_before = len(harness.llm.agent_requests)
        again = harness.start("hello again", conversation_id=chosen)
        assert again.status_code == 200, again.text
        assert again.json()["id"] == chosen
        users = agent.get(
            f"/api/conversations/{chosen}/events/search",
            params={"kind": "MessageEvent", "source": "user"},
        ).json()["items"]
        assert [u["llm_message"]["content"][0]["text"] for u in users] == ["hello"]
        assert len(harness.llm.agent_requests) == requests_before


def test_fail_rule_yields_error(harness: Harness) -> None:
    harness.llm.set_rules([("explode", fail(400, "scripted failure"))])
    response = harness.start("please explode")
    assert response.status_code == 201, response.text
    conversation_id: str = response.json()["id"]

    def error_event() -> dict[str, Any] | None:
        if "error" not in harness.receiver.execution_statuses(conversation_id):
            return None
        return next(
            (
                e
                for e in harness.receiver.agent_events(conversation_id)
                if e["kind"] == "ConversationErrorEvent"
            ),
            None,
        )

    event = wait_until(error_event, timeout=30, message=lambda: harness.describe(conversation_id))
    assert event is not None
    assert event["code"] == "LLMBadRequestError"
    assert "scripted failure" in event["detail"]
    assert event["classification"]["retryable"] is False
    assert "finished" not in harness.receiver.execution_statuses(conversation_id)


async def test_say_rule_yields_message_then_finished(harness: Harness) -> None:
    harness.llm.set_rules(
        [
            ("which branch", say("Which branch should I use?")),
            ("summarise", say("Summary: asked about the branch.")),
            ("use main", finish("Used main.")),
        ]
    )
    async with httpx.AsyncClient(
        base_url=harness.server.url, headers=harness.server.headers, timeout=30
    ) as agent:
        body = start_conversation_body(
            harness.llm.base_url, harness.workspace, "fix it, but which branch?"
        )
        response = await agent.post("/api/conversations", json=body)
        assert response.status_code == 201, response.text
        conversation_id: str = response.json()["id"]

        def asked() -> bool:
            events = harness.receiver.agent_events(conversation_id)
            kinds = [
                "message"
                if e["kind"] == "MessageEvent" and e["source"] == "agent"
                else e.get("value")
                if e.get("key") == "execution_status"
                else None
                for e in events
            ]
            return "message" in kinds and "finished" in kinds[kinds.index("message") :]

        await wait_for(asked, timeout=30, message=lambda: harness.describe(conversation_id))
        message = next(
            e
            for e in harness.receiver.agent_events(conversation_id)
            if e["kind"] == "MessageEvent" and e["source"] == "agent"
        )
        assert message["llm_message"]["content"][0]["text"] == "Which branch should I use?"
        assert not any(
            e["kind"] == "ActionEvent" for e in harness.receiver.agent_events(conversation_id)
        )

        final = await agent.get(f"/api/conversations/{conversation_id}/agent_final_response")
        assert final.json() == {"response": "Which branch should I use?"}

        answer = await agent.post(
            f"/api/conversations/{conversation_id}/ask_agent", json={"question": "summarise"}
        )
        assert answer.json() == {"response": "Summary: asked about the branch."}

        sent = await agent.post(
            f"/api/conversations/{conversation_id}/events",
            json={"role": "user", "content": [{"type": "text", "text": "use main"}], "run": True},
        )
        assert sent.status_code == 200
        assert sent.json() == {"success": True}
        await wait_for(
            lambda: harness.receiver.execution_statuses(conversation_id).count("finished") == 2,
            timeout=30,
            message=lambda: harness.describe(conversation_id),
        )
        final = await agent.get(f"/api/conversations/{conversation_id}/agent_final_response")
        assert final.json() == {"response": "Used main."}

    # The fake LLM saw the agent's tools; none needed a security_risk argument.
    tools = {t["function"]["name"] for b in harness.llm.agent_requests for t in b.get("tools", [])}
    assert "finish" in tools
