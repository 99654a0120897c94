"""End to end: a mention on a GitLab issue gets its own checkout, pushes with
GITLAB_AGENT_TOKEN, and comes back as a draft merge request; a mention on a merge
request pushes to its own branch.

agent-relay runs as a process with the real openhands-agent-server; the scripted LLM's
tool calls run real git in the agent's terminal; the fake GitLab serves a real
repository over git's smart HTTP, lets a Developer's token push, and opens merge
requests as GitLab does.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.agent_server import AgentServerProcess
from tests.support.fake_gitlab import (
    BOT_TOKEN,
    DEVELOPER,
    WEBHOOK_SECRET,
    FakeGitlab,
    delivery_headers,
    note_hook,
)
from tests.support.fake_llm import FakeLLM, finish, run, steps
from tests.support.git_http import GitRepositories
from tests.support.relay_process import RelayProcess, relay_environment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.agent_server

PROJECT_ID = 31
PROJECT = "acme/widgets"
ASKER = 41
# GITLAB_AGENT_TOKEN: a project access token, whose user is a bot of its own.
AGENT_USER = 950
AGENT_NAME = "Widgets agent"
AGENT_TOKEN = "glpat-e2e-project-access-token-0000"
SUMMARY = "The parser keeps time zones now."
TITLE = "Date parser drops time zones"
FOLLOW_UP = "also handle offsets like +05:30"
ON_REQUEST = "tidy the cache step"
REQUEST_BRANCH = "ci/cache"
REQUEST_IID = 500
PUSH = "git push 2>&1 | tail -3"
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
            ON_REQUEST,
            steps(
                run("printf 'tidy\\n' >> ci.yml && git commit -qam 'Tidy the cache step'"),
                run(PUSH),
                finish("Tidied."),
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
def gitlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGitlab]:
    repositories = GitRepositories(tmp_path_factory.mktemp("gitlab-served"))
    with FakeGitlab(repositories=repositories) as fake:
        fake.add_project(
            PROJECT_ID, PROJECT, files={"parser.py": "def parse(text): ...\n", "ci.yml": "a\n"}
        )
        fake.add_user(ASKER, "ada")
        fake.add_user(AGENT_USER, "project_31_bot_5e1f", name=AGENT_NAME)
        fake.add_token(AGENT_TOKEN, AGENT_USER)
        for user in (fake.bot_user_id, ASKER, AGENT_USER):
            fake.set_access(PROJECT_ID, user, DEVELOPER)
        yield fake


@pytest.fixture(scope="module")
def relay(
    tmp_path_factory: pytest.TempPathFactory,
    relay_port: int,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    gitlab: FakeGitlab,
) -> Iterator[RelayProcess]:
    workdir = tmp_path_factory.mktemp("relay-workspace-gitlab")
    env = relay_environment(
        workdir=workdir,
        database_url=f"sqlite:///{workdir / 'relay.db'}",
        port=relay_port,
        agent_server=agent_server,
        fake_llm=fake_llm,
        extra={
            "GITLAB_URL": gitlab.url,
            "GITLAB_TOKEN": BOT_TOKEN,
            "GITLAB_AGENT_TOKEN": AGENT_TOKEN,
            "GITLAB_WEBHOOK_SECRET": WEBHOOK_SECRET,
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


def new_issue(gitlab: FakeGitlab) -> int:
    iid = int(uuid.uuid4().int % 900) + 1
    gitlab.add_issue(
        PROJECT_ID,
        iid,
        title=TITLE,
        description="2026-01-05T10:00+02:00 loses +02:00.",
        author_id=ASKER,
    )
    return iid


def mention(relay: RelayProcess, gitlab: FakeGitlab, kind: str, iid: int, text: str) -> None:
    note = gitlab.add_note(PROJECT_ID, kind, iid, author_id=ASKER, body=f"@openhands {text}")
    response = httpx.post(
        f"{relay.url}/gitlab/events",
        content=json.dumps(note_hook(gitlab, note)).encode(),
        headers=delivery_headers("Note Hook"),
        timeout=10,
    )
    assert response.status_code == 202, response.text


def answers(gitlab: FakeGitlab, kind: str, iid: int) -> list[str]:
    """The bot's notes other than its "on it", oldest first."""
    return [
        str(note["body"])
        for note in gitlab.bot_notes(PROJECT_ID, kind, iid)
        if ACK_MARK not in str(note["body"])
    ]


def wait_for_answers(
    relay: RelayProcess, gitlab: FakeGitlab, kind: str, iid: int, count: int
) -> list[str]:
    wait_until(
        lambda: len(answers(gitlab, kind, iid)) >= count and relay.idle(),
        timeout=120,
        message=lambda: (
            f"no answer {count} on {kind} {iid}; bot said "
            f"{[n['body'] for n in gitlab.bot_notes(PROJECT_ID, kind, iid)]}\n{relay.log_tail()}"
        ),
    )
    return answers(gitlab, kind, iid)


def opened_by_the_bot(gitlab: FakeGitlab) -> list[Any]:
    return [mr for mr in gitlab.merge_requests(PROJECT_ID) if mr.author_id == gitlab.bot_user_id]


def work_branches(gitlab: FakeGitlab) -> list[str]:
    assert gitlab.repositories is not None
    return [b for b in gitlab.repositories.branches(PROJECT) if b.startswith("openhands/")]


def test_an_issue_mention_becomes_one_draft_merge_request_and_a_follow_up_updates_it(
    relay: RelayProcess, gitlab: FakeGitlab, agent_server: AgentServerProcess
) -> None:
    assert gitlab.repositories is not None
    iid = new_issue(gitlab)

    mention(relay, gitlab, "issue", iid, "please fix this")
    [answer] = wait_for_answers(relay, gitlab, "issue", iid, 1)

    [merge_request] = opened_by_the_bot(gitlab)
    [branch] = work_branches(gitlab)
    assert re.fullmatch(rf"openhands/{iid}-[0-9a-f]{{8}}", branch), branch
    assert merge_request.source_branch == branch and merge_request.target_branch == "main"
    assert merge_request.draft is True and merge_request.title.startswith("Draft: ")
    assert f"Closes #{iid}" in merge_request.description
    assert SUMMARY in merge_request.description
    assert merge_request.reviewer_ids == [ASKER]
    url = f"{gitlab.url}/{PROJECT}/-/merge_requests/{merge_request.iid}"
    assert answer.startswith(f"@ada Opened draft MR !{merge_request.iid}: ")
    assert url in answer and SUMMARY in answer
    # The agent's commit, by the agent token's user, on the work branch; the asker
    # as co-author, by GitLab's private commit email.
    [commit] = gitlab.repositories.commits(PROJECT, "main", branch)
    assert commit["author_name"] == AGENT_NAME and "Keep time zones" in commit["message"]
    assert commit["author_email"] == f"{AGENT_USER}-project_31_bot_5e1f@users.noreply.127.0.0.1"
    assert f"Co-authored-by: ada <{ASKER}-ada@users.noreply.127.0.0.1>" in commit["message"]
    # Git reached GitLab with GITLAB_AGENT_TOKEN only, and pushed with it.
    served = [r for r in gitlab.git_requests(PROJECT) if r.status == 200]
    assert {r.token for r in served} == {AGENT_TOKEN}
    assert any(r.push for r in served)

    mention(relay, gitlab, "issue", iid, FOLLOW_UP)
    second = wait_for_answers(relay, gitlab, "issue", iid, 2)[1]

    assert len(opened_by_the_bot(gitlab)) == 1
    assert work_branches(gitlab) == [branch]
    assert second.startswith(f"@ada Pushed 1 commit to `{branch}` (MR !{merge_request.iid}: {url})")
    assert len(gitlab.repositories.commits(PROJECT, "main", branch)) == 2


def test_a_mention_on_a_merge_request_pushes_to_its_branch_and_opens_none(
    relay: RelayProcess, gitlab: FakeGitlab
) -> None:
    assert gitlab.repositories is not None
    before = gitlab.repositories.commit(
        PROJECT, REQUEST_BRANCH, {"ci.yml": "a\ncache: true\n"}, "Cache dependencies"
    )
    gitlab.add_merge_request(
        PROJECT_ID,
        REQUEST_IID,
        title="Cache dependencies in CI",
        description="Halves the pipeline time.",
        author_id=ASKER,
        source_branch=REQUEST_BRANCH,
    )
    requests, branches = len(gitlab.merge_requests(PROJECT_ID)), work_branches(gitlab)

    mention(relay, gitlab, "merge_request", REQUEST_IID, ON_REQUEST)
    [answer] = wait_for_answers(relay, gitlab, "merge_request", REQUEST_IID, 1)

    assert len(gitlab.merge_requests(PROJECT_ID)) == requests
    url = f"{gitlab.url}/{PROJECT}/-/merge_requests/{REQUEST_IID}"
    assert answer.startswith(
        f"@ada Pushed 1 commit to `{REQUEST_BRANCH}` (MR !{REQUEST_IID}: {url})"
    )
    [commit] = gitlab.repositories.commits(PROJECT, before, REQUEST_BRANCH)
    assert "Tidy the cache step" in commit["message"]
    assert work_branches(gitlab) == branches


def test_no_token_reaches_the_log_the_database_or_the_agent_server(
    relay: RelayProcess, agent_server: AgentServerProcess
) -> None:
    # Runs last, after the checkouts, pushes and merge requests above (LOG_LEVEL=DEBUG).
    secrets = {BOT_TOKEN, AGENT_TOKEN, WEBHOOK_SECRET}
    assert "checked out acme/widgets" in relay.log_path.read_text()
    assert_absent(
        secrets, relay.log_path, relay.workdir / "relay.db", agent_server.conversations_path
    )


def assert_absent(secrets: set[str], log: Path, database: Path, event_store: Path) -> None:
    text = log.read_text()
    assert not [s for s in secrets if s in text], "a secret in the relay's log"
    with sqlite3.connect(database) as db:
        dump = "\n".join(db.iterdump())
    assert not [s for s in secrets if s in dump], "a secret in the database"
    for path in event_store.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not [s for s in secrets if s.encode() in content], f"a secret in {path}"
