"""End to end: the "on it" message is the turn's live status, and `@openhands stop`
pauses a run.

agent-relay runs as a process with the real openhands-agent-server; the scripted LLM
calls the terminal tool step by step, so the agent-server's webhooks carry real
ActionEvents. The fake GitHub records every PATCH of a comment and the fake Slack
every chat.update, each with the time it came.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bots.slack.blocks import STOP_ACTION
from bots.slack.controls import NOTHING_RUNNING
from tests.support import github_webhooks as hooks
from tests.support.agent_server import AgentServerProcess
from tests.support.fake_github import FakeGitHub, GithubCall
from tests.support.fake_llm import FakeLLM, finish, run, steps
from tests.support.fake_slack import (
    FakeSlack,
    SlackCall,
    app_mention,
    block_actions,
    event_callback,
    signed_interaction,
    slack_signature_headers,
)
from tests.support.relay_process import RelayProcess, relay_environment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.agent_server

APP_ID = 6161
SLUG = "openhands-relay"
BOT = f"{SLUG}[bot]"
INSTALLATION = 93
REPO = "acme/api"
WEBHOOK_SECRET = "e2e-progress-github-secret"
WRITER = "ada"
SUMMARY = "All five steps ran."
TEAM, BOT_TOKEN, BOT_USER = "T0PROGRESS", "xoxb-progress-token", "U0BOTPROGRESS"
SIGNING_SECRET = "e2e-progress-signing-secret"
ASKER = "U0ASKER"
STRANGER = "U0STRANGER"
# bots/github/reply.py and bots/slack/reply.py: one edit per 10 s (GitHub) and per 3 s
# (Slack); the clocks of the relay and of the fake differ by the time a call takes.
GITHUB_INTERVAL, SLACK_INTERVAL, SLACK_OF_CLOCKS = 10.0, 3.0, 0.5
FIVE_STEPS, SLOW, CONTINUE = "[five-steps]", "[slow]", "[continue]"


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    five = [run(f"sleep 3 && echo step {n}") for n in range(1, 6)]
    rules = [
        # processors.summary.SUMMARY_INSTRUCTION starts with these words.
        ("Please write the reply to the person", finish(SUMMARY)),
        (CONTINUE, finish("Carried on.")),
        (FIVE_STEPS, steps(*five, finish("Five steps done."))),
        # Long enough that a stop lands while the agent works.
        (SLOW, steps(run("sleep 20"), run("echo never reached"), finish("Slow done."))),
    ]
    with FakeLLM(rules, default=finish("Nothing to do.")) as llm:
        yield llm


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.add_team(TEAM, bot_token=BOT_TOKEN, bot_user_id=BOT_USER, bot_id="B0PROGRESS")
        fake.add_user(ASKER, name="ada", display_name="Ada")
        yield fake


@pytest.fixture(scope="module")
def relay(
    tmp_path_factory: pytest.TempPathFactory,
    relay_port: int,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    github: FakeGitHub,
    slack: FakeSlack,
) -> Iterator[RelayProcess]:
    github.add_app(APP_ID, SLUG)
    github.add_installation(INSTALLATION, APP_ID, account="acme", repositories=[REPO])
    github.set_permission(REPO, WRITER, "write")
    workdir = tmp_path_factory.mktemp("relay-progress")
    env = relay_environment(
        workdir=workdir,
        database_url=f"sqlite:///{workdir / 'relay.db'}",
        port=relay_port,
        agent_server=agent_server,
        fake_llm=fake_llm,
        extra={
            **github.relay_settings(APP_ID, WEBHOOK_SECRET),
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "JOB_LEASE_SECONDS": "5",
        },
    )
    relay = RelayProcess(workdir, env).start()
    try:
        yield relay
    finally:
        relay.stop()


# -- GitHub -------------------------------------------------------------------


def new_issue(github: FakeGitHub) -> int:
    number = int(uuid.uuid4().int % 900_000) + 1000
    github.add_issue(REPO, number, title="Slow build", body="It takes ages.", user=WRITER)
    return number


def comment(relay: RelayProcess, github: FakeGitHub, number: int, text: str) -> None:
    posted = github.add_comment(REPO, number, text, user=WRITER)
    payload = hooks.issue_comment(REPO, INSTALLATION, posted, sender=WRITER)
    response = hooks.deliver(relay.url, "issue_comment", payload, WEBHOOK_SECRET)
    assert response.status_code == 202, response.text


def bot_comments(github: FakeGitHub, number: int) -> list[dict[str, Any]]:
    return [c for c in github.comments(REPO, number) if c["user"]["login"] == BOT]


def status_edits(github: FakeGitHub, comment_id: int) -> list[GithubCall]:
    return github.calls("PATCH", rf"/repos/{REPO}/issues/comments/{comment_id}$")


def answer_posts(github: FakeGitHub, number: int, text: str) -> list[GithubCall]:
    return [
        call
        for call in github.calls("POST", rf"/repos/{REPO}/issues/{number}/comments$")
        if call.status == 201 and text in str((call.body or {}).get("body"))
    ]


def wait_for_bot_comment(
    relay: RelayProcess, github: FakeGitHub, number: int, text: str
) -> list[dict[str, Any]]:
    wait_until(
        lambda: any(text in c["body"] for c in bot_comments(github, number)[1:]) and relay.idle(),
        timeout=120,
        message=lambda: f"no {text!r} on #{number}:\n{relay.log_tail()}",
    )
    return bot_comments(github, number)


def progress_jobs_left(relay: RelayProcess) -> int:
    """Status edits still queued (delayed ones too): once none is, none can come."""
    with sqlite3.connect(relay.workdir / "relay.db") as db:
        [(count,)] = db.execute(
            "SELECT COUNT(*) FROM jobs WHERE kind = 'turn.progress'"
            " AND status IN ('queued', 'running')"
        ).fetchall()
    return int(count)


def test_a_five_step_run_edits_the_github_status_throttled_then_answers_once(
    relay: RelayProcess, github: FakeGitHub
) -> None:
    number = new_issue(github)

    comment(relay, github, number, f"@openhands {FIVE_STEPS} speed up the build")
    status, *answers = wait_for_bot_comment(relay, github, number, SUMMARY)
    wait_until(lambda: progress_jobs_left(relay) == 0, timeout=30, message="edits still queued")

    assert [a["body"] for a in answers if SUMMARY in a["body"]] == [answers[0]["body"]]
    assert len(answers) == 1
    edits = status_edits(github, status["id"])
    bodies = [str(call.body["body"]) for call in edits]
    assert bodies[-1].startswith("Done in ") and "steps" in bodies[-1]
    progress = edits[:-1]
    assert progress, f"no progress edit before the outcome: {bodies}"
    assert all(b.startswith("Working on it: ") for b in bodies[:-1]), bodies
    assert any("sleep 3 && echo step" in b for b in bodies[:-1]), bodies
    # Throttled: at most one edit per interval, the final one included, and never the
    # same text twice.
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(edits)]
    assert all(gap >= GITHUB_INTERVAL - 1.0 for gap in gaps), gaps
    assert len(set(bodies)) == len(bodies)
    # Every edit keeps the marker a retried event job finds the comment by.
    assert all("<!--" in b for b in bodies)
    # The status was final before the answer came, and nothing edited it after.
    [answer] = answer_posts(github, number, SUMMARY)
    assert all(call.at < answer.at for call in edits)
    assert bot_comments(github, number)[0]["body"] == bodies[-1]


def conversation_status(agent_server: AgentServerProcess, conversation_id: str) -> str:
    info = httpx.get(
        f"{agent_server.url}/api/conversations/{conversation_id}",
        headers=agent_server.headers,
        timeout=10,
    ).json()
    return str(info["execution_status"])


def thread_callbacks(relay: RelayProcess, number: int) -> list[dict[str, Any]]:
    """The turns of one issue, oldest first (read from the relay's database)."""
    with sqlite3.connect(relay.workdir / "relay.db") as db:
        rows = db.execute(
            "SELECT conversation_id, status FROM conversation_callbacks"
            " WHERE processor_type = 'github' AND json_extract(processor_json, '$.number') = ?"
            " ORDER BY id",
            (number,),
        ).fetchall()
    return [{"conversation_id": row[0], "status": row[1]} for row in rows]


def test_stop_by_a_writer_pauses_the_run_closes_the_turn_once_and_a_mention_continues(
    relay: RelayProcess,
    github: FakeGitHub,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
) -> None:
    number = new_issue(github)
    comment(relay, github, number, f"@openhands {SLOW} rebuild everything")
    wait_until(
        lambda: len(thread_callbacks(relay, number)) == 1,
        timeout=60,
        message=lambda: f"no turn for #{number}:\n{relay.log_tail()}",
    )
    [callback] = thread_callbacks(relay, number)
    conversation_id = str(callback["conversation_id"])
    # The agent is inside its 20-second step: the status shows it.
    wait_until(
        lambda: any("sleep 20" in c["body"] for c in bot_comments(github, number)[:1]),
        timeout=60,
        message=lambda: f"the run did not start:\n{relay.log_tail()}",
    )

    comment(relay, github, number, "@openhands stop")
    comments = wait_for_bot_comment(relay, github, number, f"Stopped by @{WRITER}")

    assert conversation_status(agent_server, conversation_id) == "paused"
    stopped = [c for c in comments[1:] if f"Stopped by @{WRITER}" in c["body"]]
    assert len(stopped) == 1
    assert comments[0]["body"].startswith(f"Stopped by @{WRITER} after ")
    [closed] = thread_callbacks(relay, number)
    assert closed["status"] == "COMPLETED"
    # The pause held the agent after its current step: the next one never ran.
    assert not any("never reached" in str(r) for r in fake_llm.agent_requests)
    # The stop itself started no turn and said nothing more.
    assert len(answer_posts(github, number, "Stopped by")) == 1

    comment(relay, github, number, f"@openhands {CONTINUE} and now go on")
    wait_for_bot_comment(relay, github, number, SUMMARY)

    callbacks = thread_callbacks(relay, number)
    assert len(callbacks) == 2
    assert {str(c["conversation_id"]) for c in callbacks} == {conversation_id}
    assert any(CONTINUE in text for text in agent_server.user_messages(conversation_id))
    assert len([c for c in bot_comments(github, number) if "Stopped by" in c["body"]]) == 2


# -- Slack --------------------------------------------------------------------


def slack_mention(relay: RelayProcess, slack: FakeSlack, text: str) -> tuple[str, str]:
    channel = f"C{uuid.uuid4().hex[:8].upper()}"
    full_text = f"<@{BOT_USER}> {text}"
    ts = slack.add_message(TEAM, channel, user=ASKER, text=full_text)
    event = app_mention(user=ASKER, text=full_text, channel=channel, ts=ts)
    envelope = event_callback(TEAM, event, event_id=f"Ev{uuid.uuid4().hex[:10].upper()}")
    response = post_slack_event(relay, envelope)
    assert response.status_code == 200, response.text
    return channel, ts


def post_slack_event(relay: RelayProcess, envelope: dict[str, Any]) -> httpx.Response:
    body = json.dumps(envelope).encode()
    headers = {"Content-Type": "application/json", **slack_signature_headers(SIGNING_SECRET, body)}
    return httpx.post(f"{relay.url}/slack/events", content=body, headers=headers, timeout=10)


def updates_of(slack: FakeSlack, channel: str, ts: str) -> list[SlackCall]:
    return [
        call
        for call in slack.calls("chat.update")
        if call.ok and call.params.get("channel") == channel and call.params.get("ts") == ts
    ]


def test_a_five_step_run_updates_the_slack_status_throttled_then_answers_once(
    relay: RelayProcess, slack: FakeSlack
) -> None:
    channel, ts = slack_mention(relay, slack, f"{FIVE_STEPS} speed up the build")

    def bot_messages() -> list[dict[str, Any]]:
        return [m for m in slack.thread(channel, ts, team_id=TEAM) if m.get("user") == BOT_USER]

    wait_until(
        lambda: any(SUMMARY in str(m.get("text")) for m in bot_messages()) and relay.idle(),
        timeout=120,
        message=lambda: f"no answer in {channel}:\n{relay.log_tail()}",
    )
    wait_until(lambda: progress_jobs_left(relay) == 0, timeout=30, message="edits still queued")

    status, *answers = bot_messages()
    assert len(answers) == 1 and SUMMARY in str(answers[0]["text"])
    updates = updates_of(slack, channel, status["ts"])
    texts = [str(call.params["text"]) for call in updates]
    assert texts[-1].startswith("Done in ") and status["text"] == texts[-1]
    progress = updates[:-1]
    assert progress and all(t.startswith("Working on it: ") for t in texts[:-1]), texts
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(updates)]
    assert all(gap >= SLACK_INTERVAL - SLACK_OF_CLOCKS for gap in gaps), gaps
    assert len(set(texts)) == len(texts)
    # More than one progress edit in a run of about 15 s: the throttle is per 3 s.
    assert len(progress) >= 2, texts
    [answer] = [
        call
        for call in slack.calls("chat.postMessage")
        if call.ok and call.params.get("channel") == channel and SUMMARY in str(call.params)
    ]
    assert all(call.at < answer.at for call in updates)
    # The status carried the Stop button while the turn ran, and not once it ended.
    assert STOP_ACTION in json.dumps(progress[0].params["blocks"])
    assert STOP_ACTION not in json.dumps(updates[-1].params["blocks"])


def click(relay: RelayProcess, payload: dict[str, Any]) -> None:
    body, headers = signed_interaction(SIGNING_SECRET, payload)
    response = httpx.post(f"{relay.url}/slack/events", content=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text


def slack_conversation(relay: RelayProcess, channel: str) -> str | None:
    with sqlite3.connect(relay.workdir / "relay.db") as db:
        row = db.execute(
            "SELECT conversation_id FROM conversation_links WHERE thread_key LIKE ?",
            (f"%:{channel}:%",),
        ).fetchone()
    return str(row[0]) if row else None


def test_the_slack_stop_button_stops_the_run_for_the_asker_only_and_once(
    relay: RelayProcess, slack: FakeSlack, agent_server: AgentServerProcess
) -> None:
    slack.add_user(STRANGER, name="mallory", display_name="Mallory")
    channel, ts = slack_mention(relay, slack, f"{SLOW} rebuild everything")

    def status_message() -> dict[str, Any] | None:
        bot = [m for m in slack.thread(channel, ts, team_id=TEAM) if m.get("user") == BOT_USER]
        return bot[0] if bot else None

    wait_until(
        lambda: "sleep 20" in str((status_message() or {}).get("text")),
        timeout=60,
        message=lambda: f"the run did not start:\n{relay.log_tail()}",
    )
    status = status_message()
    assert status is not None and STOP_ACTION in json.dumps(status["blocks"])
    conversation_id = slack_conversation(relay, channel)
    assert conversation_id is not None

    # Someone else's click: told privately, nothing else happens.
    click(
        relay,
        block_actions(
            TEAM,
            user=STRANGER,
            channel=channel,
            message=status,
            action_id=STOP_ACTION,
            value="stop",
        ),
    )
    wait_until(
        lambda: slack.ephemerals(STRANGER),
        timeout=30,
        message=lambda: f"no refusal:\n{relay.log_tail()}",
    )
    assert "can stop this run" in slack.ephemerals(STRANGER)[0]["text"]
    assert conversation_status(agent_server, conversation_id) == "running"

    # The asker's click, then the same payload again and a second click.
    mine = block_actions(
        TEAM, user=ASKER, channel=channel, message=status, action_id=STOP_ACTION, value="stop"
    )
    click(relay, mine)
    click(relay, mine)

    def answers() -> list[dict[str, Any]]:
        return [
            m
            for m in slack.thread(channel, ts, team_id=TEAM)[2:]
            if m.get("user") == BOT_USER and "Stopped by" in str(m.get("text"))
        ]

    wait_until(
        lambda: answers() and relay.idle(),
        timeout=90,
        message=lambda: f"no stop answer:\n{relay.log_tail()}",
    )
    click(
        relay,
        block_actions(
            TEAM, user=ASKER, channel=channel, message=status, action_id=STOP_ACTION, value="stop"
        ),
    )
    wait_until(relay.idle, timeout=30, message="the relay stayed busy")

    assert conversation_status(agent_server, conversation_id) == "paused"
    assert len(answers()) == 1
    assert f"Stopped by <@{ASKER}>" in str(answers()[0]["text"])
    final = status_message()
    assert final is not None and str(final["text"]).startswith(f"Stopped by <@{ASKER}> after ")
    assert STOP_ACTION not in json.dumps(final["blocks"])
    # The click after the end: nothing runs, so the clicker hears so, privately.
    wait_until(
        lambda: any(NOTHING_RUNNING in e["text"] for e in slack.ephemerals(ASKER)),
        timeout=30,
        message="no private note for the late click",
    )
