"""End to end: GitLab drives agent-relay the way a GitLab instance would.

agent-relay runs as a process (`agent-relay serve`) with the real openhands-agent-server
and a scripted fake LLM; GitLab is a fake REST API on loopback (GITLAB_URL) that checks
the bot's token and records every call, and deliveries are POSTs to /gitlab/events
with X-Gitlab-Token, shaped as GitLab documents them. Most tests run on SQLite; the
main flow runs on PostgreSQL too.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.agent_server import AgentServerProcess
from tests.support.fake_gitlab import (
    BOT_TOKEN,
    WEBHOOK_SECRET,
    FakeGitlab,
    delivery_headers,
    hook_event_name,
    label_hook,
    note_hook,
)
from tests.support.fake_llm import FakeLLM, finish
from tests.support.relay_process import (
    CONVERSATION_URL,
    RELAY_BIN,
    RelayProcess,
    database_for,
    relay_environment,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.agent_server

PROJECT_ID = 31
PROJECT = "acme/widgets"
SUMMARY = "I fixed the flaky test on branch `fix/flaky`."
DEVELOPER = 41
REPORTER = 42
_iids = iter(range(1, 10_000))


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    # processors.summary.SUMMARY_INSTRUCTION starts with these words.
    rules = [("Please write the reply to the person", finish(SUMMARY))]
    with FakeLLM(rules, default=finish("Done with the task.")) as llm:
        yield llm


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
def relay(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    relay_port: int,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    gitlab: FakeGitlab,
) -> Iterator[RelayProcess]:
    # SQLite unless a test asks for PostgreSQL (indirect parametrisation).
    database = getattr(request, "param", "sqlite")
    workdir = tmp_path_factory.mktemp(f"relay-gitlab-{database}")
    env = relay_environment(
        workdir=workdir,
        database_url=database_for(request, database, workdir),
        port=relay_port,
        agent_server=agent_server,
        fake_llm=fake_llm,
        extra={
            "GITLAB_URL": gitlab.url,
            "GITLAB_TOKEN": BOT_TOKEN,
            "GITLAB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "JOB_LEASE_SECONDS": "5",
        },
    )
    relay = RelayProcess(workdir, env).start()
    try:
        yield relay
    finally:
        relay.stop()


@dataclass(frozen=True)
class Asked:
    kind: str  # "issue" | "merge_request"
    iid: int
    event: str
    payload: dict[str, Any]
    note: dict[str, Any] | None = None  # None for a label


def new_issue(gitlab: FakeGitlab, title: str = "The nightly build fails") -> int:
    iid = next(_iids)
    gitlab.add_issue(
        PROJECT_ID, iid, title=title, description="Since Monday, on main.", author_id=DEVELOPER
    )
    return iid


def mention(
    gitlab: FakeGitlab,
    text: str,
    *,
    kind: str = "issue",
    iid: int | None = None,
    author_id: int = DEVELOPER,
) -> Asked:
    """A person's note (stored in the fake) and the Note Hook GitLab sends for it."""
    if iid is None:
        if kind == "issue":
            iid = new_issue(gitlab)
        else:
            iid = next(_iids)
            gitlab.add_merge_request(
                PROJECT_ID,
                iid,
                title="Cache dependencies in CI",
                description="Halves the pipeline time.",
                author_id=DEVELOPER,
                source_branch="ci/cache",
            )
    note = gitlab.add_note(PROJECT_ID, kind, iid, author_id=author_id, body=f"@openhands {text}")
    return Asked(kind, iid, "Note Hook", note_hook(gitlab, note), note)


def deliver(
    relay: RelayProcess,
    asked: Asked,
    *,
    secret: str | None = WEBHOOK_SECRET,
    event_uuid: str | None = None,
) -> httpx.Response:
    return httpx.post(
        f"{relay.url}/gitlab/events",
        content=json.dumps(asked.payload).encode(),
        headers=delivery_headers(asked.event, secret=secret, event_uuid=event_uuid),
        timeout=10,
    )


def bot_notes(gitlab: FakeGitlab, asked: Asked) -> list[dict[str, Any]]:
    """The bot's notes: in the asking note's discussion, or on the issue for a label."""
    notes = gitlab.bot_notes(PROJECT_ID, asked.kind, asked.iid)
    if asked.note is None:
        return notes
    return [n for n in notes if n["discussion_id"] == asked.note["discussion_id"]]


def acks(gitlab: FakeGitlab, asked: Asked) -> list[dict[str, Any]]:
    return [n for n in bot_notes(gitlab, asked) if "agent-relay:ack:" in n["body"]]


def as_posted(gitlab: FakeGitlab, ack: dict[str, Any]) -> str:
    """What an "on it" note said when it was posted (it shows the turn's status since)."""
    mark = re.search(r"<!-- agent-relay:ack:\S+ -->", ack["body"])
    assert mark is not None, ack["body"]
    [body] = [
        str(call.body["body"])
        for call in gitlab.calls("POST", r"/notes$")
        if call.status == 201 and mark.group(0) in str(call.body["body"])
    ]
    return body


def answers(gitlab: FakeGitlab, asked: Asked) -> list[dict[str, Any]]:
    return [n for n in bot_notes(gitlab, asked) if SUMMARY in n["body"]]


def answered(relay: RelayProcess, gitlab: FakeGitlab, asked: Asked, count: int = 1) -> None:
    """Wait until `count` answers are there and the relay has nothing left to do."""
    wait_until(
        lambda: len(answers(gitlab, asked)) >= count and relay.idle(),
        timeout=90,
        message=lambda: (
            f"no answer on {asked.kind} {asked.iid}; bot said "
            f"{[n['body'] for n in bot_notes(gitlab, asked)]}\nrelay log:\n{relay.log_tail()}"
        ),
    )


def gitlab_callbacks(relay: RelayProcess) -> list[dict[str, Any]]:
    return relay.callbacks(processor_type="gitlab")


@pytest.mark.parametrize("relay", ["sqlite", "postgresql"], indirect=True)
def test_a_mention_gets_eyes_one_answer_in_its_discussion_and_completes(
    relay: RelayProcess, gitlab: FakeGitlab, agent_server: AgentServerProcess
) -> None:
    before = len(gitlab_callbacks(relay))
    asked = mention(gitlab, "why does the nightly build fail?")
    assert asked.note is not None

    response = deliver(relay, asked)

    assert response.status_code == 202
    answered(relay, gitlab, asked)
    assert gitlab.note_awards(asked.note["id"]) == [("eyes", gitlab.bot_user_id)]
    [ack] = acks(gitlab, asked)
    [answer] = answers(gitlab, asked)
    assert answer["body"].startswith("@ada ")
    callbacks = gitlab_callbacks(relay)
    assert len(callbacks) == before + 1
    callback = callbacks[0]
    assert callback["status"] == "COMPLETED"
    conversation_id = str(callback["conversation_id"])
    assert CONVERSATION_URL.format(conversation_id=conversation_id) in ack["body"]
    prompt = agent_server.user_messages(conversation_id)[0]
    assert f"ada asked you in a comment on GitLab issue {PROJECT}#{asked.iid}:" in prompt
    assert "why does the nightly build fail?" in prompt
    assert "Title: The nightly build fails" in prompt
    assert "Since Monday, on main." in prompt
    # The eyes went on first, then "on it", then the answer; each call used the token.
    assert {call.token for call in gitlab.calls()} == {BOT_TOKEN}


def test_a_note_on_a_merge_request_is_answered_in_its_discussion(
    relay: RelayProcess, gitlab: FakeGitlab, agent_server: AgentServerProcess
) -> None:
    asked = mention(gitlab, "please review this", kind="merge_request")
    assert asked.note is not None

    assert deliver(relay, asked).status_code == 202

    answered(relay, gitlab, asked)
    assert len(acks(gitlab, asked)) == 1
    assert gitlab.note_awards(asked.note["id"]) == [("eyes", gitlab.bot_user_id)]
    conversation_id = str(gitlab_callbacks(relay)[0]["conversation_id"])
    prompt = agent_server.user_messages(conversation_id)[0]
    assert f"GitLab merge request {PROJECT}!{asked.iid}" in prompt
    assert "Source branch: ci/cache; target branch: main" in prompt


def test_a_reporter_gets_one_polite_reply_and_starts_nothing(
    relay: RelayProcess, gitlab: FakeGitlab
) -> None:
    before = len(gitlab_callbacks(relay))
    asked = mention(gitlab, "delete the main branch", author_id=REPORTER)
    assert asked.note is not None

    assert deliver(relay, asked).status_code == 202

    wait_until(lambda: bot_notes(gitlab, asked) and relay.idle(), timeout=30)
    [reply] = bot_notes(gitlab, asked)
    assert reply["body"].startswith("@rita Sorry, I can only take requests from people")
    assert gitlab.note_awards(asked.note["id"]) == []
    assert len(gitlab_callbacks(relay)) == before


def test_a_bad_token_is_refused_and_stores_nothing(relay: RelayProcess, gitlab: FakeGitlab) -> None:
    wait_until(relay.idle, timeout=30)
    jobs, callbacks, calls = relay.job_total(), len(gitlab_callbacks(relay)), len(gitlab.calls())
    asked = mention(gitlab, "do something")

    wrong = deliver(relay, asked, secret="not-the-webhook-secret")
    missing = deliver(relay, asked, secret=None)

    assert wrong.status_code == missing.status_code == 401
    assert relay.job_total() == jobs
    assert len(gitlab_callbacks(relay)) == callbacks
    assert len(gitlab.calls()) == calls


def test_a_duplicate_event_uuid_gives_one_answer(relay: RelayProcess, gitlab: FakeGitlab) -> None:
    before = len(gitlab_callbacks(relay))
    asked = mention(gitlab, "bump the version")
    event_uuid = str(uuid.uuid4())

    assert deliver(relay, asked, event_uuid=event_uuid).status_code == 202
    assert deliver(relay, asked, event_uuid=event_uuid).status_code == 200
    answered(relay, gitlab, asked)
    assert deliver(relay, asked, event_uuid=event_uuid).status_code == 200

    wait_until(relay.idle, timeout=30)
    assert len(acks(gitlab, asked)) == 1
    assert len(answers(gitlab, asked)) == 1
    assert len(gitlab_callbacks(relay)) == before + 1


def test_the_trigger_label_is_answered_on_the_issue(
    relay: RelayProcess, gitlab: FakeGitlab, agent_server: AgentServerProcess
) -> None:
    iid = new_issue(gitlab, "Upgrade the logging library")
    payload = label_hook(
        gitlab,
        PROJECT_ID,
        "issue",
        iid,
        user_id=DEVELOPER,
        previous=["chore"],
        current=["chore", "openhands"],
    )
    asked = Asked("issue", iid, hook_event_name("issue"), payload)

    assert deliver(relay, asked).status_code == 202

    answered(relay, gitlab, asked)
    assert gitlab.item_awards(PROJECT_ID, "issue", iid) == [("eyes", gitlab.bot_user_id)]
    [ack] = acks(gitlab, asked)
    assert "I'll answer in this issue." in as_posted(gitlab, ack)
    [answer] = answers(gitlab, asked)
    assert answer["type"] is None  # a note of its own, not a reply in a thread
    conversation_id = str(gitlab_callbacks(relay)[0]["conversation_id"])
    prompt = agent_server.user_messages(conversation_id)[0]
    assert 'ada added the label "openhands"' in prompt
    assert "Title: Upgrade the logging library" in prompt


def test_a_follow_up_on_the_same_issue_continues_the_conversation(
    relay: RelayProcess, gitlab: FakeGitlab, agent_server: AgentServerProcess
) -> None:
    first = mention(gitlab, "look at the flaky test")
    deliver(relay, first)
    answered(relay, gitlab, first)
    gitlab.add_note(
        PROJECT_ID, "issue", first.iid, author_id=REPORTER, body="It fails on Tuesdays."
    )

    follow_up = mention(gitlab, "and now fix it please", iid=first.iid)
    assert deliver(relay, follow_up).status_code == 202

    answered(relay, gitlab, follow_up)
    assert len(answers(gitlab, first)) == 1
    assert len(answers(gitlab, follow_up)) == 1
    second_callback, first_callback = gitlab_callbacks(relay)[:2]
    assert first_callback["status"] == second_callback["status"] == "COMPLETED"
    assert first_callback["conversation_id"] == second_callback["conversation_id"]
    said = agent_server.user_messages(str(first_callback["conversation_id"]))
    # prompt, summary instruction, follow-up, summary instruction: one answer per turn.
    assert len(said) == 4
    assert "and now fix it please" in said[2]
    assert "rita (outside contributor): It fails on Tuesdays." in said[2]
    assert "look at the flaky test" not in said[2]
    [again] = acks(gitlab, follow_up)
    assert as_posted(gitlab, again).startswith("On it, continuing our conversation.")


def test_a_rate_limit_then_an_outage_on_the_answer_still_give_exactly_one_answer(
    relay: RelayProcess, gitlab: FakeGitlab
) -> None:
    asked = mention(gitlab, "update the changelog")
    assert asked.note is not None
    discussion = f"/discussions/{asked.note['discussion_id']}/notes$"
    assert deliver(relay, asked).status_code == 202
    wait_until(lambda: acks(gitlab, asked), timeout=30)
    # The next posts in the discussion are the answer's: first rate-limited, then failed.
    gitlab.fail_next("POST", discussion, status=429, retry_after=1)
    gitlab.fail_next("POST", discussion, status=500)

    answered(relay, gitlab, asked)

    assert len(answers(gitlab, asked)) == 1
    assert [call.status for call in gitlab.calls("POST", discussion)] == [201, 429, 500, 201]


def test_a_404_on_the_answer_is_a_failed_job_readable_in_jobs_list(
    relay: RelayProcess, gitlab: FakeGitlab
) -> None:
    asked = mention(gitlab, "archive the old branches")
    assert asked.note is not None
    discussion = f"/discussions/{asked.note['discussion_id']}/notes$"
    assert deliver(relay, asked).status_code == 202
    wait_until(lambda: acks(gitlab, asked), timeout=30)
    gitlab.fail_next("POST", discussion, status=404, message="404 Not found")

    def failed_callback() -> dict[str, Any] | None:
        for callback in gitlab_callbacks(relay):
            if callback["status"] == "ERROR" and "HTTP 404" in str(callback["status_reason"]):
                return callback
        return None

    wait_until(lambda: failed_callback() and relay.idle(), timeout=90, message=relay.log_tail)
    listing = subprocess.run(
        [RELAY_BIN, "jobs", "list", "--status", "failed"],
        cwd=relay.workdir,
        env=relay.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    path = f"/projects/{PROJECT_ID}/issues/{asked.iid}/discussions/{asked.note['discussion_id']}"
    expected = f"gitlab POST {path}/notes: HTTP 404 404 Not found"
    [line] = [line for line in listing.splitlines() if expected in line]
    assert "callback.reply" in line and "attempts 1/" in line
    # Failed at once: one refused attempt, no retries, and no answer.
    assert [call.status for call in gitlab.calls("POST", discussion)] == [201, 404]
    assert answers(gitlab, asked) == []


def test_no_token_or_secret_reaches_the_log(relay: RelayProcess) -> None:
    # Runs last in the module, after mentions, refusals and failures were logged
    # (at LOG_LEVEL=DEBUG).
    log = relay.log_path.read_text()
    assert "gitlab delivery" in log  # the log is the relay's, and it logged deliveries
    for secret in (BOT_TOKEN, WEBHOOK_SECRET):
        assert secret not in log
