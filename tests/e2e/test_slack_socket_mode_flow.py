"""End to end: Slack over Socket Mode, for a relay without a public URL.

agent-relay runs as a process (`agent-relay serve`) with SLACK_APP_TOKEN and no signing
secret, the real openhands-agent-server and a scripted fake LLM. Slack is a fake Web
API plus its Socket Mode WebSocket server (tests/support/fake_slack_socket.py): the
relay opens the connection (`apps.connections.open`), gets envelopes and acknowledges
them. A mention is answered once; an envelope whose acknowledgement was lost and that
Slack sends again is answered once; after a `disconnect` message and after a dropped
connection the relay reconnects and the next mention is answered; two `serve`
processes on PostgreSQL each hold a connection and every mention is answered once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bots.slack.blocks import STOP_ACTION
from bots.slack.controls import NOTHING_RUNNING
from tests.support.agent_server import AgentServerProcess, free_port
from tests.support.fake_llm import FakeLLM, finish
from tests.support.fake_slack import app_mention, block_actions, event_callback
from tests.support.fake_slack_socket import SocketSlack
from tests.support.relay_process import RelayProcess, database_for, relay_environment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.agent_server

SUMMARY = "The socket works: answered over Socket Mode."
TEAM = "T0SOCKET"
BOT_TOKEN = "xoxb-socket-mode-bot-token"
BOT_USER = "U0BOTSOCKET"
ASKER = "U0ASKER"


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    rules = [("Please write the reply to the person", finish(SUMMARY))]
    with FakeLLM(rules, default=finish("Done with the task.")) as llm:
        yield llm


@pytest.fixture(scope="module")
def slack() -> Iterator[SocketSlack]:
    with SocketSlack() as fake:
        fake.add_team(TEAM, bot_token=BOT_TOKEN, bot_user_id=BOT_USER, bot_id="B0SOCKET")
        fake.add_user(ASKER, name="ada", display_name="Ada")
        yield fake


def environment(
    workdir: Path,
    database_url: str,
    port: int,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    slack: SocketSlack,
) -> dict[str, str]:
    return relay_environment(
        workdir=workdir,
        database_url=database_url,
        port=port,
        agent_server=agent_server,
        fake_llm=fake_llm,
        extra={
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_APP_TOKEN": slack.app_token,
            "SLACK_API_URL": slack.api_url,
        },
    )


@pytest.fixture(scope="module")
def relay(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    relay_port: int,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    slack: SocketSlack,
) -> Iterator[RelayProcess]:
    workdir = tmp_path_factory.mktemp("relay-socket-sqlite")
    database = database_for(request, "sqlite", workdir)
    env = environment(workdir, database, relay_port, agent_server, fake_llm, slack)
    relay = RelayProcess(workdir, env).start()
    try:
        yield relay
    finally:
        relay.stop()


@dataclass(frozen=True)
class Mention:
    channel: str
    ts: str
    payload: dict[str, Any]


def mention(slack: SocketSlack, text: str = "please fix the flaky test") -> Mention:
    channel = f"C{uuid.uuid4().hex[:8].upper()}"
    full_text = f"<@{BOT_USER}> {text}"
    ts = slack.add_message(TEAM, channel, user=ASKER, text=full_text)
    event = app_mention(user=ASKER, text=full_text, channel=channel, ts=ts)
    payload = event_callback(TEAM, event, event_id=f"Ev{uuid.uuid4().hex[:10].upper()}")
    return Mention(channel, ts, payload)


def answers(slack: SocketSlack, m: Mention) -> list[dict[str, Any]]:
    return [
        message
        for message in slack.thread(m.channel, m.ts, team_id=TEAM)
        if message.get("user") == BOT_USER and SUMMARY in str(message.get("text"))
    ]


def answered(relays: list[RelayProcess], slack: SocketSlack, m: Mention) -> None:
    wait_until(
        lambda: answers(slack, m) and all(relay.idle() for relay in relays),
        timeout=90,
        message=lambda: f"no answer in {m.channel}\n{relays[0].log_tail()}",
    )
    assert len(answers(slack, m)) == 1


def ready(relay: RelayProcess) -> bool:
    try:
        return httpx.get(f"{relay.url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_mention_over_socket_mode_gets_one_answer(
    relay: RelayProcess, slack: SocketSlack
) -> None:
    assert httpx.post(f"{relay.url}/slack/events", json={}, timeout=5).status_code == 404
    m = mention(slack)

    envelope = slack.send_event(m.payload)

    answered([relay], slack, m)
    assert envelope.acknowledged
    assert httpx.get(f"{relay.url}/readyz", timeout=5).json()["connections"] == {
        "slack socket mode": "connected"
    }


def test_a_click_comes_over_socket_mode_too(relay: RelayProcess, slack: SocketSlack) -> None:
    m = mention(slack)
    slack.send_event(m.payload)
    answered([relay], slack, m)
    [status] = [
        message
        for message in slack.thread(m.channel, m.ts, team_id=TEAM)
        if message.get("user") == BOT_USER and message.get("metadata")
    ]

    # Stop on a run that has ended: the click is acknowledged, and heard.
    click = block_actions(
        TEAM, user=ASKER, channel=m.channel, message=status, action_id=STOP_ACTION, value="stop"
    )
    envelope = slack.send_interaction(click)

    wait_until(
        lambda: (
            envelope.acknowledged
            and any(NOTHING_RUNNING in e["text"] for e in slack.ephemerals(ASKER))
        ),
        timeout=30,
        message=lambda: f"the click was not handled:\n{relay.log_tail()}",
    )
    assert len(answers(slack, m)) == 1


def test_an_envelope_sent_again_after_a_lost_ack_gets_one_answer(
    relay: RelayProcess, slack: SocketSlack
) -> None:
    m = mention(slack)
    slack.lose_acks(1)
    envelope = slack.send_event(m.payload)
    answered([relay], slack, m)
    assert not envelope.acknowledged

    slack.resend_unacknowledged()

    wait_until(lambda: envelope.acknowledged and relay.idle(), timeout=30)
    assert envelope.attempts == 2
    assert len(answers(slack, m)) == 1


@pytest.mark.parametrize("how", ["disconnect", "drop"])
def test_after_a_lost_connection_the_next_mention_is_answered(
    relay: RelayProcess, slack: SocketSlack, how: str
) -> None:
    opened = slack.connections_opened
    if how == "disconnect":
        slack.disconnect()  # Slack's "refresh_requested"
    else:
        slack.drop()
    wait_until(
        lambda: slack.connections_opened > opened and slack.open_connections() == 1,
        timeout=60,
        message=lambda: f"no reconnection\n{relay.log_tail()}",
    )
    wait_until(lambda: ready(relay), timeout=30)
    m = mention(slack, "are you back?")

    slack.send_event(m.payload)

    answered([relay], slack, m)


def test_two_serve_processes_on_postgresql_answer_every_mention_once(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    relay: RelayProcess,
    relay_port: int,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    slack: SocketSlack,
) -> None:
    relay.stop()  # the SQLite relay: only the two below hold connections now
    wait_until(lambda: slack.open_connections() == 0, timeout=30)
    first_dir = tmp_path_factory.mktemp("relay-socket-pg-1")
    database = database_for(request, "postgresql", first_dir)
    relays = []
    try:
        # The agent-server's webhooks go to the first one's port (the module's); the
        # database is the one both share.
        second_dir = tmp_path_factory.mktemp("relay-socket-pg-2")
        for workdir, port in ((first_dir, relay_port), (second_dir, free_port())):
            env = environment(workdir, database, port, agent_server, fake_llm, slack)
            relays.append(RelayProcess(workdir, env).start())
        wait_until(lambda: slack.open_connections() == 2, timeout=30)
        mentions = [mention(slack, f"task {n}") for n in range(4)]

        envelopes = [slack.send_event(m.payload) for m in mentions]

        for m in mentions:
            answered(relays, slack, m)
        assert len({e.sent_on[0] for e in envelopes}) == 2  # both processes had a share
        assert all(e.acknowledged for e in envelopes)
    finally:
        for started in relays:
            started.stop()
