"""End to end: agent-relay (`agent-relay serve`, uvicorn on loopback) with the real
openhands-agent-server and a scripted fake LLM, and a local webhook receiver.

A conversation started through POST /api/conversations must produce exactly one
signed POST at the receiver: the agent's summary when it finishes, a readable failure
when it fails; and the callback must end COMPLETED or ERROR. Runs on SQLite and on
PostgreSQL; one agent-server serves both.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

import httpx
import pytest

from tests.support.agent_server import AgentServerProcess
from tests.support.fake_llm import FakeLLM, fail, finish
from tests.support.receiver import RecordedRequest, RecordingReceiver
from tests.support.relay_process import (
    CONVERSATION_URL,
    RelayProcess,
    database_for,
    relay_environment,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.agent_server

RECEIVER_SECRET = "e2e-receiver-secret"
SUMMARY = "SUMMARY: the flaky test is fixed on branch fix/flaky."


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    rules = [
        # processors.summary.SUMMARY_INSTRUCTION starts with these words.
        ("Please write the reply to the person", finish(SUMMARY)),
        ("[e2e-fail]", fail(400, "scripted failure at http://10.0.0.7/internal token=sk-123")),
    ]
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
    )
    relay = RelayProcess(workdir, env).start()
    try:
        yield relay
    finally:
        relay.stop()


def _start(
    relay: RelayProcess, receiver: RecordingReceiver, prompt: str, hook: str
) -> dict[str, str]:
    with relay.api() as api:
        response = api.post(
            "/api/conversations",
            json={
                "prompt": prompt,
                "repository": "acme/widgets",
                "callback": {
                    "kind": "webhook",
                    "url": f"{receiver.url}{hook}",
                    "secret": RECEIVER_SECRET,
                },
            },
        )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _callback_status(relay: RelayProcess, callback_id: int) -> str:
    with relay.api() as api:
        return str(api.get(f"/api/callbacks/{callback_id}").json()["status"])


def _settled(
    relay: RelayProcess, receiver: RecordingReceiver, hook: str, callback_id: int, final: str
) -> list[RecordedRequest]:
    """Wait until the callback is closed, its reply arrived and no job is left."""
    wait_until(
        lambda: (
            _callback_status(relay, callback_id) == final
            and any(r.status == 200 for r in receiver.requests_to(hook))
            and relay.idle()
        ),
        timeout=60,
        message=lambda: (
            f"callback {callback_id} not {final} with its reply delivered; receiver got"
            f" {[(r.status, r.body[:200]) for r in receiver.requests_to(hook)]}\n"
            f"relay log:\n{relay.log_tail()}"
        ),
    )
    return receiver.requests_to(hook)


def _assert_signed(request: RecordedRequest) -> None:
    expected = (
        "sha256=" + hmac.new(RECEIVER_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    )
    assert hmac.compare_digest(request.headers["x-relay-signature-256"], expected)
    assert request.headers["x-relay-delivery"]


def test_finished_agent_posts_one_signed_summary(
    relay: RelayProcess,
    receiver: RecordingReceiver,
    agent_server: AgentServerProcess,
    request: pytest.FixtureRequest,
) -> None:
    hook = f"/hooks/success-{request.node.callspec.id}"
    started = _start(relay, receiver, "Fix the flaky test in tests/test_widgets.py", hook)

    deliveries = _settled(relay, receiver, hook, started["callback_id"], "COMPLETED")

    assert len(deliveries) == 1
    _assert_signed(deliveries[0])
    assert deliveries[0].json() == {
        "conversation_id": started["conversation_id"],
        "callback_id": started["callback_id"],
        "status": "completed",
        "summary": SUMMARY,
        "url": CONVERSATION_URL.format(conversation_id=started["conversation_id"]),
        "pull_request": None,
    }
    # The summary instruction went to the agent exactly once: the prompt and it.
    user_messages = httpx.get(
        f"{agent_server.url}/api/conversations/{started['conversation_id']}/events/search",
        params={"kind": "MessageEvent", "source": "user"},
        headers=agent_server.headers,
    ).json()["items"]
    assert len(user_messages) == 2


def test_failing_agent_posts_one_readable_failure(
    relay: RelayProcess, receiver: RecordingReceiver, request: pytest.FixtureRequest
) -> None:
    hook = f"/hooks/failure-{request.node.callspec.id}"
    started = _start(relay, receiver, "Do the impossible [e2e-fail]", hook)

    deliveries = _settled(relay, receiver, hook, started["callback_id"], "ERROR")

    assert len(deliveries) == 1
    _assert_signed(deliveries[0])
    body = deliveries[0].json()
    assert body["status"] == "error"
    assert body["summary"].startswith("The agent ran into an error and stopped before finishing.")
    for internal in (
        "Traceback",
        "litellm",
        "10.0.0.7",
        "sk-123",
        "127.0.0.1",
        "LLMBadRequestError",
    ):
        assert internal not in body["summary"]


def test_receiver_outage_is_retried_with_the_same_delivery_id(
    relay: RelayProcess, receiver: RecordingReceiver, request: pytest.FixtureRequest
) -> None:
    hook = f"/hooks/outage-{request.node.callspec.id}"
    receiver.fail_next(503, times=1, path_prefix=hook)
    started = _start(relay, receiver, "Update the changelog", hook)

    deliveries = _settled(relay, receiver, hook, started["callback_id"], "COMPLETED")

    assert [d.status for d in deliveries] == [503, 200]
    assert deliveries[0].headers["x-relay-delivery"] == deliveries[1].headers["x-relay-delivery"]
    assert deliveries[0].body == deliveries[1].body
