"""End to end: reconciliation, with the real agent-server whose webhooks never reach
agent-relay.

Between the agent-server and the relay sits a black hole: it answers 200 and forwards
nothing (sending the webhooks to a closed port would lose nothing, the agent-server
would re-send them). So every stop is lost, as after an agent-server restart, and only
the reconciliation (every 2 s here, for conversations quiet for 3 s) finds them:

- a finished conversation is answered once, with its summary;
- the lost webhooks, delivered late while the reconciliation works, give no second
  answer and no second summary instruction;
- a conversation deleted on the agent-server closes as ERROR with a readable reply.

Runs on SQLite and on PostgreSQL; one agent-server serves both.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from processors.reconcile import LOST_TEXT
from tests.support.agent_server import AgentServerProcess, start_conversation_body
from tests.support.fake_llm import FakeLLM, finish
from tests.support.receiver import RecordedRequest, RecordingReceiver
from tests.support.relay_process import RelayProcess, database_for, relay_environment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.agent_server

SUMMARY = "SUMMARY: the changelog is updated."
RECONCILE = {"RECONCILE_INTERVAL_SECONDS": "2", "RECONCILE_AFTER_SECONDS": "3"}


@pytest.fixture(scope="module")
def black_hole() -> Iterator[RecordingReceiver]:
    """Where the agent-server's webhooks go: answered 200, recorded, never forwarded."""
    with RecordingReceiver() as hole:
        yield hole


@pytest.fixture(scope="module")
def agent_server(
    tmp_path_factory: pytest.TempPathFactory, black_hole: RecordingReceiver
) -> Iterator[AgentServerProcess]:
    with AgentServerProcess(
        tmp_path_factory.mktemp("agent-server"), webhook_base_url=f"{black_hole.url}/agent"
    ) as server:
        yield server


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    rules = [("Please write the reply to the person", finish(SUMMARY))]
    with FakeLLM(rules, default=finish("Done with the task.")) as llm:
        yield llm


@pytest.fixture(scope="module")
def receiver() -> Iterator[RecordingReceiver]:
    with RecordingReceiver() as recording:
        yield recording


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def relay(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    relay_port: int,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
) -> Iterator[RelayProcess]:
    workdir = tmp_path_factory.mktemp(f"relay-{request.param}")
    env = relay_environment(
        workdir=workdir,
        database_url=database_for(request, request.param, workdir),
        port=relay_port,
        agent_server=agent_server,
        fake_llm=fake_llm,
        extra=RECONCILE,
    )
    relay = RelayProcess(workdir, env).start()
    try:
        yield relay
    finally:
        relay.stop()


def _callback(receiver: RecordingReceiver, hook: str) -> dict[str, str]:
    return {"kind": "webhook", "url": f"{receiver.url}{hook}", "secret": "e2e-secret"}


def _start(
    relay: RelayProcess, receiver: RecordingReceiver, prompt: str, hook: str
) -> dict[str, str]:
    with relay.api() as api:
        response = api.post(
            "/api/conversations",
            json={"prompt": prompt, "callback": _callback(receiver, hook)},
        )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _status(relay: RelayProcess, callback_id: int) -> str:
    with relay.api() as api:
        return str(api.get(f"/api/callbacks/{callback_id}").json()["status"])


def _answered(
    relay: RelayProcess, receiver: RecordingReceiver, hook: str, callback_id: int, final: str
) -> list[RecordedRequest]:
    wait_until(
        lambda: _status(relay, callback_id) == final and receiver.requests_to(hook),
        timeout=90,
        message=lambda: (
            f"callback {callback_id} not {final} with a reply;"
            f" receiver got {[r.body[:200] for r in receiver.requests_to(hook)]}\n"
            f"relay log:\n{relay.log_tail()}"
        ),
    )
    return receiver.requests_to(hook)


def _deliver_late(
    relay: RelayProcess,
    agent_server: AgentServerProcess,
    hole: RecordingReceiver,
    conversation_id: str,
) -> int:
    """Send the relay every batch the black hole swallowed for the conversation, as the
    agent-server sent it; returns how many."""
    batches = [r for r in hole.requests_to("/agent/events/") if r.path.endswith(conversation_id)]
    for batch in batches:
        response = httpx.post(
            f"{relay.url}{batch.path}",
            content=batch.body,
            headers={"Content-Type": "application/json", **agent_server.headers},
            timeout=10,
        )
        assert response.status_code == 200, response.text
    return len(batches)


def test_a_lost_finish_is_answered_once_after_the_next_reconciliation(
    relay: RelayProcess,
    receiver: RecordingReceiver,
    agent_server: AgentServerProcess,
    black_hole: RecordingReceiver,
    request: pytest.FixtureRequest,
) -> None:
    hook = f"/hooks/lost-{request.node.callspec.id}"
    started = _start(relay, receiver, "Update the changelog", hook)
    conversation = started["conversation_id"]

    [delivery] = _answered(relay, receiver, hook, int(started["callback_id"]), "COMPLETED")

    assert delivery.json()["summary"] == SUMMARY
    # Both stops (the task's, the summary's) were lost on the way.
    wait_until(lambda: black_hole.execution_statuses(conversation).count("finished") == 2)
    assert len(agent_server.user_messages(conversation)) == 2  # the prompt, the instruction
    # Later runs find the callback closed: nothing more.
    runs_before = _reconcile_runs(relay)
    wait_until(lambda: _reconcile_runs(relay) >= runs_before + 2, timeout=30)
    assert len(receiver.requests_to(hook)) == 1


def test_late_webhooks_racing_the_reconciliation_give_no_second_answer(
    relay: RelayProcess,
    receiver: RecordingReceiver,
    agent_server: AgentServerProcess,
    black_hole: RecordingReceiver,
    request: pytest.FixtureRequest,
) -> None:
    hook = f"/hooks/race-{request.node.callspec.id}"
    started = _start(relay, receiver, "Update the changelog again", hook)
    conversation = started["conversation_id"]
    # The reconciliation found the first stop and sent the summary instruction: now
    # the first stop's webhooks arrive after all, while the agent answers it.
    wait_until(
        lambda: len(_user_messages(agent_server, conversation)) == 2,
        timeout=60,
        message=lambda: f"no summary instruction sent\n{relay.log_tail()}",
    )
    assert _deliver_late(relay, agent_server, black_hole, conversation) > 0

    _answered(relay, receiver, hook, int(started["callback_id"]), "COMPLETED")
    # And every webhook of the conversation, the answer's stop among them, once more.
    _deliver_late(relay, agent_server, black_hole, conversation)
    wait_until(relay.idle, timeout=30)

    assert [r.json()["summary"] for r in receiver.requests_to(hook)] == [SUMMARY]
    assert len(agent_server.user_messages(conversation)) == 2


def test_a_conversation_deleted_on_the_agent_server_closes_with_a_readable_reply(
    relay: RelayProcess,
    receiver: RecordingReceiver,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> None:
    hook = f"/hooks/deleted-{request.node.callspec.id}"
    # A conversation started elsewhere that has not run yet (no initial message, so
    # idle): registering a callback on it queues no catch-up.
    body = start_conversation_body(
        fake_llm.base_url, tmp_path_factory.mktemp("elsewhere"), "unused"
    )
    del body["initial_message"]
    created = httpx.post(
        f"{agent_server.url}/api/conversations", json=body, headers=agent_server.headers
    )
    assert created.status_code == 201, created.text
    conversation = created.json()["id"].replace("-", "")
    with relay.api() as api:
        registered = api.post(
            "/api/callbacks",
            json={"conversation_id": conversation, "processor": _callback(receiver, hook)},
        )
    assert registered.status_code == 201, registered.text
    deleted = httpx.delete(
        f"{agent_server.url}/api/conversations/{conversation}", headers=agent_server.headers
    )
    assert deleted.status_code == 200, deleted.text

    [delivery] = _answered(relay, receiver, hook, registered.json()["callback_id"], "ERROR")

    assert delivery.json()["status"] == "error"
    assert delivery.json()["summary"] == LOST_TEXT


def _reconcile_runs(relay: RelayProcess) -> float:
    text = httpx.get(f"{relay.url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("agent_relay_reconcile_runs_total{")
    )


def _user_messages(agent_server: AgentServerProcess, conversation_id: str) -> list[str]:
    """Its user messages; none while the start job has not created it yet."""
    known = httpx.get(
        f"{agent_server.url}/api/conversations/{conversation_id}",
        headers=agent_server.headers,
        timeout=10,
    )
    return agent_server.user_messages(conversation_id) if known.status_code == 200 else []
