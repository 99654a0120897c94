"""End to end: a mention on a GitHub issue gets its own checkout, pushes with a token
minted for that repository alone, and comes back as a draft pull request.

agent-relay runs as a process with the real openhands-agent-server; the scripted LLM's
tool calls run real git in the agent's terminal; the fake GitHub serves a real
repository over git's smart HTTP and accepts only tokens it minted for it.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import github_webhooks as hooks
from tests.support.agent_server import AgentServerProcess
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import FakeLLM, finish, run, steps
from tests.support.relay_process import RelayProcess, relay_environment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.agent_server

APP_ID = 5151
SLUG = "openhands-relay"
BOT = f"{SLUG}[bot]"
INSTALLATION = 91
REPO = "acme/api"
# In the installation, but its repository cannot be read any more.
GONE = "acme/gone"
WEBHOOK_SECRET = "e2e-workspace-github-secret"
WRITER = "ada"
SUMMARY = "The parser keeps time zones now."
TITLE = "Date parser drops time zones"
FOLLOW_UP = "also handle offsets like +05:30"
PUSH = "git push 2>&1 | tail -3"
# The "on it" comment keeps its marker (bots.markers) while it shows the turn's status.
ACK_MARK = "agent-relay:ack:"


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    rules = [
        # processors.summary.SUMMARY_INSTRUCTION starts with these words.
        ("Please write the reply to the person", finish(SUMMARY)),
        (
            FOLLOW_UP,
            steps(
                run("printf 'offsets\\n' >> parser.py && git commit -qam 'Handle offsets'"),
                run(PUSH),
                finish("Offsets too."),
            ),
        ),
        (
            TITLE,
            steps(
                run("printf 'tz\\n' >> parser.py && git commit -qam 'Keep time zones'"),
                run(PUSH),
                finish("Fixed."),
            ),
        ),
    ]
    with FakeLLM(rules, default=finish("Nothing to do.")) as llm:
        yield llm


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
    github: FakeGitHub,
) -> Iterator[RelayProcess]:
    github.add_app(APP_ID, SLUG)
    github.add_installation(INSTALLATION, APP_ID, account="acme", repositories=[REPO, GONE])
    github.set_permission(GONE, WRITER, "write")
    github.set_permission(REPO, WRITER, "write")
    github.create_repository(REPO, {"parser.py": "def parse(text): ...\n"})
    workdir = tmp_path_factory.mktemp("relay-workspace-github")
    env = relay_environment(
        workdir=workdir,
        database_url=f"sqlite:///{workdir / 'relay.db'}",
        port=relay_port,
        agent_server=agent_server,
        fake_llm=fake_llm,
        extra={
            **github.relay_settings(APP_ID, WEBHOOK_SECRET),
            "PUBLIC_URL": f"http://127.0.0.1:{relay_port}",
            "SECRET_KEY": "e2e-secret-key-of-the-workspace-tests",
            "LOG_LEVEL": "DEBUG",
            "JOB_LEASE_SECONDS": "5",
        },
    )
    relay = RelayProcess(workdir, env).start()
    try:
        yield relay
    finally:
        relay.stop()


def new_issue(github: FakeGitHub) -> int:
    number = int(uuid.uuid4().int % 900_000) + 1000
    github.add_issue(
        REPO, number, title=TITLE, body="2026-01-05T10:00+02:00 loses +02:00.", user=WRITER
    )
    return number


def mention(relay: RelayProcess, github: FakeGitHub, number: int, text: str) -> None:
    comment = github.add_comment(REPO, number, text, user=WRITER)
    payload = hooks.issue_comment(REPO, INSTALLATION, comment, sender=WRITER)
    response = hooks.deliver(relay.url, "issue_comment", payload, WEBHOOK_SECRET)
    assert response.status_code == 202, response.text


def answers(github: FakeGitHub, number: int) -> list[str]:
    """The bot's comments other than its "on it" (which becomes the turn's status)."""
    return [
        c["body"]
        for c in github.comments(REPO, number)
        if c["user"]["login"] == BOT and ACK_MARK not in c["body"]
    ]


def wait_for_answers(relay: RelayProcess, github: FakeGitHub, number: int, count: int) -> list[str]:
    wait_until(
        lambda: len(answers(github, number)) >= count,
        timeout=120,
        message=lambda: f"no answer {count} on #{number}:\n{relay.log_tail()}",
    )
    return answers(github, number)


def work_branches(github: FakeGitHub) -> list[str]:
    return [b for b in github.git.branches(REPO) if b.startswith("openhands/")]


def test_an_issue_mention_becomes_one_draft_pull_request_and_a_follow_up_updates_it(
    relay: RelayProcess, github: FakeGitHub, agent_server: AgentServerProcess
) -> None:
    number = new_issue(github)

    mention(relay, github, number, "@openhands please fix this")
    [answer] = wait_for_answers(relay, github, number, 1)

    [pull] = github.pull_requests(REPO)
    [branch] = work_branches(github)
    assert branch.startswith(f"openhands/{number}-")
    assert pull["draft"] is True and pull["head"]["ref"] == branch
    assert f"Fixes #{number}" in pull["body"] and SUMMARY in pull["body"]
    assert answer.startswith(f"@{WRITER} Opened draft PR #{pull['number']}: ")
    assert pull["html_url"] in answer and SUMMARY in answer
    # The agent's commit, by the bot, on the work branch; the asker as co-author.
    [commit] = github.git.commits(REPO, "main", branch)
    assert commit["author_name"] == BOT and "Keep time zones" in commit["message"]
    # The token it pushed with was minted for this repository alone, and is dead now.
    grants = [g for g in github.token_grants() if g.repositories is not None]
    assert grants and all(g.repositories == [REPO] for g in grants)
    assert all(g.requested_permissions == {"contents": "write", "metadata": "read"} for g in grants)
    pushes = [r for r in github.git_requests(REPO) if r.push and r.status == 200]
    assert pushes and {r.token for r in pushes} <= {g.token for g in grants}
    assert {r.token for r in pushes} <= set(github.revoked_tokens())

    mention(relay, github, number, f"@openhands {FOLLOW_UP}")
    second = wait_for_answers(relay, github, number, 2)[1]

    assert len(github.pull_requests(REPO)) == 1
    assert work_branches(github) == [branch]
    assert second.startswith(f"@{WRITER} Pushed 1 commit to `{branch}`")
    assert len(github.git.commits(REPO, "main", branch)) == 2
    # No token anywhere it must not be.
    tokens = {g.token for g in github.token_grants()}
    assert_no_token(
        tokens, relay.log_path, relay.workdir / "relay.db", agent_server.conversations_path
    )


def assert_no_token(tokens: set[str], log: Path, database: Path, event_store: Path) -> None:
    assert tokens
    text = log.read_text()
    assert not [t for t in tokens if t in text], "a token in the relay's log"
    with sqlite3.connect(database) as db:
        dump = "\n".join(db.iterdump())
    assert not [t for t in tokens if t in dump], "a token in the database"
    for path in event_store.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not [t for t in tokens if t.encode() in content], f"a token in {path}"


def test_the_credentials_endpoint_refuses_wrong_capabilities_and_ended_turns(
    relay: RelayProcess, github: FakeGitHub
) -> None:
    number = new_issue(github)
    mention(relay, github, number, "@openhands please fix this")
    wait_for_answers(relay, github, number, 1)
    with sqlite3.connect(relay.workdir / "relay.db") as db:
        conversation = db.execute(
            "SELECT conversation_id FROM workspaces ORDER BY created_at DESC LIMIT 1"
        ).fetchone()[0]
    url = f"{relay.url}/agent/credentials/{conversation}/GITHUB_TOKEN"

    wrong = httpx.get(url, headers={"Authorization": "Bearer not-it"})
    unknown = httpx.get(
        f"{relay.url}/agent/credentials/{uuid.uuid4().hex}/GITHUB_TOKEN",
        headers={"Authorization": "Bearer not-it"},
    )
    capability = agent_capability(relay, conversation)
    ended = httpx.get(url, headers={"Authorization": f"Bearer {capability}"})

    assert (wrong.status_code, unknown.status_code, ended.status_code) == (401, 404, 403)


def agent_capability(relay: RelayProcess, conversation: str) -> str:
    """The capability, as the credential helper in the checkout holds it."""
    root = Path(relay.env["AGENT_WORKSPACE_ROOT"]) / conversation
    [helper] = list(root.glob("*/.git/agent-relay/credential-helper"))
    line = next(line for line in helper.read_text().splitlines() if "Bearer " in line)
    return line.split("Bearer ", 1)[1].split("'", 1)[0]


def test_a_checkout_that_fails_says_why_in_the_thread_and_runs_nothing(
    relay: RelayProcess, github: FakeGitHub, fake_llm: FakeLLM
) -> None:
    number = int(uuid.uuid4().int % 900_000) + 1000
    github.add_issue(GONE, number, title="Gone missing", body="", user=WRITER)
    before = len(fake_llm.agent_requests)
    comment = github.add_comment(GONE, number, "@openhands please look", user=WRITER)
    payload = hooks.issue_comment(GONE, INSTALLATION, comment, sender=WRITER)
    assert hooks.deliver(relay.url, "issue_comment", payload, WEBHOOK_SECRET).status_code == 202

    def failure() -> list[str]:
        return [
            c["body"]
            for c in github.comments(GONE, number)
            if c["user"]["login"] == BOT and ACK_MARK not in c["body"]
        ]

    wait_until(failure, timeout=60, message=lambda: relay.log_tail())
    [text] = failure()
    assert text.startswith(f"@{WRITER} I could not check out {GONE}: "), text
    assert len(fake_llm.agent_requests) == before
