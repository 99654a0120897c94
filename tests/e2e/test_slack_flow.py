"""End to end: Slack drives agent-relay the way slack.com would.

agent-relay runs as a process (`agent-relay serve`) with the real openhands-agent-server
and a scripted fake LLM; Slack is a fake Web API on loopback (SLACK_API_URL) that
records every call, and events are signed POSTs to /slack/events. Two set-ups:
one workspace with SLACK_BOT_TOKEN on SQLite, and many workspaces installed through
Bolt's OAuth flow on PostgreSQL.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.agent_server import AgentServerProcess
from tests.support.fake_llm import FakeLLM, fail, finish
from tests.support.fake_slack import (
    FakeSlack,
    app_mention,
    event_callback,
    im_message,
    slack_signature_headers,
)
from tests.support.relay_process import RelayProcess, database_for, relay_environment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.agent_server

SIGNING_SECRET = "e2e-slack-signing-secret"
CLIENT_ID = "1111.2222"
CLIENT_SECRET = "e2e-slack-client-secret"
SUMMARY = "**Fixed** the flaky test on branch `fix/flaky`."
SUMMARY_MRKDWN = "*Fixed* the flaky test on branch `fix/flaky`."
ASKER = "U0ASKER"


@dataclass(frozen=True)
class Workspace:
    team_id: str
    bot_token: str
    bot_user_id: str


FIRST = Workspace("T0FIRST", "xoxb-first-workspace-token", "U0BOTFIRST")
SECOND = Workspace("T0SECOND", "xoxb-second-workspace-token", "U0BOTSECOND")


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    # processors.summary.SUMMARY_INSTRUCTION starts with these words.
    rules = [
        ("Please write the reply to the person", finish(SUMMARY)),
        ("[e2e-fail]", fail(400, "scripted failure at http://10.0.0.7/internal token=sk-123")),
    ]
    with FakeLLM(rules, default=finish("Done with the task.")) as llm:
        yield llm


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        for workspace in (FIRST, SECOND):
            fake.add_team(
                workspace.team_id,
                bot_token=workspace.bot_token,
                bot_user_id=workspace.bot_user_id,
                bot_id=f"B{workspace.team_id}",
            )
        fake.add_user(ASKER, name="ada", display_name="Ada")
        yield fake


@pytest.fixture(scope="module", params=["single-sqlite", "oauth-postgresql"])
def relay(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    relay_port: int,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    slack: FakeSlack,
) -> Iterator[RelayProcess]:
    mode, database = request.param.split("-")
    workdir = tmp_path_factory.mktemp(f"relay-{request.param}")
    settings = {
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        # A crashed worker's job is taken over once its lease runs out.
        "JOB_LEASE_SECONDS": "5",
    }
    if mode == "single":
        settings["SLACK_BOT_TOKEN"] = FIRST.bot_token
    else:
        settings |= {
            "SLACK_CLIENT_ID": CLIENT_ID,
            "SLACK_CLIENT_SECRET": CLIENT_SECRET,
            "SECRET_KEY": "e2e-secret-key-of-at-least-16-chars",
            "PUBLIC_URL": f"http://127.0.0.1:{relay_port}",
            # The log checks below read JSON lines here, text lines in the other set-up.
            "LOG_FORMAT": "json",
        }
    env = relay_environment(
        workdir=workdir,
        database_url=database_for(request, database, workdir),
        port=relay_port,
        agent_server=agent_server,
        fake_llm=fake_llm,
        extra=settings,
    )
    relay = RelayProcess(workdir, env).start()
    try:
        if mode == "oauth":
            install(relay, slack, FIRST)
        yield relay
    finally:
        relay.stop()


def oauth_mode(relay: RelayProcess) -> bool:
    return "SLACK_CLIENT_ID" in relay.env


def install(relay: RelayProcess, slack: FakeSlack, workspace: Workspace) -> None:
    """Bolt's OAuth flow as a browser goes through it: the install page sets a state
    cookie and links to Slack; Slack redirects back with a code and that state."""
    with httpx.Client(base_url=relay.url, timeout=10) as browser:
        page = browser.get("/slack/install")
        assert page.status_code == 200, page.text
        state = re.search(r"state=([\w-]+)", page.text)
        assert state is not None, page.text
        cookie = page.headers["set-cookie"].split(";", 1)[0]
        code = f"code-{uuid.uuid4().hex[:8]}"
        slack.register_oauth_code(
            code, team_id=workspace.team_id, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        )
        done = browser.get(
            "/slack/oauth_redirect",
            params={"code": code, "state": state.group(1)},
            headers={"Cookie": cookie},
        )
    assert done.status_code == 200, done.text


def post_event(
    relay: RelayProcess,
    envelope: dict[str, Any],
    *,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
    retry: int | None = None,
) -> httpx.Response:
    body = json.dumps(envelope).encode()
    headers = {
        "Content-Type": "application/json",
        **slack_signature_headers(secret, body, timestamp=timestamp),
    }
    if retry is not None:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    return httpx.post(f"{relay.url}/slack/events", content=body, headers=headers, timeout=10)


@dataclass(frozen=True)
class Mention:
    channel: str
    ts: str
    thread_ts: str
    envelope: dict[str, Any]


def mention(
    slack: FakeSlack,
    workspace: Workspace,
    text: str,
    *,
    channel: str | None = None,
    thread_ts: str | None = None,
    dm: bool = False,
) -> Mention:
    """A person's message in Slack (stored in the fake) and the event Slack sends for it."""
    channel = channel or f"{'D' if dm else 'C'}{uuid.uuid4().hex[:8].upper()}"
    full_text = text if dm else f"<@{workspace.bot_user_id}> {text}"
    ts = slack.add_message(
        workspace.team_id, channel, user=ASKER, text=full_text, thread_ts=thread_ts
    )
    build = im_message if dm else app_mention
    event = build(user=ASKER, text=full_text, channel=channel, ts=ts, thread_ts=thread_ts)
    envelope = event_callback(
        workspace.team_id, event, event_id=f"Ev{uuid.uuid4().hex[:10].upper()}"
    )
    return Mention(channel, ts, thread_ts or ts, envelope)


def bot_messages(slack: FakeSlack, workspace: Workspace, m: Mention) -> list[dict[str, Any]]:
    return [
        message
        for message in slack.thread(m.channel, m.thread_ts, team_id=workspace.team_id)
        if message.get("user") == workspace.bot_user_id
    ]


def acks(slack: FakeSlack, workspace: Workspace, m: Mention) -> list[dict[str, Any]]:
    return [
        message
        for message in bot_messages(slack, workspace, m)
        if (message.get("metadata") or {}).get("event_type") == "agent_relay_ack"
    ]


def answers(slack: FakeSlack, workspace: Workspace, m: Mention) -> list[dict[str, Any]]:
    return [
        message
        for message in bot_messages(slack, workspace, m)
        if SUMMARY_MRKDWN in str(message.get("text"))
    ]


def answered(
    relay: RelayProcess, slack: FakeSlack, workspace: Workspace, m: Mention, count: int = 1
) -> None:
    """Wait until `count` answers are in the thread and the relay has nothing left to do."""
    wait_until(
        lambda: len(answers(slack, workspace, m)) >= count and relay.idle(),
        timeout=90,
        message=lambda: (
            f"no answer in {m.channel}/{m.thread_ts}; bot said "
            f"{[msg.get('text') for msg in bot_messages(slack, workspace, m)]}\n"
            f"relay log:\n{relay.log_tail()}"
        ),
    )


def slack_callbacks(relay: RelayProcess) -> list[dict[str, Any]]:
    return relay.callbacks(processor_type="slack")


def test_mention_is_acknowledged_and_answered_once_in_its_thread(
    relay: RelayProcess, slack: FakeSlack, agent_server: AgentServerProcess
) -> None:
    before = len(slack_callbacks(relay))
    m = mention(slack, FIRST, "why does CI fail on acme/widgets?")

    response = post_event(relay, m.envelope)

    assert response.status_code == 200
    answered(relay, slack, FIRST, m)
    [ack] = acks(slack, FIRST, m)
    [answer] = answers(slack, FIRST, m)
    assert answer["text"].startswith(f"<@{ASKER}> ")
    callbacks = slack_callbacks(relay)
    assert len(callbacks) == before + 1
    callback = callbacks[0]
    assert callback["status"] == "COMPLETED"
    conversation_id = str(callback["conversation_id"])
    assert f"https://agent.example.test/conversations/{conversation_id}" in ack["text"]
    # eyes while working, then a check mark on the message that asked.
    assert slack.reactions(m.channel, m.ts, team_id=FIRST.team_id) == {"white_check_mark"}
    # Every call used the workspace's own token.
    assert {call.token for call in slack.calls("chat.postMessage")} <= {
        FIRST.bot_token,
        SECOND.bot_token,
    }
    prompt = agent_server.user_messages(conversation_id)[0]
    assert "Ada asked you in Slack channel" in prompt
    assert "why does CI fail on acme/widgets?" in prompt
    assert "Repository: acme/widgets" in prompt


def test_follow_up_in_the_thread_continues_the_same_conversation(
    relay: RelayProcess, slack: FakeSlack, agent_server: AgentServerProcess
) -> None:
    first = mention(slack, FIRST, "look at the flaky test")
    post_event(relay, first.envelope)
    answered(relay, slack, FIRST, first)
    slack.add_message(
        FIRST.team_id, first.channel, user=ASKER, text="it fails on Tuesdays", thread_ts=first.ts
    )

    follow_up = mention(
        slack, FIRST, "and now fix it please", channel=first.channel, thread_ts=first.ts
    )
    assert post_event(relay, follow_up.envelope).status_code == 200

    answered(relay, slack, FIRST, follow_up, count=2)
    assert len(answers(slack, FIRST, follow_up)) == 2
    follow_up_callback, first_callback = slack_callbacks(relay)[:2]
    assert first_callback["status"] == follow_up_callback["status"] == "COMPLETED"
    assert first_callback["conversation_id"] == follow_up_callback["conversation_id"]
    conversation_id = str(first_callback["conversation_id"])
    said = agent_server.user_messages(conversation_id)
    # prompt, summary instruction, follow-up, summary instruction: one turn each.
    assert len(said) == 4
    assert "and now fix it please" in said[2]
    assert "it fails on Tuesdays" in said[2]
    assert "look at the flaky test" not in said[2]


def test_a_direct_message_needs_no_mention(relay: RelayProcess, slack: FakeSlack) -> None:
    m = mention(slack, FIRST, "summarise the open incidents", dm=True)

    assert post_event(relay, m.envelope).status_code == 200

    answered(relay, slack, FIRST, m)
    assert len(answers(slack, FIRST, m)) == 1


def test_a_bare_mention_gets_a_usage_hint_and_starts_nothing(
    relay: RelayProcess, slack: FakeSlack
) -> None:
    before = len(slack_callbacks(relay))
    m = mention(slack, FIRST, "")

    assert post_event(relay, m.envelope).status_code == 200

    wait_until(lambda: bot_messages(slack, FIRST, m) and relay.idle(), timeout=30)
    [hint] = bot_messages(slack, FIRST, m)
    assert "after the mention" in hint["text"]
    assert len(slack_callbacks(relay)) == before


def test_a_retried_delivery_changes_nothing(relay: RelayProcess, slack: FakeSlack) -> None:
    before = len(slack_callbacks(relay))
    m = mention(slack, FIRST, "bump the version")

    assert post_event(relay, m.envelope).status_code == 200
    assert post_event(relay, m.envelope, retry=1).status_code == 200
    answered(relay, slack, FIRST, m)
    assert post_event(relay, m.envelope, retry=2).status_code == 200

    wait_until(relay.idle, timeout=30)
    assert len(acks(slack, FIRST, m)) == 1
    assert len(answers(slack, FIRST, m)) == 1
    assert len(slack_callbacks(relay)) == before + 1


@pytest.mark.parametrize(
    ("secret", "age"),
    [("not-the-signing-secret", 0), (SIGNING_SECRET, 600)],
    ids=["bad-signature", "stale-timestamp"],
)
def test_an_unverified_request_is_refused_and_stores_nothing(
    relay: RelayProcess, slack: FakeSlack, secret: str, age: int
) -> None:
    wait_until(relay.idle, timeout=30)
    jobs, callbacks, calls = relay.job_total(), len(slack_callbacks(relay)), len(slack.calls())
    m = mention(slack, FIRST, "do something")

    response = post_event(relay, m.envelope, secret=secret, timestamp=int(time.time()) - age)

    assert response.status_code == 401
    assert relay.job_total() == jobs
    assert len(slack_callbacks(relay)) == callbacks
    assert len(slack.calls()) == calls


def test_a_second_workspace_installs_through_oauth_and_is_answered_with_its_own_token(
    relay: RelayProcess, slack: FakeSlack
) -> None:
    if not oauth_mode(relay):
        # One workspace: there is no install flow to offer.
        assert httpx.get(f"{relay.url}/slack/install", timeout=5).status_code == 404
        return
    install(relay, slack, SECOND)
    m = mention(slack, SECOND, "triage the new issues")

    assert post_event(relay, m.envelope).status_code == 200

    answered(relay, slack, SECOND, m)
    posted_here = [
        call for call in slack.calls("chat.postMessage") if call.params.get("channel") == m.channel
    ]
    assert posted_here and {call.token for call in posted_here} == {SECOND.bot_token}


def test_a_relay_killed_after_the_ack_still_answers_once_after_restart(
    relay: RelayProcess, slack: FakeSlack
) -> None:
    m = mention(slack, FIRST, "rename the config option")

    assert post_event(relay, m.envelope).status_code == 200
    wait_until(lambda: acks(slack, FIRST, m), timeout=30)
    relay.kill()
    relay.start()

    answered(relay, slack, FIRST, m)
    assert len(acks(slack, FIRST, m)) == 1
    assert len(answers(slack, FIRST, m)) == 1


def test_slack_rate_limits_and_outages_delay_the_answer_but_never_double_it(
    relay: RelayProcess, slack: FakeSlack
) -> None:
    m = mention(slack, FIRST, "update the changelog")
    assert post_event(relay, m.envelope).status_code == 200
    wait_until(lambda: acks(slack, FIRST, m), timeout=30)
    # The next posts are the answer's: Slack first rate-limits, then fails.
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    slack.fail_next("chat.postMessage", status=500)

    answered(relay, slack, FIRST, m)

    assert len(answers(slack, FIRST, m)) == 1
    statuses = [
        call.http_status
        for call in slack.calls("chat.postMessage")
        if call.params.get("channel") == m.channel
    ]
    assert statuses == [200, 429, 500, 200]


def test_a_reply_slack_refuses_for_good_is_failed_with_slack_s_error_code(
    relay: RelayProcess, slack: FakeSlack
) -> None:
    m = mention(slack, FIRST, "archive the old branches")
    assert post_event(relay, m.envelope).status_code == 200
    wait_until(lambda: acks(slack, FIRST, m), timeout=30)
    slack.error_next("chat.postMessage", "channel_not_found")

    def failed_callback() -> dict[str, Any] | None:
        for callback in slack_callbacks(relay):
            if callback["status"] == "ERROR" and "channel_not_found" in str(
                callback["status_reason"]
            ):
                return callback
        return None

    wait_until(lambda: failed_callback() and relay.idle(), timeout=90, message=relay.log_tail)
    callback = failed_callback()
    assert callback is not None
    assert callback["status_reason"] == (
        "reply not delivered: slack chat.postMessage: channel_not_found"
    )
    # Failed at once: one refused attempt, no retries.
    posts = [c for c in slack.calls("chat.postMessage") if c.params.get("channel") == m.channel]
    assert [c.error for c in posts] == [None, "channel_not_found"]
    assert answers(slack, FIRST, m) == []


def test_a_failing_agent_gets_a_readable_failure_and_a_cross(
    relay: RelayProcess, slack: FakeSlack
) -> None:
    m = mention(slack, FIRST, "do the impossible [e2e-fail]")
    assert post_event(relay, m.envelope).status_code == 200

    def failure() -> list[dict[str, Any]]:
        return [
            message
            for message in bot_messages(slack, FIRST, m)
            if "ran into an error" in str(message.get("text"))
        ]

    wait_until(lambda: failure() and relay.idle(), timeout=90, message=relay.log_tail)
    [message] = failure()
    for internal in ("Traceback", "litellm", "10.0.0.7", "sk-123", "127.0.0.1"):
        assert internal not in message["text"]
    assert slack.reactions(m.channel, m.ts, team_id=FIRST.team_id) == {"x"}
    assert slack_callbacks(relay)[0]["status"] == "ERROR"


@dataclass(frozen=True)
class LogLine:
    level: str
    message: str
    ids: dict[str, str]


def log_lines(relay: RelayProcess) -> list[LogLine]:
    """The relay's log lines with the ids they carry, read from either LOG_FORMAT."""
    lines = []
    for raw in relay.log_path.read_text().splitlines():
        if relay.env.get("LOG_FORMAT") == "json":
            if not raw.startswith("{"):
                continue  # a traceback's continuation is inside its line's JSON
            entry = json.loads(raw)
            ids = {k: str(v) for k, v in entry.items() if k in LOG_IDS}
            lines.append(LogLine(str(entry["level"]), str(entry["message"]), ids))
        else:
            # "<date> <time> LEVEL logger: message key=value key=value"
            fields = raw.split(" ", 3)
            if len(fields) < 4:
                continue  # a traceback's line
            pairs = dict(re.findall(r" (\w+)=(\S+)", raw))
            ids = {k: v for k, v in pairs.items() if k in LOG_IDS}
            lines.append(LogLine(fields[2], raw, ids))
    return lines


LOG_IDS = ("delivery", "job", "kind", "conversation", "callback")


def test_one_delivery_id_follows_a_mention_from_webhook_to_reply(
    relay: RelayProcess, slack: FakeSlack
) -> None:
    m = mention(slack, FIRST, "explain the release process")
    event_id = str(m.envelope["event_id"])

    assert post_event(relay, m.envelope).status_code == 200
    answered(relay, slack, FIRST, m)

    followed = [
        line
        for line in log_lines(relay)
        if line.ids.get("delivery") == event_id and line.level != "DEBUG"
    ]
    callback = slack_callbacks(relay)[0]
    assert callback["status"] == "COMPLETED"
    conversation_id = str(callback["conversation_id"])
    steps = {
        "webhook": rf"slack event {event_id} queued",
        "mention job": rf"started conversation {conversation_id}",
        "agent start": rf"conversation {conversation_id} started",
        "reply": r"reply of callback \d+ delivered",
    }
    for step, pattern in steps.items():
        assert any(re.search(pattern, line.message) for line in followed), (
            f"no {step} line carries delivery={event_id}:\n"
            + "\n".join(line.message for line in followed)
        )
    kinds = {line.ids.get("kind") for line in followed}
    assert {"slack.event", "conversation.start", "callback.reply"} <= kinds
    # After the webhook, every line of the chain names the conversation as well.
    assert all(line.ids.get("conversation") == conversation_id for line in followed[1:])


def test_no_token_or_secret_reaches_the_log(relay: RelayProcess) -> None:
    # Runs last in the module, after installs, mentions and failures were logged
    # (at LOG_LEVEL=DEBUG).
    log = relay.log_path.read_text()
    assert "slack event" in log  # the log is the relay's, and it logged the events
    for secret in (
        FIRST.bot_token,
        SECOND.bot_token,
        CLIENT_SECRET,
        SIGNING_SECRET,
        "e2e-secret-key-of-at-least-16-chars",
    ):
        assert secret not in log
