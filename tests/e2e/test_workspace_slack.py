"""End to end: a Slack mention that names a repository is checked out where it is
hosted, and the agent's pushed work comes back to the Slack thread as a draft pull
request; a repository no platform can serve is said so in the "on it", and the agent
answers without a checkout.

agent-relay runs as a process with the real openhands-agent-server; Slack is the fake
Web API (one workspace, SLACK_BOT_TOKEN); the fake GitHub has the app installed on
acme/api and serves it over git's smart HTTP; the scripted LLM's tool calls run real
git in the agent's terminal.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.agent_server import AgentServerProcess
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import FakeLLM, finish, run, steps
from tests.support.fake_slack import (
    FakeSlack,
    app_mention,
    block_actions,
    event_callback,
    signed_interaction,
    slack_signature_headers,
)
from tests.support.relay_process import RelayProcess, relay_environment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.agent_server

SIGNING_SECRET = "e2e-workspace-slack-signing-secret"
TEAM = "T0WORK"
BOT_TOKEN = "xoxb-e2e-workspace-slack-token"
BOT_USER = "U0BOTWORK"
ASKER = "U0ASKER"
OTHER = "U0OTTO"
APP_ID = 5252
SLUG = "openhands-relay"
INSTALLATION = 92
REPO = "acme/api"
UNSERVED = "acme/elsewhere"
GITHUB_WEBHOOK_SECRET = "e2e-workspace-slack-github-secret"
SUMMARY = "The parser keeps time zones now."
TASK = "keep the time zones in the date parser"
QUESTION = "what does the retry policy say"
PUSH = "git push 2>&1 | tail -3"


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    rules = [
        # processors.summary.SUMMARY_INSTRUCTION starts with these words.
        ("Please write the reply to the person", finish(SUMMARY)),
        (
            TASK,
            steps(
                run("printf 'tz\\n' >> parser.py && git commit -qam 'Keep time zones'"),
                run(PUSH),
                finish("Fixed."),
            ),
        ),
    ]
    with FakeLLM(rules, default=finish("Nothing to change.")) as llm:
        yield llm


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.add_team(TEAM, bot_token=BOT_TOKEN, bot_user_id=BOT_USER, bot_id="B0WORK")
        fake.add_user(ASKER, name="ada", display_name="Ada")
        fake.add_user(OTHER, name="otto", display_name="Otto")
        yield fake


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module")
def relay(
    tmp_path_factory: pytest.TempPathFactory,
    relay_port: int,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    slack: FakeSlack,
    github: FakeGitHub,
) -> Iterator[RelayProcess]:
    github.add_app(APP_ID, SLUG)
    github.add_installation(INSTALLATION, APP_ID, account="acme", repositories=[REPO])
    github.create_repository(REPO, {"parser.py": "def parse(text): ...\n"})
    workdir = tmp_path_factory.mktemp("relay-workspace-slack")
    env = relay_environment(
        workdir=workdir,
        database_url=f"sqlite:///{workdir / 'relay.db'}",
        port=relay_port,
        agent_server=agent_server,
        fake_llm=fake_llm,
        extra={
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            **github.relay_settings(APP_ID, GITHUB_WEBHOOK_SECRET),
            "PUBLIC_URL": f"http://127.0.0.1:{relay_port}",
            "SECRET_KEY": "e2e-secret-key-of-the-workspace-tests",
            "JOB_LEASE_SECONDS": "5",
        },
    )
    relay = RelayProcess(workdir, env).start()
    try:
        yield relay
    finally:
        relay.stop()


@dataclass(frozen=True)
class Mention:
    channel: str
    ts: str


def mention(
    relay: RelayProcess, slack: FakeSlack, text: str, *, channel: str | None = None
) -> Mention:
    """A person's message mentioning the bot in a new thread (of a new channel unless
    `channel` is given), and its event, delivered."""
    channel = channel or f"C{uuid.uuid4().hex[:8].upper()}"
    full_text = f"<@{BOT_USER}> {text}"
    ts = slack.add_message(TEAM, channel, user=ASKER, text=full_text)
    event = app_mention(user=ASKER, text=full_text, channel=channel, ts=ts)
    body = json.dumps(event_callback(TEAM, event, event_id=f"Ev{uuid.uuid4().hex[:10]}")).encode()
    headers = {"Content-Type": "application/json", **slack_signature_headers(SIGNING_SECRET, body)}
    response = httpx.post(f"{relay.url}/slack/events", content=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return Mention(channel, ts)


def bot_messages(slack: FakeSlack, m: Mention) -> list[dict[str, Any]]:
    return [
        message
        for message in slack.thread(m.channel, m.ts, team_id=TEAM)
        if message.get("user") == BOT_USER
    ]


def ack(slack: FakeSlack, m: Mention) -> str:
    """What the "on it" message said when it was posted (it shows the turn's status since)."""
    [message] = [
        message
        for message in bot_messages(slack, m)
        if (message.get("metadata") or {}).get("event_type") == "agent_relay_ack"
    ]
    [posted] = [
        call
        for call in slack.calls("chat.postMessage")
        if call.ok
        and call.params.get("channel") == m.channel
        and "agent_relay_ack" in str(call.params.get("metadata"))
    ]
    assert message["ts"] and posted.params.get("thread_ts") == m.ts
    return str(posted.params["text"])


def answered(relay: RelayProcess, slack: FakeSlack, m: Mention) -> str:
    """The one answer in the thread, once the relay has nothing left to do."""

    def answers() -> list[str]:
        return [str(msg["text"]) for msg in bot_messages(slack, m) if SUMMARY in str(msg["text"])]

    wait_until(
        lambda: answers() and relay.idle(),
        timeout=120,
        message=lambda: (
            f"no answer in {m.channel}; bot said "
            f"{[msg.get('text') for msg in bot_messages(slack, m)]}\n{relay.log_tail()}"
        ),
    )
    [answer] = answers()
    return answer


def test_a_mention_naming_an_installed_repository_becomes_a_draft_pull_request(
    relay: RelayProcess, slack: FakeSlack, github: FakeGitHub
) -> None:
    m = mention(relay, slack, f"please {TASK} of {REPO}")

    answer = answered(relay, slack, m)

    assert "without a checkout" not in ack(slack, m)
    [pull] = github.pull_requests(REPO)
    branch = pull["head"]["ref"]
    # Asked in Slack, about no issue: the branch says where it was asked.
    assert re.fullmatch(r"openhands/slack-[0-9a-f]{8}", branch), branch
    assert pull["draft"] is True and SUMMARY in pull["body"]
    assert "Fixes #" not in pull["body"]
    assert answer.startswith(f"<@{ASKER}> Opened draft PR #{pull['number']}: ")
    assert pull["html_url"] in answer
    [commit] = github.git.commits(REPO, "main", branch)
    assert commit["author_name"] == f"{SLUG}[bot]" and "Keep time zones" in commit["message"]
    # Pushed with a token minted for acme/api alone.
    grants = [g for g in github.token_grants() if g.repositories is not None]
    assert grants and all(g.repositories == [REPO] for g in grants)
    pushes = [r for r in github.git_requests(REPO) if r.push and r.status == 200]
    assert pushes and {r.token for r in pushes} <= {g.token for g in grants}


def test_a_repository_no_platform_serves_is_said_and_answered_without_a_checkout(
    relay: RelayProcess, slack: FakeSlack, github: FakeGitHub
) -> None:
    pulls = len(github.pull_requests(REPO))
    m = mention(relay, slack, f"{QUESTION} in {UNSERVED}?")

    answer = answered(relay, slack, m)

    said = ack(slack, m)
    assert f"I can't reach {UNSERVED} from here" in said
    assert "so I'll work without a checkout" in said
    # The status that replaced the "on it" still says so once the turn is done.
    [status] = [message for message in bot_messages(slack, m) if message.get("metadata")]
    assert (
        str(status["text"]).startswith("Done in ") and f"I can't reach {UNSERVED}" in status["text"]
    )
    assert answer.startswith(f"<@{ASKER}> {SUMMARY}")
    assert len(github.pull_requests(REPO)) == pulls
    assert "checked out acme/elsewhere" not in relay.log_path.read_text()


def test_a_mention_naming_no_repository_works_on_the_channels_default(
    relay: RelayProcess, slack: FakeSlack, github: FakeGitHub
) -> None:
    use = mention(relay, slack, f"use {REPO}")
    wait_until(
        lambda: any(
            "This channel now works on" in str(m["text"]) for m in bot_messages(slack, use)
        ),
        timeout=30,
        message=lambda: f"no confirmation of `use`\n{relay.log_tail()}",
    )
    [confirmation] = bot_messages(slack, use)
    assert confirmation["text"].startswith(f"This channel now works on {REPO}.")
    clones = len([r for r in github.git_requests(REPO) if not r.push])

    m = mention(relay, slack, f"{QUESTION}?", channel=use.channel)

    answer = answered(relay, slack, m)
    assert ack(slack, m).startswith(f"On it! Working on {REPO}.")
    # Worked in a checkout: the answer says what was pushed (nothing).
    assert answer.startswith(f"<@{ASKER}> No changes were pushed.")
    # The checkout fetched the channel's repository.
    assert len([r for r in github.git_requests(REPO) if not r.push]) > clones
    # `use` itself started nothing: no reaction, no "on it".
    assert slack.reactions(use.channel, use.ts) == set()


def picker(relay: RelayProcess, slack: FakeSlack, m: Mention) -> dict[str, Any]:
    """The thread's repository picker, once the relay has posted it."""

    def found() -> list[dict[str, Any]]:
        return [
            message
            for message in bot_messages(slack, m)
            if (message.get("metadata") or {}).get("event_type") == "agent_relay_picker"
        ]

    wait_until(
        lambda: found(),
        timeout=30,
        message=lambda: f"no picker in {m.channel}\n{relay.log_tail()}",
    )
    [message] = found()
    return message


def click(
    relay: RelayProcess, m: Mention, message: dict[str, Any], user: str, action: str, value: str
) -> dict[str, Any]:
    """`user` clicks `action` of the picker `message`: Slack's signed request, delivered."""
    menu = action == "relay.pick_repository"
    payload = block_actions(
        TEAM,
        user=user,
        channel=m.channel,
        message=message,
        action_id=action,
        value=None if menu else value,
        selected=value if menu else None,
    )
    send(relay, payload)
    return payload


def send(relay: RelayProcess, payload: dict[str, Any]) -> None:
    body, headers = signed_interaction(SIGNING_SECRET, payload)
    response = httpx.post(f"{relay.url}/slack/events", content=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text


def test_without_any_repository_the_askers_pick_starts_the_run_on_it_after_a_restart(
    relay: RelayProcess, slack: FakeSlack, github: FakeGitHub
) -> None:
    m = mention(relay, slack, f"{QUESTION}?")
    shown = picker(relay, slack, m)
    menu = shown["blocks"][1]["elements"][0]
    assert [o["value"] for o in menu["options"]] == [f"github:{REPO}"]
    wait_until(relay.idle, timeout=30, message="the relay did not settle")
    # Nothing runs while nobody picked.
    assert [msg for msg in bot_messages(slack, m) if msg["ts"] != shown["ts"]] == []

    click(relay, m, shown, OTHER, "relay.pick_repository", f"github:{REPO}")
    wait_until(
        lambda: slack.ephemerals(OTHER),
        timeout=30,
        message=lambda: f"no refusal for {OTHER}\n{relay.log_tail()}",
    )
    [refusal] = slack.ephemerals(OTHER)
    assert refusal["user"] == OTHER and f"Only <@{ASKER}>" in refusal["text"]
    wait_until(relay.idle, timeout=30, message="the relay did not settle")
    assert [msg for msg in bot_messages(slack, m) if msg["ts"] != shown["ts"]] == []

    # The waiting mention is in the database: a relay killed and started again
    # still starts it on the asker's pick.
    relay.kill()
    relay.start()
    picked = click(relay, m, shown, ASKER, "relay.pick_repository", f"github:{REPO}")

    answer = answered(relay, slack, m)
    assert ack(slack, m).startswith(f"On it! Working on {REPO}.")
    assert answer.startswith(f"<@{ASKER}> No changes were pushed.")
    [settled] = [msg for msg in bot_messages(slack, m) if msg["ts"] == shown["ts"]]
    assert settled["text"] == f"<@{ASKER}> picked {REPO}."

    # The same payload again, and a second pick: nothing more runs or changes.
    send(relay, picked)
    click(relay, m, shown, ASKER, "relay.no_repository", "none")
    wait_until(relay.idle, timeout=30, message="the relay did not settle")
    assert answered(relay, slack, m) == answer
    [settled] = [msg for msg in bot_messages(slack, m) if msg["ts"] == shown["ts"]]
    assert settled["text"] == f"<@{ASKER}> picked {REPO}."
    ack(slack, m)  # still one "On it"
