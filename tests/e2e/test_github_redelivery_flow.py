"""End to end: mentions made on GitHub while agent-relay is down are not lost.

GitHub is a fake that delivers the app's webhooks to the relay itself and keeps the
app's delivery log (tests/support/fake_github_deliveries.py). Three mentions are made
while the relay is stopped: each delivery fails to connect. When the relay is back,
its periodic redelivery (every 2 s here) reads the log, asks GitHub to redeliver each
of them, and each is answered once. A delivery the relay recorded although GitHub
logged it as failed (the answer was lost) is not asked for again. On SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support import github_webhooks as hooks
from tests.support.agent_server import AgentServerProcess
from tests.support.fake_github_deliveries import DeliveringGitHub, HookAttempt
from tests.support.fake_llm import FakeLLM, finish
from tests.support.relay_process import RelayProcess, database_for, relay_environment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.agent_server

APP_ID = 5151
SLUG = "openhands-relay"
BOT = f"{SLUG}[bot]"
INSTALLATION = 88
REPO = "acme/api"
SUMMARY = "Looked into it: the fix is on branch `fix/lost`."
WRITER = "ada"


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    rules = [("Please write the reply to the person", finish(SUMMARY))]
    with FakeLLM(rules, default=finish("Done with the task.")) as llm:
        yield llm


@pytest.fixture(scope="module")
def github() -> Iterator[DeliveringGitHub]:
    with DeliveringGitHub() as fake:
        yield fake


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def relay(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    relay_port: int,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    github: DeliveringGitHub,
) -> Iterator[RelayProcess]:
    app_id = APP_ID + (request.param == "postgresql")
    installation_id = INSTALLATION + (request.param == "postgresql")
    pem = github.add_app(app_id, SLUG)
    github.add_installation(installation_id, app_id, account="acme", repositories=[REPO])
    github.set_permission(REPO, WRITER, "write")
    workdir = tmp_path_factory.mktemp(f"relay-github-redelivery-{request.param}")
    env = relay_environment(
        workdir=workdir,
        database_url=database_for(request, request.param, workdir),
        port=relay_port,
        agent_server=agent_server,
        fake_llm=fake_llm,
        extra={
            "GITHUB_APP_ID": str(app_id),
            "GITHUB_PRIVATE_KEY": pem,
            "GITHUB_WEBHOOK_SECRET": github.app(app_id).webhook_secret,
            "GITHUB_API_URL": github.api_url,
            "GITHUB_URL": github.web_url,
            "GITHUB_REDELIVER_INTERVAL_SECONDS": "2",
        },
    )
    relay = RelayProcess(workdir, env).start()
    github.set_webhook(app_id, f"{relay.url}/github/events")
    try:
        yield relay
    finally:
        relay.stop()


def mention(
    github: DeliveringGitHub, relay: RelayProcess, *, answer_lost: bool = False
) -> tuple[int, HookAttempt]:
    """A new issue and a mention on it, delivered by GitHub: the issue's number and
    GitHub's attempt."""
    number = int(uuid.uuid4().int % 900_000) + 1000
    github.add_issue(REPO, number, title="Lost mention", body="It went missing.", user=WRITER)
    comment = github.add_comment(REPO, number, "@openhands please look", user=WRITER)
    app_id = int(relay.env["GITHUB_APP_ID"])
    installation = INSTALLATION + app_id - APP_ID
    payload = hooks.issue_comment(REPO, installation, comment, sender=WRITER)
    return number, github.deliver(app_id, "issue_comment", payload, answer_lost=answer_lost)


def answers(github: DeliveringGitHub, number: int) -> list[str]:
    return [
        c["body"]
        for c in github.comments(REPO, number)
        if c["user"]["login"] == BOT and SUMMARY in c["body"]
    ]


def test_mentions_made_while_the_relay_was_down_are_redelivered_and_answered_once(
    relay: RelayProcess, github: DeliveringGitHub
) -> None:
    recorded, lost_answer = mention(github, relay, answer_lost=True)
    assert lost_answer.status == "timed out"
    wait_until(lambda: answers(github, recorded) and relay.idle(), timeout=90)

    relay.stop()
    missed = [mention(github, relay) for _ in range(3)]
    assert {attempt.status_code for _, attempt in missed} == {0}  # no connection
    relay.start()

    wait_until(
        lambda: all(answers(github, number) for number, _ in missed) and relay.idle(),
        timeout=120,
        message=lambda: f"not all answered; relay log:\n{relay.log_tail()}",
    )
    for number in [recorded, *(number for number, _ in missed)]:
        assert len(answers(github, number)) == 1
    app_id = int(relay.env["GITHUB_APP_ID"])
    asked = [
        github.attempt(int(call.path.split("/")[-2]))
        for call in github.calls("POST")
        if call.path.endswith("/attempts")
    ]
    asked_guids = [attempt.guid for attempt in asked if attempt.app_id == app_id]
    # Each missed delivery asked for once; the recorded one not at all.
    assert sorted(asked_guids) == sorted(attempt.guid for _, attempt in missed)
