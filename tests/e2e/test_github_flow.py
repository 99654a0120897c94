"""End to end: GitHub drives agent-relay the way github.com would.

agent-relay runs as a process (`agent-relay serve`) with the real openhands-agent-server
and a scripted fake LLM; GitHub is a fake REST API on loopback (GITHUB_API_URL) that
checks the app's JWT and installation tokens and records every call; deliveries are
signed POSTs to /github/events built from GitHub's example payloads. The app is
configured by settings (GITHUB_APP_ID and friends), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agent.instructions import CONTEXT_IS_DATA
from tests.support import github_webhooks as hooks
from tests.support.agent_server import AgentServerProcess
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import FakeLLM, finish, message_text
from tests.support.relay_process import (
    RELAY_BIN,
    RelayProcess,
    database_for,
    relay_environment,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.agent_server

APP_ID = 4242
SLUG = "openhands-relay"
BOT = f"{SLUG}[bot]"
INSTALLATION = 77
REPO = "acme/api"
WEBHOOK_SECRET = "e2e-github-webhook-secret"
SUMMARY = "I fixed the flaky test on branch `fix/flaky`."
WRITER = "ada"
READER = "mallory"


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    # processors.summary.SUMMARY_INSTRUCTION starts with these words.
    rules = [("Please write the reply to the person", finish(SUMMARY))]
    with FakeLLM(rules, default=finish("Done with the task.")) as llm:
        yield llm


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def relay(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    relay_port: int,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    github: FakeGitHub,
) -> Iterator[RelayProcess]:
    app_id = APP_ID + (request.param == "postgresql")
    installation_id = INSTALLATION + (request.param == "postgresql")
    pem = github.add_app(app_id, SLUG)
    github.add_installation(installation_id, app_id, account="acme", repositories=[REPO])
    github.set_permission(REPO, WRITER, "write")
    github.set_permission(REPO, READER, "read")
    workdir = tmp_path_factory.mktemp(f"relay-github-{request.param}")
    env = relay_environment(
        workdir=workdir,
        database_url=database_for(request, request.param, workdir),
        port=relay_port,
        agent_server=agent_server,
        fake_llm=fake_llm,
        extra={
            "GITHUB_APP_ID": str(app_id),
            # As a .env file or CI secret often holds it: newlines escaped.
            "GITHUB_PRIVATE_KEY": pem.replace("\n", "\\n"),
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GITHUB_API_URL": github.api_url,
            "GITHUB_URL": github.web_url,
            "JOB_LEASE_SECONDS": "5",
        },
    )
    relay = RelayProcess(workdir, env).start()
    try:
        yield relay
    finally:
        relay.stop()


def installation_of(relay: RelayProcess) -> int:
    """Each set-up has its own app and installation (see the relay fixture)."""
    return INSTALLATION + int(relay.env["GITHUB_APP_ID"]) - APP_ID


def new_issue(github: FakeGitHub, *, pull: bool = False) -> int:
    number = int(uuid.uuid4().int % 900_000) + 1000
    github.add_issue(
        REPO,
        number,
        title="Flaky test in CI",
        body="test_upload fails one run in five.",
        user=WRITER,
        pull_request={"head": "feature/upload", "base": "main"} if pull else None,
    )
    return number


def mention(
    relay: RelayProcess,
    github: FakeGitHub,
    number: int,
    text: str,
    *,
    sender: str = WRITER,
    pull: bool = False,
    delivery_id: str | None = None,
) -> tuple[dict[str, Any], httpx.Response]:
    comment = github.add_comment(REPO, number, text, user=sender)
    payload = hooks.issue_comment(
        REPO, installation_of(relay), comment, sender=sender, pull_request=pull
    )
    response = hooks.deliver(
        relay.url, "issue_comment", payload, WEBHOOK_SECRET, delivery_id=delivery_id
    )
    return comment, response


def bot_comments(github: FakeGitHub, number: int) -> list[str]:
    return [c["body"] for c in github.comments(REPO, number) if c["user"]["login"] == BOT]


def answers(github: FakeGitHub, number: int) -> list[str]:
    return [body for body in bot_comments(github, number) if SUMMARY in body]


def answered(relay: RelayProcess, github: FakeGitHub, number: int, count: int = 1) -> None:
    wait_until(
        lambda: len(answers(github, number)) >= count and relay.idle(),
        timeout=90,
        message=lambda: (
            f"no answer on #{number}; the bot said {bot_comments(github, number)}\n"
            f"relay log:\n{relay.log_tail()}"
        ),
    )


def github_callbacks(relay: RelayProcess) -> list[dict[str, Any]]:
    return relay.callbacks(processor_type="github")


def test_a_mention_gets_eyes_an_ack_and_one_answer(
    relay: RelayProcess, github: FakeGitHub, agent_server: AgentServerProcess, fake_llm: FakeLLM
) -> None:
    number = new_issue(github)
    before = len(github_callbacks(relay))

    comment, response = mention(relay, github, number, "@openhands please fix the flaky test")

    assert response.status_code == 202, response.text
    answered(relay, github, number)
    ack, answer = bot_comments(github, number)
    # Posted as "On it!", the comment then shows the turn's status, ending in its outcome.
    [posted] = [
        c.body["body"]
        for c in github.calls("POST", rf"/repos/{REPO}/issues/{number}/comments$")
        if c.status == 201 and "agent-relay:ack:" in c.body["body"]
    ]
    assert posted.startswith("On it!")
    assert ack.startswith("Done in ")
    assert answer.startswith(f"@{WRITER} {SUMMARY}")
    assert github.reactions("issue_comment", REPO, comment["id"]) == {"eyes"}
    callbacks = github_callbacks(relay)
    assert len(callbacks) == before + 1
    assert callbacks[0]["status"] == "COMPLETED"
    conversation_id = str(callbacks[0]["conversation_id"])
    assert f"https://agent.example.test/conversations/{conversation_id}" in ack
    prompt = agent_server.user_messages(conversation_id)[0]
    assert f"@{WRITER} asked you on GitHub, in issue {REPO}#{number}" in prompt
    assert "please fix the flaky test" in prompt
    assert f"Repository: {REPO}" in prompt
    assert "test_upload fails one run in five." in prompt
    # The conversation works in a directory of its own, named after the repository.
    assert agent_server.working_dir(conversation_id).endswith(f"/{conversation_id}/api")
    # Its system prompt says that the thread is information, not orders.
    assert any(
        CONTEXT_IS_DATA in message_text(message)
        for body in fake_llm.agent_requests
        for message in body.get("messages") or []
        if message.get("role") == "system"
    )
    # Every REST call but the token mint was made with the installation's token.
    repo_calls = github.calls(path_pattern=r"/repos/.*")
    assert repo_calls and {c.auth for c in repo_calls} == {"token"}


def test_a_pull_request_mention_carries_its_branches(
    relay: RelayProcess, github: FakeGitHub, agent_server: AgentServerProcess
) -> None:
    number = new_issue(github, pull=True)
    mention(relay, github, number, "@openhands review this please", pull=True)
    answered(relay, github, number)
    conversation_id = str(github_callbacks(relay)[0]["conversation_id"])
    prompt = agent_server.user_messages(conversation_id)[0]
    assert f"pull request {REPO}#{number}" in prompt
    assert "branch feature/upload into main" in prompt


def test_someone_without_write_access_starts_nothing(
    relay: RelayProcess, github: FakeGitHub
) -> None:
    number = new_issue(github)
    before = len(github_callbacks(relay))
    comment, response = mention(
        relay, github, number, "@openhands delete everything", sender=READER
    )
    assert response.status_code == 202
    wait_until(lambda: bot_comments(github, number) and relay.idle(), timeout=30)
    [refusal] = bot_comments(github, number)
    assert refusal.startswith(f"@{READER} Sorry, I can only take requests")
    assert len(github_callbacks(relay)) == before
    assert github.reactions("issue_comment", REPO, comment["id"]) == set()


def test_a_redelivery_gives_one_answer(relay: RelayProcess, github: FakeGitHub) -> None:
    number = new_issue(github)
    delivery = str(uuid.uuid4())
    comment = github.add_comment(REPO, number, "@openhands fix it", user=WRITER)
    payload = hooks.issue_comment(REPO, installation_of(relay), comment, sender=WRITER)
    first = hooks.deliver(relay.url, "issue_comment", payload, WEBHOOK_SECRET, delivery_id=delivery)
    again = hooks.deliver(relay.url, "issue_comment", payload, WEBHOOK_SECRET, delivery_id=delivery)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["duplicate"] is True
    answered(relay, github, number)
    assert len(bot_comments(github, number)) == 2  # one "on it", one answer


def test_the_trigger_label_makes_the_issue_the_task(
    relay: RelayProcess, github: FakeGitHub, agent_server: AgentServerProcess
) -> None:
    number = new_issue(github)
    payload = hooks.labeled(REPO, installation_of(relay), number, "openhands", sender=WRITER)
    assert hooks.deliver(relay.url, "issues", payload, WEBHOOK_SECRET).status_code == 202
    answered(relay, github, number)
    assert github.reactions("issue", REPO, number) == {"eyes"}
    conversation_id = str(github_callbacks(relay)[0]["conversation_id"])
    prompt = agent_server.user_messages(conversation_id)[0]
    assert f'added the label "openhands" to GitHub issue {REPO}#{number}' in prompt
    assert "That issue is your task." in prompt


def test_a_review_comment_is_answered_in_its_thread(
    relay: RelayProcess, github: FakeGitHub, agent_server: AgentServerProcess
) -> None:
    number = new_issue(github, pull=True)
    top = github.add_review_comment(
        REPO,
        number,
        "this retries forever",
        user=WRITER,
        path="src/upload.py",
        line=42,
        diff_hunk="@@ -40,3 +40,4 @@\n+while True:",
    )
    reply = github.add_review_comment(
        REPO,
        number,
        "@openhands can you bound the retries?",
        user=WRITER,
        path="src/upload.py",
        line=42,
        diff_hunk="@@ -40,3 +40,4 @@\n+while True:",
        in_reply_to=top["id"],
    )
    payload = hooks.review_comment(
        REPO, installation_of(relay), reply, number=number, sender=WRITER
    )
    response = hooks.deliver(relay.url, "pull_request_review_comment", payload, WEBHOOK_SECRET)
    assert response.status_code == 202

    def thread_answers() -> list[dict[str, Any]]:
        return [
            c
            for c in github.review_comments(REPO, number)
            if c["user"]["login"] == BOT and SUMMARY in c["body"]
        ]

    wait_until(lambda: thread_answers() and relay.idle(), timeout=90, message=relay.log_tail)
    [answer] = thread_answers()
    assert answer["in_reply_to_id"] == top["id"]
    assert bot_comments(github, number) == []  # nothing on the PR's main thread
    assert github.reactions("review_comment", REPO, reply["id"]) == {"eyes"}
    replies = github.calls("POST", rf"/repos/{REPO}/pulls/{number}/comments/{top['id']}/replies")
    assert len(replies) == 2  # "on it" and the answer
    conversation_id = str(github_callbacks(relay)[0]["conversation_id"])
    prompt = agent_server.user_messages(conversation_id)[0]
    assert "The review comment is on src/upload.py, line 42" in prompt
    assert "+while True:" in prompt


def test_a_follow_up_continues_the_conversation(
    relay: RelayProcess, github: FakeGitHub, agent_server: AgentServerProcess
) -> None:
    number = new_issue(github)
    mention(relay, github, number, "@openhands look at the flaky test")
    answered(relay, github, number)
    github.add_comment(REPO, number, "it only fails on Tuesdays", user="bob")
    mention(relay, github, number, "@openhands any luck with the Tuesday theory?")
    answered(relay, github, number, count=2)
    first, second = github_callbacks(relay)[1], github_callbacks(relay)[0]
    assert first["conversation_id"] == second["conversation_id"]
    assert second["status"] == "COMPLETED"
    assert len(answers(github, number)) == 2
    follow_up = [
        m for m in agent_server.user_messages(str(second["conversation_id"])) if "followed up" in m
    ]
    assert len(follow_up) == 1
    assert "any luck with the Tuesday theory?" in follow_up[0]
    assert "@bob (outside contributor): it only fails on Tuesdays" in follow_up[0]
    assert "look at the flaky test" not in follow_up[0]


def test_the_installation_token_is_minted_once_and_renewed_after_a_401(
    relay: RelayProcess, github: FakeGitHub
) -> None:
    installation_id = installation_of(relay)
    # Earlier tests in this module made many calls with one token.
    assert github.token_mints(installation_id) == 1
    github.expire_tokens()
    number = new_issue(github)
    mention(relay, github, number, "@openhands once more")
    answered(relay, github, number)
    assert github.token_mints(installation_id) == 2


def test_rate_limits_and_outages_delay_the_answer_but_do_not_double_it(
    relay: RelayProcess, github: FakeGitHub
) -> None:
    number = new_issue(github)
    comments = rf"/repos/{REPO}/issues/{number}/comments"
    mention(relay, github, number, "@openhands fix it")
    # The "on it" comment goes through; the answer meets a secondary rate limit,
    # then an outage, then succeeds.
    wait_until(lambda: bot_comments(github, number), timeout=30, message=relay.log_tail)
    github.fail_next(
        "POST",
        comments,
        403,
        headers={"Retry-After": "1"},
        body={"message": "You have exceeded a secondary rate limit."},
    )
    github.fail_next("POST", comments, 502)
    answered(relay, github, number)
    assert [c.status for c in github.calls("POST", comments)] == [201, 403, 502, 201]
    assert len(answers(github, number)) == 1


def test_a_404_on_the_answer_fails_visibly(relay: RelayProcess, github: FakeGitHub) -> None:
    number = new_issue(github)
    comments = rf"/repos/{REPO}/issues/{number}/comments"
    mention(relay, github, number, "@openhands fix it")
    wait_until(lambda: bot_comments(github, number), timeout=30, message=relay.log_tail)
    github.fail_next("POST", comments, 404, body={"message": "Not Found"})

    def failed() -> list[str]:
        listing = subprocess.run(
            [RELAY_BIN, "jobs", "list", "--status", "failed"],
            cwd=relay.workdir,
            env=relay.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [line for line in listing.splitlines() if comments.replace("\\", "") in line]

    wait_until(lambda: failed() and relay.idle(), timeout=90, message=relay.log_tail)
    assert "github POST" in failed()[0] and "HTTP 404" in failed()[0]
    assert github_callbacks(relay)[0]["status"] == "ERROR"


def test_a_suspended_installation_is_ignored_until_unsuspended(
    relay: RelayProcess, github: FakeGitHub
) -> None:
    installation_id = installation_of(relay)
    for action in ("created", "suspend"):
        payload = hooks.installation(action, installation_id)
        assert hooks.deliver(relay.url, "installation", payload, WEBHOOK_SECRET).status_code == 202
    wait_until(relay.idle, timeout=30)
    listing = subprocess.run(
        [RELAY_BIN, "github", "installations"],
        cwd=relay.workdir,
        env=relay.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(installation_id) in listing and "suspended" in listing
    number = new_issue(github)
    mention(relay, github, number, "@openhands are you there?")
    wait_until(relay.idle, timeout=30)
    assert bot_comments(github, number) == []
    unsuspend = hooks.installation("unsuspend", installation_id)
    hooks.deliver(relay.url, "installation", unsuspend, WEBHOOK_SECRET)
    mention(relay, github, number, "@openhands and now?")
    answered(relay, github, number)


def test_a_bad_signature_is_refused_and_nothing_is_stored(
    relay: RelayProcess, github: FakeGitHub
) -> None:
    number = new_issue(github)
    comment = github.add_comment(REPO, number, "@openhands fix it", user=WRITER)
    payload = hooks.issue_comment(REPO, installation_of(relay), comment, sender=WRITER)
    before_calls = len(github.calls())
    before = len(github_callbacks(relay))
    wrong = hooks.deliver(relay.url, "issue_comment", payload, "not-the-secret")
    body = json.dumps(payload).encode()
    unsigned = httpx.post(
        f"{relay.url}/github/events",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "issue_comment",
            "X-GitHub-Delivery": str(uuid.uuid4()),
        },
        timeout=10,
    )
    assert (wrong.status_code, unsigned.status_code) == (401, 401)
    assert relay.idle()
    assert len(github_callbacks(relay)) == before
    assert len(github.calls()) == before_calls


def test_ping_is_answered(relay: RelayProcess) -> None:
    payload = hooks.example("ping.with-app_id")
    response = hooks.deliver(relay.url, "ping", payload, WEBHOOK_SECRET)
    assert response.status_code == 200
    assert response.json()["ok"] is True


def test_no_token_or_secret_reaches_the_log(relay: RelayProcess, github: FakeGitHub) -> None:
    log = relay.log_path.read_text()
    assert "github delivery" in log
    assert WEBHOOK_SECRET not in log
    assert "PRIVATE KEY" not in log
    for call in github.calls("POST", r"/app/installations/\d+/access_tokens"):
        assert call.status == 201
    tokens = [c for c in github.calls() if c.auth == "token"]
    assert tokens  # tokens were used; they are not in the log (checked by prefix)
    assert "ghs_" not in log
