"""End to end: with CONFIRMATION_POLICY=always the agent's terminal command waits for
`@openhands approve` or `@openhands reject <reason>` in the GitHub or GitLab thread.

agent-relay runs as a process with the real openhands-agent-server (AlwaysConfirm at
start) and the scripted LLM, whose terminal call is held; the fake GitHub and GitLab
record every comment and edit. The LLM's next request shows what reached the agent:
the command's output after an approval, "Action rejected: ..." after a rejection.
GitHub runs on SQLite, GitLab on PostgreSQL.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.client import AgentClient, ConfirmationPolicy, LLMSettings, SecurityAnalyzer
from bots.slack.blocks import APPROVE_ACTION, REJECT_ACTION
from bots.slack.controls import ALREADY_ANSWERED
from tests.support import github_webhooks as hooks
from tests.support.agent_server import AgentServerProcess
from tests.support.fake_github import FakeGitHub
from tests.support.fake_gitlab import (
    BOT_TOKEN as GITLAB_BOT_TOKEN,
)
from tests.support.fake_gitlab import (
    WEBHOOK_SECRET as GITLAB_WEBHOOK_SECRET,
)
from tests.support.fake_gitlab import (
    FakeGitlab,
    delivery_headers,
    note_hook,
)
from tests.support.fake_llm import FakeLLM, finish, message_text, run, steps
from tests.support.fake_slack import (
    FakeSlack,
    app_mention,
    block_actions,
    event_callback,
    signed_interaction,
    slack_signature_headers,
    view_submission,
)
from tests.support.relay_process import RelayProcess, database_for, relay_environment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.agent_server

APP_ID = 7171
SLUG = "openhands-relay"
BOT = f"{SLUG}[bot]"
INSTALLATION = 97
REPO = "acme/api"
WEBHOOK_SECRET = "e2e-approvals-github-secret"
WRITER, READER = "ada", "rita"
PROJECT_ID, PROJECT = 37, "acme/widgets"
DEVELOPER, REPORTER = 47, 48
TEAM, SLACK_BOT_TOKEN, BOT_USER = "T0APPROVALS", "xoxb-approvals-token", "U0BOTAPPROVALS"
SIGNING_SECRET = "e2e-approvals-signing-secret"
ASKER, STRANGER = "U0ASKER", "U0STRANGER"
SUMMARY = "Here is what happened."
HELD = "[held]"
# The command the agent asks to run; its output is how the test knows it ran.
COMMAND = "echo approved-output-$((6 * 7))"
OUTPUT = "approved-output-42"


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    rules = [
        # processors.summary.SUMMARY_INSTRUCTION starts with these words.
        ("Please write the reply to the person", finish(SUMMARY)),
        (HELD, steps(run(COMMAND), finish("Ran it, or not."))),
    ]
    with FakeLLM(rules, default=finish("Nothing to do.")) as llm:
        yield llm


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module")
def gitlab() -> Iterator[FakeGitlab]:
    with FakeGitlab() as fake:
        fake.add_project(PROJECT_ID, PROJECT)
        fake.add_user(DEVELOPER, "ada")
        fake.add_user(REPORTER, "rita")
        fake.set_access(PROJECT_ID, DEVELOPER, 30)
        fake.set_access(PROJECT_ID, REPORTER, 20)
        yield fake


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.add_team(TEAM, bot_token=SLACK_BOT_TOKEN, bot_user_id=BOT_USER, bot_id="B0APPROVALS")
        fake.add_user(ASKER, name="ada", display_name="Ada")
        fake.add_user(STRANGER, name="mallory", display_name="Mallory")
        yield fake


@pytest.fixture(scope="module")
def relay(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    relay_port: int,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    github: FakeGitHub,
    gitlab: FakeGitlab,
    slack: FakeSlack,
) -> Iterator[RelayProcess]:
    github.add_app(APP_ID, SLUG)
    github.add_installation(INSTALLATION, APP_ID, account="acme", repositories=[REPO])
    github.set_permission(REPO, WRITER, "write")
    github.set_permission(REPO, READER, "read")
    # SQLite unless a test asks for PostgreSQL (indirect parametrisation).
    database = getattr(request, "param", "sqlite")
    workdir = tmp_path_factory.mktemp(f"relay-approvals-{database}")
    env = relay_environment(
        workdir=workdir,
        database_url=database_for(request, database, workdir),
        port=relay_port,
        agent_server=agent_server,
        fake_llm=fake_llm,
        extra={
            **github.relay_settings(APP_ID, WEBHOOK_SECRET),
            "GITLAB_URL": gitlab.url,
            "GITLAB_TOKEN": GITLAB_BOT_TOKEN,
            "GITLAB_WEBHOOK_SECRET": GITLAB_WEBHOOK_SECRET,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
            "CONFIRMATION_POLICY": "always",
            "JOB_LEASE_SECONDS": "5",
        },
    )
    relay = RelayProcess(workdir, env).start()
    try:
        yield relay
    finally:
        relay.stop()


def tool_results(fake_llm: FakeLLM) -> list[str]:
    """Every tool result the agent sent its LLM (the held command's output or its
    rejection), newest request last."""
    return [
        message_text(message)
        for body in fake_llm.agent_requests
        for message in body.get("messages") or []
        if isinstance(message, dict) and message.get("role") == "tool"
    ]


def conversation_status(agent_server: AgentServerProcess, conversation_id: str) -> str:
    info = httpx.get(
        f"{agent_server.url}/api/conversations/{conversation_id}",
        headers=agent_server.headers,
        timeout=10,
    ).json()
    return str(info["execution_status"])


# -- GitHub -------------------------------------------------------------------


def new_issue(github: FakeGitHub) -> int:
    number = int(uuid.uuid4().int % 900_000) + 1000
    github.add_issue(REPO, number, title="Clean the cache", body="It is stale.", user=WRITER)
    return number


def comment(
    relay: RelayProcess, github: FakeGitHub, number: int, text: str, *, user: str = WRITER
) -> str:
    """Post a comment as `user` and deliver its webhook; the delivery's id."""
    posted = github.add_comment(REPO, number, text, user=user)
    payload = hooks.issue_comment(REPO, INSTALLATION, posted, sender=user)
    delivery_id = str(uuid.uuid4())
    response = hooks.deliver(
        relay.url, "issue_comment", payload, WEBHOOK_SECRET, delivery_id=delivery_id
    )
    assert response.status_code == 202, response.text
    return delivery_id


def bot_comments(github: FakeGitHub, number: int) -> list[dict[str, Any]]:
    return [c for c in github.comments(REPO, number) if c["user"]["login"] == BOT]


def bot_said(github: FakeGitHub, number: int, text: str) -> list[dict[str, Any]]:
    return [c for c in bot_comments(github, number) if text in c["body"]]


def wait_for(relay: RelayProcess, what: Any, message: str, timeout: float = 120) -> None:
    wait_until(
        lambda: bool(what()) and relay.idle(),
        timeout=timeout,
        message=lambda: f"{message}:\n{relay.log_tail()}",
    )


def test_github_a_held_command_is_asked_refused_to_a_reader_and_run_on_a_writers_approval(
    relay: RelayProcess,
    github: FakeGitHub,
    fake_llm: FakeLLM,
    agent_server: AgentServerProcess,
) -> None:
    number = new_issue(github)
    comment(relay, github, number, f"@openhands {HELD} clean the cache")

    wait_for(relay, lambda: bot_said(github, number, "waits for approval"), "no request posted")
    [request] = bot_said(github, number, "waits for approval")
    assert COMMAND in request["body"]
    assert "`@openhands approve`" in request["body"]
    assert bot_comments(github, number)[0]["body"].startswith("Waiting for approval.")
    assert not any(OUTPUT in text for text in tool_results(fake_llm))

    # A reader may not answer: one polite refusal, and the agent still waits.
    comment(relay, github, number, "@openhands approve", user=READER)
    wait_for(relay, lambda: bot_said(github, number, f"@{READER} Sorry"), "no refusal")
    assert len(bot_said(github, number, "waits for approval")) == 1
    assert "Approved" not in bot_said(github, number, "waits for approval")[0]["body"]

    approve = comment(relay, github, number, "@openhands approve")
    wait_for(relay, lambda: bot_said(github, number, SUMMARY), "no answer after the approval")

    # The command ran: its output reached the agent's next LLM request.
    assert any(OUTPUT in text for text in tool_results(fake_llm))
    [request] = bot_said(github, number, "waits for approval")
    assert f"Approved by @{WRITER}." in request["body"]
    assert "`@openhands approve`" not in request["body"]
    assert len(bot_said(github, number, SUMMARY)) == 1
    assert bot_comments(github, number)[0]["body"].startswith("Done in ")

    # The same delivery again, and a second approve: nothing changes.
    answers_before = len(bot_comments(github, number))
    posted = github.add_comment(REPO, number, "@openhands approve", user=WRITER)
    payload = hooks.issue_comment(REPO, INSTALLATION, posted, sender=WRITER)
    hooks.deliver(relay.url, "issue_comment", payload, WEBHOOK_SECRET, delivery_id=approve)
    comment(relay, github, number, "@openhands approve")
    wait_for(
        relay,
        lambda: bot_said(github, number, "nothing is waiting for approval"),
        "no reply to the second approve",
    )
    assert len(bot_comments(github, number)) == answers_before + 1
    assert len(bot_said(github, number, SUMMARY)) == 1


def test_github_a_rejection_sends_its_reason_to_the_agent(
    relay: RelayProcess, github: FakeGitHub, fake_llm: FakeLLM
) -> None:
    number = new_issue(github)
    comment(relay, github, number, f"@openhands {HELD} clean the cache, carefully")
    wait_for(relay, lambda: bot_said(github, number, "waits for approval"), "no request posted")
    runs_before = sum(OUTPUT in text for text in tool_results(fake_llm))

    comment(relay, github, number, "@openhands reject not on a Friday")
    wait_for(relay, lambda: bot_said(github, number, SUMMARY), "no answer after the rejection")

    assert any(
        "Action rejected:" in text and "not on a Friday" in text for text in tool_results(fake_llm)
    ), tool_results(fake_llm)
    # The command never ran.
    assert sum(OUTPUT in text for text in tool_results(fake_llm)) == runs_before
    [request] = bot_said(github, number, "waits for approval")
    assert f"Rejected by @{WRITER}: not on a Friday" in request["body"]
    assert len(bot_said(github, number, SUMMARY)) == 1


# -- Slack --------------------------------------------------------------------


def slack_mention(relay: RelayProcess, slack: FakeSlack, request: str) -> tuple[str, str]:
    """A mention in a new channel; its channel and ts."""
    channel = f"C{uuid.uuid4().hex[:8].upper()}"
    text = f"<@{BOT_USER}> {request}"
    ts = slack.add_message(TEAM, channel, user=ASKER, text=text)
    envelope = event_callback(
        TEAM,
        app_mention(user=ASKER, text=text, channel=channel, ts=ts),
        event_id=f"Ev{uuid.uuid4().hex[:10].upper()}",
    )
    body = json.dumps(envelope).encode()
    headers = {"Content-Type": "application/json", **slack_signature_headers(SIGNING_SECRET, body)}
    response = httpx.post(f"{relay.url}/slack/events", content=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return channel, ts


def slack_requests(slack: FakeSlack, channel: str, ts: str) -> list[dict[str, Any]]:
    return [
        m
        for m in slack.thread(channel, ts, team_id=TEAM)
        if m.get("user") == BOT_USER and "waits for approval" in str(m.get("text"))
    ]


def slack_answers(slack: FakeSlack, channel: str, ts: str) -> list[dict[str, Any]]:
    return [
        m
        for m in slack.thread(channel, ts, team_id=TEAM)
        if m.get("user") == BOT_USER and SUMMARY in str(m.get("text"))
    ]


def click(relay: RelayProcess, payload: dict[str, Any]) -> None:
    body, headers = signed_interaction(SIGNING_SECRET, payload)
    response = httpx.post(f"{relay.url}/slack/events", content=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text


def slack_conversation(relay: RelayProcess, channel: str) -> str:
    with sqlite3.connect(relay.workdir / "relay.db") as db:
        [(conversation_id,)] = db.execute(
            "SELECT conversation_id FROM conversation_links WHERE thread_key LIKE ?",
            (f"%:{channel}:%",),
        ).fetchall()
    return str(conversation_id)


def observations(agent_server: AgentServerProcess, conversation_id: str) -> list[str]:
    """What the conversation's tool calls gave back, as the agent-server recorded it."""
    items = httpx.get(
        f"{agent_server.url}/api/conversations/{conversation_id}/events/search",
        params={"kind": "ObservationEvent", "limit": 100},
        headers=agent_server.headers,
        timeout=10,
    ).json()["items"]
    return [json.dumps(item["observation"]) for item in items]


def test_slack_the_request_is_a_thread_message_with_approve_and_reject_buttons(
    relay: RelayProcess, slack: FakeSlack
) -> None:
    channel, ts = slack_mention(relay, slack, f"{HELD} clean the cache")

    wait_for(relay, lambda: slack_requests(slack, channel, ts), "no request in the Slack thread")
    [request] = slack_requests(slack, channel, ts)
    assert COMMAND.replace(">", "&gt;") in request["text"] or COMMAND in request["text"]
    section, actions = request["blocks"]
    assert section["type"] == "section" and "waits for approval" in section["text"]["text"]
    approve, reject = actions["elements"]
    assert (approve["action_id"], approve["style"]) == ("relay.approve", "primary")
    assert (reject["action_id"], reject["style"]) == ("relay.reject", "danger")
    assert approve["value"] == reject["value"] and approve["value"].isdigit()
    status = slack.thread(channel, ts, team_id=TEAM)[1]
    assert str(status["text"]).startswith("Waiting for approval.")


def test_slack_approve_by_the_asker_runs_the_command_once_and_other_clicks_change_nothing(
    relay: RelayProcess, slack: FakeSlack, agent_server: AgentServerProcess
) -> None:
    channel, ts = slack_mention(relay, slack, f"{HELD} clean the cache")
    wait_for(relay, lambda: slack_requests(slack, channel, ts), "no request in the Slack thread")
    [request] = slack_requests(slack, channel, ts)
    conversation_id = slack_conversation(relay, channel)
    asked, value = request, request["blocks"][1]["elements"][0]["value"]

    def approve(user: str) -> dict[str, Any]:
        return block_actions(
            TEAM,
            user=user,
            channel=channel,
            message=asked,
            action_id=APPROVE_ACTION,
            value=value,
        )

    # Someone else: told privately; the agent still waits.
    click(relay, approve(STRANGER))
    wait_for(relay, lambda: slack.ephemerals(STRANGER), "no refusal for the stranger")
    assert "can answer this request" in slack.ephemerals(STRANGER)[-1]["text"]
    assert conversation_status(agent_server, conversation_id) == "waiting_for_confirmation"

    mine = approve(ASKER)
    click(relay, mine)
    click(relay, mine)  # Slack sent the same payload twice
    wait_for(relay, lambda: slack_answers(slack, channel, ts), "no answer after the approval")

    assert sum(OUTPUT in text for text in observations(agent_server, conversation_id)) == 1
    [request] = slack_requests(slack, channel, ts)
    assert f"Approved by <@{ASKER}>" in request["text"]
    assert len(request["blocks"]) == 1  # the buttons are gone

    # A later click on the answered request: a private note, nothing else.
    click(relay, approve(ASKER))
    wait_for(
        relay,
        lambda: any(ALREADY_ANSWERED in e["text"] for e in slack.ephemerals(ASKER)),
        "no note for the late click",
    )
    assert len(slack_answers(slack, channel, ts)) == 1
    assert sum(OUTPUT in text for text in observations(agent_server, conversation_id)) == 1


def test_slack_reject_asks_for_a_reason_in_a_modal_and_the_agent_gets_it(
    relay: RelayProcess, slack: FakeSlack, fake_llm: FakeLLM, agent_server: AgentServerProcess
) -> None:
    channel, ts = slack_mention(relay, slack, f"{HELD} clean the cache, gently")
    wait_for(relay, lambda: slack_requests(slack, channel, ts), "no request in the Slack thread")
    [request] = slack_requests(slack, channel, ts)
    conversation_id = slack_conversation(relay, channel)
    views = len(slack.views())

    value = request["blocks"][1]["elements"][1]["value"]
    click(
        relay,
        block_actions(
            TEAM,
            user=ASKER,
            channel=channel,
            message=request,
            action_id=REJECT_ACTION,
            value=value,
        ),
    )
    [modal] = slack.views()[views:]
    assert modal["callback_id"] == REJECT_ACTION
    # Opening the modal decided nothing.
    assert conversation_status(agent_server, conversation_id) == "waiting_for_confirmation"

    click(relay, view_submission(TEAM, user=ASKER, view=modal, reason="use the staging cache"))
    wait_for(relay, lambda: slack_answers(slack, channel, ts), "no answer after the rejection")

    assert any(
        "Action rejected:" in text and "use the staging cache" in text
        for text in tool_results(fake_llm)
    )
    assert not any(OUTPUT in text for text in observations(agent_server, conversation_id))
    [request] = slack_requests(slack, channel, ts)
    assert f"Rejected by <@{ASKER}>" in request["text"]
    assert "use the staging cache" in request["text"]


def test_slack_a_relay_killed_right_after_the_click_applies_the_approval_once_on_restart(
    relay: RelayProcess, slack: FakeSlack, agent_server: AgentServerProcess
) -> None:
    channel, ts = slack_mention(relay, slack, f"{HELD} clean the cache, then stop")
    wait_for(relay, lambda: slack_requests(slack, channel, ts), "no request in the Slack thread")
    [request] = slack_requests(slack, channel, ts)
    conversation_id = slack_conversation(relay, channel)
    value = request["blocks"][1]["elements"][0]["value"]
    payload = block_actions(
        TEAM, user=ASKER, channel=channel, message=request, action_id=APPROVE_ACTION, value=value
    )

    click(relay, payload)
    relay.kill()  # SIGKILL, the moment Slack has its acknowledgement
    relay.start()
    click(relay, payload)  # and Slack's retry of the same click, to the new process
    wait_for(relay, lambda: slack_answers(slack, channel, ts), "no answer after the restart")

    assert sum(OUTPUT in text for text in observations(agent_server, conversation_id)) == 1
    assert len(slack_answers(slack, channel, ts)) == 1
    [request] = slack_requests(slack, channel, ts)
    assert request["text"].count(f"Approved by <@{ASKER}>") == 1


# -- GitLab -------------------------------------------------------------------

_iids = iter(range(1, 10_000))


def gitlab_note(relay: RelayProcess, gitlab: FakeGitlab, iid: int, text: str, author: int) -> None:
    note = gitlab.add_note(PROJECT_ID, "issue", iid, author_id=author, body=f"@openhands {text}")
    response = httpx.post(
        f"{relay.url}/gitlab/events",
        content=json.dumps(note_hook(gitlab, note)).encode(),
        headers=delivery_headers("Note Hook"),
        timeout=10,
    )
    assert response.status_code == 202, response.text


def gitlab_said(gitlab: FakeGitlab, iid: int, text: str) -> list[dict[str, Any]]:
    return [n for n in gitlab.bot_notes(PROJECT_ID, "issue", iid) if text in n["body"]]


@pytest.mark.parametrize("relay", ["postgresql"], indirect=True)
def test_gitlab_a_reporter_is_refused_and_a_developers_approval_runs_the_command(
    relay: RelayProcess, gitlab: FakeGitlab, fake_llm: FakeLLM
) -> None:
    iid = next(_iids)
    gitlab.add_issue(
        PROJECT_ID, iid, title="Clean the cache", description="Stale.", author_id=DEVELOPER
    )
    runs_before = sum(OUTPUT in text for text in tool_results(fake_llm))
    gitlab_note(relay, gitlab, iid, f"{HELD} clean the cache", DEVELOPER)
    wait_for(relay, lambda: gitlab_said(gitlab, iid, "waits for approval"), "no request posted")
    [request] = gitlab_said(gitlab, iid, "waits for approval")
    assert COMMAND in request["body"]

    gitlab_note(relay, gitlab, iid, "approve", REPORTER)
    wait_for(relay, lambda: gitlab_said(gitlab, iid, "@rita Sorry"), "no refusal")
    assert sum(OUTPUT in text for text in tool_results(fake_llm)) == runs_before

    gitlab_note(relay, gitlab, iid, "approve", DEVELOPER)
    wait_for(relay, lambda: gitlab_said(gitlab, iid, SUMMARY), "no answer after the approval")

    assert sum(OUTPUT in text for text in tool_results(fake_llm)) > runs_before
    [request] = gitlab_said(gitlab, iid, "waits for approval")
    assert "Approved by @ada." in request["body"]
    assert len(gitlab_said(gitlab, iid, SUMMARY)) == 1

    gitlab_note(relay, gitlab, iid, "approve", DEVELOPER)
    wait_for(
        relay,
        lambda: gitlab_said(gitlab, iid, "nothing is waiting for approval"),
        "no reply to the second approve",
    )
    assert len(gitlab_said(gitlab, iid, SUMMARY)) == 1


# -- the agent-server takes the policies -----------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "analyzer", "kind", "analyzer_kind"),
    [
        ("always", "none", "AlwaysConfirm", None),
        ("risky", "llm", "ConfirmRisky", "LLMSecurityAnalyzer"),
    ],
)
async def test_the_agent_server_starts_a_conversation_with_each_policy(
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    tmp_path: Path,
    policy: ConfirmationPolicy,
    analyzer: SecurityAnalyzer,
    kind: str,
    analyzer_kind: str | None,
) -> None:
    client = AgentClient(
        agent_server.url,
        agent_server.api_key,
        LLMSettings(model="openai/fake-model", api_key="fake", base_url=fake_llm.base_url),
        str(tmp_path),
        confirmation_policy=policy,
        security_analyzer=analyzer,
    )
    try:
        conversation_id = await client.start_conversation(None)
        info = await client.get_conversation(conversation_id)
    finally:
        await client.aclose()

    assert info is not None
    assert info["confirmation_policy"]["kind"] == kind
    assert (info.get("security_analyzer") or {}).get("kind") == analyzer_kind
