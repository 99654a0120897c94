"""What the previous version left in the database still runs after an upgrade.

A deployment upgrades with jobs still queued and callbacks still waiting for their
answer. Here each job kind's payload and each platform processor's settings are
written as literal JSON, as the previous version wrote them (not through today's
models, which would make the test agree with whatever they say now), then run by
today's handlers as the worker runs them, against the fakes of the agent-server
and of each platform. A model change that stops a stored shape from loading, or a
renamed kind, fails here.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bots.github.api import GithubApi
from bots.github.credentials import AppCredentials, GithubAppSource
from bots.github.inbound import GITHUB_EVENT_JOB
from bots.github.job import GithubEventJob
from bots.gitlab.api import GitlabApi
from bots.gitlab.inbound import GITLAB_EVENT_JOB
from bots.gitlab.job import GitlabEventJob
from bots.slack.api import SlackApi
from bots.slack.job import SLACK_EVENT_JOB, SlackEventJob
from bots.turns import Turns
from db.callbacks import CallbackStatus, get_callback
from db.job_kinds import Job, JobHandler, JobStatus
from db.retention import PRUNE_JOB, Retention
from db.secrets import SecretBox
from db.store import Store, now
from processors.context import ProcessorContext, SummaryMode
from processors.runtime import job_handlers
from relay.worker import Worker
from tests.support import github_webhooks
from tests.support.fake_agent_api import (
    WEBHOOK_SECRET,
    WEBHOOK_URL,
    FakeAgentServer,
    FakeWebhookReceiver,
    processor_context,
)
from tests.support.fake_github import FakeGitHub
from tests.support.fake_gitlab import BOT_TOKEN as GITLAB_TOKEN
from tests.support.fake_gitlab import FakeGitlab, note_hook
from tests.support.fake_slack import FakeSlack, app_mention

SLACK_TEAM = "T0UPGRADE"
SLACK_TOKEN = "xoxb-upgrade-test-token"
SLACK_BOT_USER = "U0BOT"
SLACK_CHANNEL = "C0UPGRADE"
SLACK_ASKER = "U0ASKER"
GITHUB_REPO = "acme/api"
GITHUB_INSTALLATION = 12
GITHUB_ASKER = "ada"
GITLAB_PROJECT = 7
GITLAB_ASKER = 11
MENTION = "@openhands"
ANSWER = "Fixed the flaky test."
CONVERSATION_URL = "https://agent.example.test/conversations/{conversation_id}"

# What every ReplyingProcessor row held, as the previous version wrote it.
REPLYING_STATE: dict[str, Any] = {
    "summary_instruction_event_id": None,
    "summary_instruction_timestamp": None,
    "summary_instruction_pending": False,
    "summary_requested_after": None,
    "turn_message": None,
    "turn_message_pending": False,
    "turn_message_after": None,
    "origin_delivery_id": "delivery-before-the-upgrade",
    "origin_received_at": 1700000000.5,
}


# -- the platforms, their fakes, and a callback row of each ------------------------------


@dataclass(frozen=True)
class Platform:
    """A platform's callback row as the previous version wrote it, and where its
    answers arrive."""

    processor_type: str
    processor: dict[str, Any]
    answers: Callable[[], list[str]]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.add_team(SLACK_TEAM, bot_token=SLACK_TOKEN, bot_user_id=SLACK_BOT_USER, bot_id="B0BOT")
        fake.add_user(SLACK_ASKER, name="ada", display_name="Ada")
        yield fake


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        fake.add_app(3, "relay-test")
        fake.add_installation(GITHUB_INSTALLATION, 3, account="acme", repositories=[GITHUB_REPO])
        fake.set_permission(GITHUB_REPO, GITHUB_ASKER, "write")
        fake.add_issue(GITHUB_REPO, 1, title="Flaky test", body="It fails.", user=GITHUB_ASKER)
        yield fake


@pytest.fixture
def gitlab() -> Iterator[FakeGitlab]:
    with FakeGitlab() as fake:
        fake.add_project(GITLAB_PROJECT, "acme/widgets")
        fake.add_user(GITLAB_ASKER, "ada")
        fake.set_access(GITLAB_PROJECT, GITLAB_ASKER, 30)
        fake.add_issue(GITLAB_PROJECT, 3, title="Flaky test", author_id=GITLAB_ASKER)
        yield fake


@pytest.fixture
def platforms(
    slack: FakeSlack, github: FakeGitHub, gitlab: FakeGitlab, receiver: FakeWebhookReceiver
) -> dict[str, Platform]:
    thread_ts = slack.add_message(SLACK_TEAM, SLACK_CHANNEL, user=SLACK_ASKER, text="fix it")
    asked = gitlab.add_note(GITLAB_PROJECT, "issue", 3, author_id=GITLAB_ASKER, body="fix it")
    return {
        "slack": Platform(
            "slack",
            {
                **REPLYING_STATE,
                "team_id": SLACK_TEAM,
                "enterprise_id": None,
                "channel": SLACK_CHANNEL,
                "thread_ts": thread_ts,
                "user": SLACK_ASKER,
                "trigger_ts": thread_ts,
                "ack_ts": None,
                "delivered_parts": 0,
            },
            lambda: [
                message["text"]
                for message in slack.thread(SLACK_CHANNEL, thread_ts)
                if message["ts"] != thread_ts
            ],
        ),
        "github": Platform(
            "github",
            {
                **REPLYING_STATE,
                "installation_id": GITHUB_INSTALLATION,
                "repository": GITHUB_REPO,
                "number": 1,
                "review_thread_id": None,
                "asker": GITHUB_ASKER,
                "ack_comment_id": None,
                "reply_attempted": False,
            },
            lambda: [comment["body"] for comment in github.comments(GITHUB_REPO, 1)],
        ),
        "gitlab": Platform(
            "gitlab",
            {
                **REPLYING_STATE,
                "project_id": GITLAB_PROJECT,
                "noteable": "issue",
                "iid": 3,
                "discussion_id": asked["discussion_id"],
                "note_id": asked["id"],
                "username": "ada",
                "ack_note_id": None,
                "reply_note_id": None,
            },
            lambda: [note["body"] for note in gitlab.bot_notes(GITLAB_PROJECT, "issue", 3)],
        ),
        "webhook": Platform(
            "webhook",
            {**REPLYING_STATE, "url": WEBHOOK_URL, "secret": WEBHOOK_SECRET},
            lambda: [sent.json()["summary"] for sent in receiver.received],
        ),
    }


# -- today's worker, with every handler the relay registers ------------------------------


@dataclass(frozen=True)
class Upgraded:
    context: ProcessorContext
    worker: Worker

    async def run_next(self, kind: str) -> Job:
        """Claim the next job, which must be of `kind`, and run it as the worker does;
        it must end done."""
        job = await self.context.queue.claim()
        assert job is not None, f"no job to run (expected {kind!r})"
        assert job.kind == kind, f"next job is {job.kind!r}, expected {kind!r}"
        await self.worker.run_job(job)
        ran = await self.context.queue.get(job.id)
        assert ran is not None and ran.status is JobStatus.DONE, ran
        return ran


@pytest.fixture
async def upgraded(
    store: Store,
    agent_server: FakeAgentServer,
    receiver: FakeWebhookReceiver,
    slack: FakeSlack,
    github: FakeGitHub,
    gitlab: FakeGitlab,
) -> AsyncIterator[Upgraded]:
    agent_server.final_response_text = ANSWER
    app = AppCredentials(
        app_id="3",
        slug="relay-test",
        private_key=github.app_by_slug("relay-test").private_key_pem,
        webhook_secret="unused",
    )
    box = SecretBox(None)
    async with (
        processor_context(
            store,
            agent_server,
            receiver,
            summary_mode=SummaryMode.FINAL_RESPONSE,
            conversation_url_template=CONVERSATION_URL,
        ) as plain,
        httpx.AsyncClient(timeout=10) as http,
    ):
        slack_api = SlackApi(slack.api_url, bot_token=SLACK_TOKEN)
        github_api = GithubApi(http, GithubAppSource(store, box, app), github.api_url)
        gitlab_api = GitlabApi(http, gitlab.url, GITLAB_TOKEN)
        context = dataclasses.replace(
            plain, platforms={"slack": slack_api, "github": github_api, "gitlab": gitlab_api}
        )
        queue = context.queue
        # As relay.app registers them: by today's kind names, which the stored rows'
        # kinds (literals below) must still be.
        handlers: dict[str, JobHandler] = job_handlers(context)
        turns = Turns(store, queue, context.conversation_url)
        handlers[SLACK_EVENT_JOB.name] = SlackEventJob(turns, slack_api).handle
        handlers[GITHUB_EVENT_JOB.name] = GithubEventJob(
            turns, box, github_api, mention=MENTION, trigger_label="openhands"
        ).handle
        handlers[GITLAB_EVENT_JOB.name] = GitlabEventJob(
            turns,
            gitlab_api,
            mention=MENTION,
            trigger_label="openhands",
        ).handle
        handlers[PRUNE_JOB.name] = Retention(store, queue, retention_days=30).handle
        yield Upgraded(context, Worker(queue, handlers))


# -- rows as the previous version wrote them ---------------------------------------------


async def queue_old_job(
    store: Store, kind: str, payload: dict[str, Any], *, key: str | None = None
) -> int:
    """A queued job whose payload is the JSON the previous version stored."""
    stamp = now()
    row = await store.fetch_one(
        "INSERT INTO jobs (kind, payload, job_key, status, attempts, max_attempts, run_after,"
        " created_at, updated_at) VALUES (:kind, :payload, :key, 'queued', 0, 12, :now, :now,"
        " :now) RETURNING id",
        {"kind": kind, "payload": json.dumps(payload), "key": key, "now": stamp},
    )
    assert row is not None
    return int(row["id"])


async def insert_old_callback(
    store: Store,
    conversation_id: str,
    platform: Platform,
    *,
    status: CallbackStatus = CallbackStatus.ACTIVE,
    **processor_state: Any,
) -> int:
    """A callback row holding the processor JSON the previous version stored."""
    stamp = now()
    row = await store.fetch_one(
        "INSERT INTO conversation_callbacks (conversation_id, status, processor_type,"
        " processor_json, status_reason, created_at, updated_at) VALUES (:conversation_id,"
        " :status, :processor_type, :processor_json, NULL, :now, :now) RETURNING id",
        {
            "conversation_id": conversation_id,
            "status": status.value,
            "processor_type": platform.processor_type,
            "processor_json": json.dumps({**platform.processor, **processor_state}),
            "now": stamp,
        },
    )
    assert row is not None
    return int(row["id"])


def finished_conversation(agent_server: FakeAgentServer) -> str:
    conversation_id = agent_server.add_conversation()
    agent_server.user_message(conversation_id, "Please fix the flaky test")
    agent_server.agent_finish(conversation_id, ANSWER)
    agent_server.status_change(conversation_id, "finished")
    return conversation_id


async def payloads_of(store: Store, kind: str) -> list[dict[str, Any]]:
    rows = await store.fetch_all(
        "SELECT payload FROM jobs WHERE kind = :kind ORDER BY id", {"kind": kind}
    )
    return [json.loads(row["payload"]) for row in rows]


PLATFORM_NAMES = ["slack", "github", "gitlab", "webhook"]


# -- callback.reply ----------------------------------------------------------------------


@pytest.mark.parametrize("name", PLATFORM_NAMES)
async def test_a_reply_queued_before_the_upgrade_is_delivered_by_its_callback_of_before(
    store: Store, upgraded: Upgraded, platforms: dict[str, Platform], name: str
) -> None:
    platform = platforms[name]
    conversation_id = uuid.uuid4().hex
    # The reply was queued as the callback closed.
    callback_id = await insert_old_callback(
        store, conversation_id, platform, status=CallbackStatus.COMPLETED
    )
    await queue_old_job(
        store,
        "callback.reply",
        {
            "callback_id": callback_id,
            "conversation_id": conversation_id,
            "status": "completed",
            "summary": ANSWER,
            "url": CONVERSATION_URL.format(conversation_id=conversation_id),
            "pull_request": None,
            "delivery_id": "0123456789abcdef0123456789abcdef",
            "origin_delivery_id": "delivery-before-the-upgrade",
            "stopped_at": 1700000100.25,
        },
        key=f"reply:{conversation_id}",
    )

    await upgraded.run_next("callback.reply")

    [answer] = platform.answers()
    assert ANSWER in answer
    callback = await get_callback(store, callback_id)
    assert callback is not None and callback.status is CallbackStatus.COMPLETED


# -- agent.state_changed -----------------------------------------------------------------


async def test_a_state_change_queued_before_the_upgrade_answers_every_callback_of_before(
    store: Store,
    upgraded: Upgraded,
    agent_server: FakeAgentServer,
    platforms: dict[str, Platform],
) -> None:
    conversation_id = finished_conversation(agent_server)
    callbacks = {
        name: await insert_old_callback(store, conversation_id, platforms[name])
        for name in PLATFORM_NAMES
    }
    await queue_old_job(
        store,
        "agent.state_changed",
        {
            "observation": {
                "conversation_id": conversation_id,
                "agent_state": "finished",
                "reason": "",
                "event_id": "7c6a1d2e-0000-4000-8000-000000000001",
                "timestamp": "2026-01-01T12:00:00.021",
            }
        },
        key=conversation_id,
    )

    await upgraded.run_next("agent.state_changed")
    for _ in PLATFORM_NAMES:
        await upgraded.run_next("callback.reply")

    for name, callback_id in callbacks.items():
        [answer] = platforms[name].answers()
        assert ANSWER in answer, name
        callback = await get_callback(store, callback_id)
        assert callback is not None and callback.status is CallbackStatus.COMPLETED, name


async def test_a_state_change_for_one_callback_runs_only_that_one(
    store: Store,
    upgraded: Upgraded,
    agent_server: FakeAgentServer,
    platforms: dict[str, Platform],
) -> None:
    """Versions before callback.catch_up caught a new callback up with a state change
    naming it (and stored the observation's received_at, empty)."""
    conversation_id = finished_conversation(agent_server)
    other = await insert_old_callback(store, conversation_id, platforms["slack"])
    caught_up = await insert_old_callback(store, conversation_id, platforms["webhook"])
    await queue_old_job(
        store,
        "agent.state_changed",
        {
            "observation": {
                "conversation_id": conversation_id,
                "agent_state": "finished",
                "reason": "",
                "event_id": f"catch-up-{caught_up}",
                "timestamp": None,
                "received_at": None,
            },
            "callback_id": caught_up,
        },
        key=conversation_id,
    )

    await upgraded.run_next("agent.state_changed")
    await upgraded.run_next("callback.reply")

    assert [ANSWER in answer for answer in platforms["webhook"].answers()] == [True]
    assert platforms["slack"].answers() == []
    untouched = await get_callback(store, other)
    assert untouched is not None and untouched.status is CallbackStatus.ACTIVE


# -- callback.catch_up and conversation.message ------------------------------------------


async def test_a_catch_up_queued_before_the_upgrade_answers_its_callback(
    store: Store,
    upgraded: Upgraded,
    agent_server: FakeAgentServer,
    platforms: dict[str, Platform],
) -> None:
    conversation_id = finished_conversation(agent_server)
    callback_id = await insert_old_callback(store, conversation_id, platforms["webhook"])
    await queue_old_job(
        store, "callback.catch_up", {"callback_id": callback_id}, key=conversation_id
    )

    await upgraded.run_next("callback.catch_up")
    await upgraded.run_next("callback.reply")

    [answer] = platforms["webhook"].answers()
    assert answer == ANSWER


@pytest.mark.parametrize("name", PLATFORM_NAMES)
async def test_a_follow_up_queued_before_the_upgrade_sends_its_message(
    store: Store,
    upgraded: Upgraded,
    agent_server: FakeAgentServer,
    platforms: dict[str, Platform],
    name: str,
) -> None:
    conversation_id = finished_conversation(agent_server)
    callback_id = await insert_old_callback(
        store, conversation_id, platforms[name], turn_message="And the other flaky test?"
    )
    await queue_old_job(
        store, "conversation.message", {"callback_id": callback_id}, key=conversation_id
    )

    await upgraded.run_next("conversation.message")

    [sent] = agent_server.sent_messages(conversation_id)
    assert sent.body["content"] == [{"type": "text", "text": "And the other flaky test?"}]
    callback = await get_callback(store, callback_id)
    assert callback is not None and callback.get_processor().turn_message is None


# -- conversation.start ------------------------------------------------------------------


@pytest.mark.parametrize(
    "mention",
    [
        pytest.param({}, id="api"),
        pytest.param(
            {
                "platform": "slack",
                "delivery_id": "Ev0BEFORE",
                "callback_id": 1,
                "received_at": 1700000000.5,
            },
            id="mention",
        ),
    ],
)
async def test_a_start_queued_before_the_upgrade_starts_its_conversation(
    store: Store, upgraded: Upgraded, agent_server: FakeAgentServer, mention: dict[str, Any]
) -> None:
    conversation_id = uuid.uuid4().hex
    await queue_old_job(
        store,
        "conversation.start",
        {
            "conversation_id": conversation_id,
            "prompt": "Fix the flaky test",
            "tags": {"source": "api"},
            **mention,
        },
        key=conversation_id,
    )

    await upgraded.run_next("conversation.start")

    assert list(agent_server.conversations) == [conversation_id]
    [start] = agent_server.calls_to("POST", "/api/conversations")
    assert start.body["initial_message"]["content"] == [
        {"type": "text", "text": "Fix the flaky test"}
    ]
    assert start.body["tags"] == {"source": "api"}


# -- the platforms' event jobs -----------------------------------------------------------


async def start_of_the_mention(
    store: Store, upgraded: Upgraded, agent_server: FakeAgentServer, platform: str
) -> None:
    """The event job recorded a turn: its start job names where it came from, and runs."""
    [start] = await payloads_of(store, "conversation.start")
    assert (start["platform"], start["delivery_id"]) == (platform, "delivery-before-the-upgrade")
    await upgraded.run_next("conversation.start")
    assert list(agent_server.conversations) == [start["conversation_id"]]


async def test_a_slack_event_queued_before_the_upgrade_becomes_a_turn(
    store: Store, upgraded: Upgraded, agent_server: FakeAgentServer, slack: FakeSlack
) -> None:
    text = f"<@{SLACK_BOT_USER}> fix the flaky test in acme/api"
    ts = slack.add_message(SLACK_TEAM, SLACK_CHANNEL, user=SLACK_ASKER, text=text)
    event = app_mention(user=SLACK_ASKER, text=text, channel=SLACK_CHANNEL, ts=ts)
    await queue_old_job(
        store,
        "slack.event",
        {
            "event_id": "delivery-before-the-upgrade",
            "team_id": SLACK_TEAM,
            "enterprise_id": None,
            "bot_user_id": SLACK_BOT_USER,
            "event": {"team": SLACK_TEAM, **event},
        },
        key=f"slack:{SLACK_TEAM}:{SLACK_CHANNEL}:{ts}",
    )

    await upgraded.run_next("slack.event")

    assert "eyes" in slack.reactions(SLACK_CHANNEL, ts)
    await start_of_the_mention(store, upgraded, agent_server, "slack")


async def test_a_github_event_queued_before_the_upgrade_becomes_a_turn(
    store: Store, upgraded: Upgraded, agent_server: FakeAgentServer, github: FakeGitHub
) -> None:
    comment = github.add_comment(GITHUB_REPO, 1, f"{MENTION} fix it", user=GITHUB_ASKER)
    body = github_webhooks.issue_comment(
        GITHUB_REPO, GITHUB_INSTALLATION, comment, sender=GITHUB_ASKER
    )
    await queue_old_job(
        store,
        "github.event",
        {"delivery_id": "delivery-before-the-upgrade", "event": "issue_comment", "payload": body},
        key=f"github:{GITHUB_REPO}#1",
    )

    await upgraded.run_next("github.event")

    assert "eyes" in github.reactions("issue_comment", GITHUB_REPO, comment["id"])
    await start_of_the_mention(store, upgraded, agent_server, "github")


async def test_a_gitlab_event_queued_before_the_upgrade_becomes_a_turn(
    store: Store, upgraded: Upgraded, agent_server: FakeAgentServer, gitlab: FakeGitlab
) -> None:
    note = gitlab.add_note(
        GITLAB_PROJECT, "issue", 3, author_id=GITLAB_ASKER, body=f"{MENTION} fix it"
    )
    await queue_old_job(
        store,
        "gitlab.event",
        {
            "delivery_id": "delivery-before-the-upgrade",
            "event": "Note Hook",
            "payload": note_hook(gitlab, note),
        },
        key=f"gitlab:{GITLAB_PROJECT}:issue:3",
    )

    await upgraded.run_next("gitlab.event")

    assert gitlab.note_awards(note["id"]) != []
    await start_of_the_mention(store, upgraded, agent_server, "gitlab")


# -- maintenance.prune -------------------------------------------------------------------


async def test_a_prune_run_queued_before_the_upgrade_runs_and_queues_the_next(
    store: Store, upgraded: Upgraded
) -> None:
    await queue_old_job(store, "maintenance.prune", {"period": 473_000})

    hour_before = int(now() // 3600)
    await upgraded.run_next("maintenance.prune")
    hour_after = int(now() // 3600)

    [queued] = await store.fetch_all(
        "SELECT payload FROM jobs WHERE kind = 'maintenance.prune' AND status = 'queued'"
    )
    # The next run is the next hour's (the stored period is long past).
    assert json.loads(queued["payload"])["period"] in (hour_before + 1, hour_after + 1)
