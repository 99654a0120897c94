"""End to end: mentions made on GitLab while agent-relay is down are not lost.

GitLab is a fake that delivers its project hooks' events to the relay itself and keeps
each hook's event log (tests/support/fake_gitlab_deliveries.py). The hook is made by
`agent-relay gitlab install-webhook`, which records it. Three mentions are made while
the relay is stopped: each delivery fails to connect. When the relay is back, its
periodic redelivery (every 2 s here) reads the hook's events and resends each of them
(with its Idempotency-Key, a new X-Gitlab-Event-UUID), and each is answered once. An
event the relay recorded although GitLab logged it as failed is not resent. On SQLite
and on PostgreSQL.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.agent_server import AgentServerProcess
from tests.support.fake_gitlab import BOT_TOKEN, BOT_USER_ID, WEBHOOK_SECRET, note_hook
from tests.support.fake_gitlab_deliveries import DeliveringGitlab
from tests.support.fake_llm import FakeLLM, finish
from tests.support.git_repos import GitRepositories
from tests.support.relay_process import RELAY_BIN, RelayProcess, database_for, relay_environment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.agent_server

SUMMARY = "Found it: the cache key was wrong."
DEVELOPER = 41
PROJECTS = {"sqlite": (51, "acme/sqlite"), "postgresql": (52, "acme/postgres")}
_iids = iter(range(1, 10_000))


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    rules = [("Please write the reply to the person", finish(SUMMARY))]
    with FakeLLM(rules, default=finish("Done with the task.")) as llm:
        yield llm


@pytest.fixture(scope="module")
def gitlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeliveringGitlab]:
    # PUBLIC_URL (for the hook) turns checkouts on: the projects have repositories.
    repositories = GitRepositories(tmp_path_factory.mktemp("gitlab-redelivery-git"))
    with DeliveringGitlab(repositories=repositories) as fake:
        fake.add_user(DEVELOPER, "ada")
        for project_id, path in PROJECTS.values():
            fake.add_project(project_id, path, files={"README.md": "# widgets\n"})
            fake.set_access(project_id, DEVELOPER, 30)
            fake.set_access(project_id, BOT_USER_ID, 30)
        yield fake


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def relay(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    relay_port: int,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    gitlab: DeliveringGitlab,
) -> Iterator[RelayProcess]:
    workdir = tmp_path_factory.mktemp(f"relay-gitlab-redelivery-{request.param}")
    env = relay_environment(
        workdir=workdir,
        database_url=database_for(request, request.param, workdir),
        port=relay_port,
        agent_server=agent_server,
        fake_llm=fake_llm,
        extra={
            "GITLAB_URL": gitlab.url,
            "GITLAB_TOKEN": BOT_TOKEN,
            "GITLAB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GITLAB_REDELIVER_INTERVAL_SECONDS": "2",
            "PUBLIC_URL": f"http://127.0.0.1:{relay_port}",
        },
    )
    relay = RelayProcess(workdir, env).start()
    _, project = PROJECTS[request.param]
    installed = subprocess.run(
        [RELAY_BIN, "gitlab", "install-webhook", "--project", project],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    try:
        yield relay
    finally:
        relay.stop()


def project_of(relay: RelayProcess) -> int:
    database = "postgresql" if relay.env["DATABASE_URL"].startswith("postgres") else "sqlite"
    return PROJECTS[database][0]


def mention(
    gitlab: DeliveringGitlab, project_id: int, *, answer_lost: bool = False
) -> tuple[int, dict[str, Any]]:
    """A new issue and a note mentioning the bot on it, delivered by GitLab: the
    issue's iid and the logged event."""
    iid = next(_iids)
    gitlab.add_issue(project_id, iid, title="Slow CI", author_id=DEVELOPER)
    note = gitlab.add_note(
        project_id, "issue", iid, author_id=DEVELOPER, body="@openhands why is CI slow?"
    )
    payload = note_hook(gitlab, note)
    [event] = gitlab.deliver(project_id, "Note Hook", payload, answer_lost=answer_lost)
    return iid, event


def answers(gitlab: DeliveringGitlab, project_id: int, iid: int) -> list[str]:
    return [
        note["body"]
        for note in gitlab.bot_notes(project_id, "issue", iid)
        if SUMMARY in note["body"]
    ]


def test_mentions_made_while_the_relay_was_down_are_resent_and_answered_once(
    relay: RelayProcess, gitlab: DeliveringGitlab
) -> None:
    project_id = project_of(relay)
    recorded, lost_answer = mention(gitlab, project_id, answer_lost=True)
    assert lost_answer["response_status"] == "internal error"
    wait_until(lambda: answers(gitlab, project_id, recorded) and relay.idle(), timeout=90)

    relay.stop()
    missed = [mention(gitlab, project_id) for _ in range(3)]
    assert {event["response_status"] for _, event in missed} == {"internal error"}
    relay.start()

    wait_until(
        lambda: all(answers(gitlab, project_id, iid) for iid, _ in missed) and relay.idle(),
        timeout=120,
        message=lambda: f"not all answered; relay log:\n{relay.log_tail()}",
    )
    for iid in [recorded, *(iid for iid, _ in missed)]:
        assert len(answers(gitlab, project_id, iid)) == 1
    resends = [c for c in gitlab.calls("POST") if c.path.endswith("/resend")]
    resent = [c for c in resends if f"/projects/{project_id}/" in c.path]
    assert sorted(int(c.path.split("/")[-2]) for c in resent) == sorted(
        int(event["id"]) for _, event in missed
    )
