"""The `slack.event` job against the fake Slack, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from agent.events import START_JOB, TURN_MESSAGE_JOB
from bots.slack.api import SlackApi
from bots.slack.job import ACK_EVENT_TYPE, SLACK_EVENT_JOB, USAGE_HINT, SlackEventJob
from bots.slack.reply import SlackCallbackProcessor
from bots.turns import Turns
from db.callbacks import list_callbacks
from db.conversation_links import find_link
from db.job_kinds import Job
from db.jobs import JobQueue
from db.metrics import REGISTRY
from db.store import Store
from tests.support.fake_agent_api import jobs_of_kind
from tests.support.fake_host import RecordingHost
from tests.support.fake_slack import FakeSlack, app_mention, im_message
from tests.support.leased_jobs import leased_job

TEAM = "T0ACME"
BOT_TOKEN = "xoxb-test-token"
BOT_USER = "U0BOT"
BOT_ID = "B0BOT"
CHANNEL = "C0BUILDS"
ASKER = "U0ADA"
OTHER = "U0OTTO"
CONVERSATION_URL = "https://agent.example.test/conversations/{conversation_id}"
_job_ids = itertools.count(1)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.add_team(TEAM, bot_token=BOT_TOKEN, bot_user_id=BOT_USER, bot_id=BOT_ID)
        fake.add_user(ASKER, name="ada", display_name="Ada")
        fake.add_user(OTHER, name="otto", real_name="Otto Lind")
        yield fake


@pytest.fixture
def mentions(store: Store, slack: FakeSlack) -> SlackEventJob:
    turns = Turns(
        store,
        JobQueue(store),
        conversation_url=lambda cid: CONVERSATION_URL.format(conversation_id=cid),
    )
    return SlackEventJob(turns, SlackApi(slack.api_url, bot_token=BOT_TOKEN))


def job_of(event: dict[str, Any], event_id: str | None = None) -> Job:
    number = next(_job_ids)
    return leased_job(
        number,
        SLACK_EVENT_JOB.name,
        {
            "event_id": event_id or f"Ev{number:08d}",
            "team_id": TEAM,
            "bot_user_id": BOT_USER,
            "event": {"team": TEAM, **event},
        },
    )


def mention_job(
    slack: FakeSlack, text: str, *, thread_ts: str | None = None, user: str = ASKER
) -> tuple[Job, str]:
    """A message posted in the channel (or a thread of it) and the job of its app_mention;
    the message's ts."""
    ts = slack.add_message(TEAM, CHANNEL, user=user, text=text, thread_ts=thread_ts)
    event = app_mention(user=user, text=text, channel=CHANNEL, ts=ts, thread_ts=thread_ts)
    return job_of(event), ts


def bot_replies(slack: FakeSlack, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.thread(CHANNEL, thread_ts) if m.get("bot_id") == BOT_ID]


def mentions_counted(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "agent_relay_mentions_total", {"platform": "slack", "outcome": outcome}
    )
    return value or 0.0


async def test_a_mention_is_acknowledged_and_starts_a_conversation(
    mentions: SlackEventJob, slack: FakeSlack, store: Store
) -> None:
    parent = slack.add_message(TEAM, CHANNEL, user=OTHER, text="The nightly build is red.")
    slack.add_message(TEAM, CHANNEL, user=OTHER, text="Seen it twice.", thread_ts=parent)
    job, ts = mention_job(
        slack, f"<@{BOT_USER}> why does it fail? ask <@{OTHER}> too", thread_ts=parent
    )
    accepted = mentions_counted("accepted")

    await mentions.handle(job)

    assert slack.reactions(CHANNEL, ts) == {"eyes"}
    [callback] = await list_callbacks(store)
    conversation_id = callback.conversation_id
    [ack] = bot_replies(slack, parent)
    assert ack["text"] == (
        f"On it! Follow along <{CONVERSATION_URL.format(conversation_id=conversation_id)}|here>;"
        " I'll answer in this thread."
    )
    assert ack["metadata"] == {"event_type": ACK_EVENT_TYPE, "event_payload": {"trigger_ts": ts}}
    processor = callback.get_processor()
    assert processor == SlackCallbackProcessor(
        team_id=TEAM,
        enterprise_id=None,
        channel=CHANNEL,
        thread_ts=parent,
        user=ASKER,
        trigger_ts=ts,
        ack_ts=ack["ts"],
        origin_delivery_id=job.payload["event_id"],
        origin_received_at=0.0,
    )
    assert BOT_TOKEN not in callback.processor_json
    [start] = await jobs_of_kind(store, START_JOB)
    assert start["payload"]["conversation_id"] == conversation_id
    assert start["payload"]["callback_id"] == callback.id
    assert start["payload"]["platform"] == "slack"
    assert start["payload"]["delivery_id"] == job.payload["event_id"]
    assert start["payload"]["prompt"] == (
        f"Ada asked you in Slack channel {CHANNEL}:\n\n"
        "why does it fail? ask @Otto Lind too\n\n"
        "The thread so far, oldest first:\n"
        "Otto Lind: The nightly build is red.\n"
        "Otto Lind: Seen it twice.\n\n"
        "Your answer will be posted in that Slack thread."
    )
    assert start["payload"]["tags"] == {
        "platform": "slack",
        "team": TEAM,
        "channel": CHANNEL,
        "thread": parent,
    }
    link = await find_link(store, "slack", f"{TEAM}:{CHANNEL}:{parent}")
    assert link is not None
    assert (link.conversation_id, link.cursor) == (conversation_id, ts)
    assert mentions_counted("accepted") == accepted + 1


async def test_without_a_conversation_url_the_acknowledgement_has_no_link(
    mentions: SlackEventJob, slack: FakeSlack
) -> None:
    job, ts = mention_job(slack, f"<@{BOT_USER}> summarise the incident")

    turns = dataclasses.replace(mentions.turns, conversation_url=lambda _: None)
    await dataclasses.replace(mentions, turns=turns).handle(job)

    [ack] = bot_replies(slack, ts)
    assert ack["text"] == "On it! I'll answer in this thread."


async def test_a_retried_job_acknowledges_and_records_once(
    mentions: SlackEventJob, slack: FakeSlack, store: Store
) -> None:
    job, ts = mention_job(slack, f"<@{BOT_USER}> bump the version")
    accepted = mentions_counted("accepted")

    await mentions.handle(job)
    await mentions.handle(job)

    [ack] = bot_replies(slack, ts)
    assert slack.reactions(CHANNEL, ts) == {"eyes"}
    [callback] = await list_callbacks(store)
    assert callback.get_processor().ack_ts == ack["ts"]
    assert len(await jobs_of_kind(store, START_JOB)) == 1
    assert mentions_counted("accepted") == accepted + 1


async def test_a_follow_up_continues_the_conversation_with_what_is_new(
    mentions: SlackEventJob, slack: FakeSlack, store: Store
) -> None:
    parent = slack.add_message(TEAM, CHANNEL, user=OTHER, text="Deploys are slow.")
    first, _ = mention_job(slack, f"<@{BOT_USER}> find out why", thread_ts=parent)
    await mentions.handle(first)
    slack.add_message(TEAM, CHANNEL, user=OTHER, text="It is the cache.", thread_ts=parent)

    follow_up, ts = mention_job(slack, f"<@{BOT_USER}> now fix it", thread_ts=parent)
    await mentions.handle(follow_up)

    second, first_callback = await list_callbacks(store)
    assert second.conversation_id == first_callback.conversation_id
    [first_ack, again] = bot_replies(slack, parent)
    assert first_ack["text"].startswith("On it! Follow along")
    assert again["text"].startswith("On it, continuing our conversation. Follow along <")
    assert slack.reactions(CHANNEL, ts) == {"eyes"}
    assert len(await jobs_of_kind(store, START_JOB)) == 1
    [message_job] = await jobs_of_kind(store, TURN_MESSAGE_JOB)
    assert message_job["payload"] == {"callback_id": second.id}
    processor = second.get_processor()
    assert (processor.trigger_ts, processor.ack_ts) == (ts, again["ts"])
    assert processor.turn_message == (
        "Ada followed up in the Slack thread:\n\nnow fix it\n\n"
        "Messages in the thread since your last answer:\nOtto Lind: It is the cache."
    )
    link = await find_link(store, "slack", f"{TEAM}:{CHANNEL}:{parent}")
    assert link is not None
    assert (link.conversation_id, link.cursor) == (first_callback.conversation_id, ts)


async def test_a_mention_without_a_request_gets_the_usage_hint_and_starts_nothing(
    mentions: SlackEventJob, slack: FakeSlack, store: Store
) -> None:
    job, ts = mention_job(slack, f"<@{BOT_USER}>  ")
    refused = mentions_counted("no_request")

    await mentions.handle(job)

    [hint] = bot_replies(slack, ts)
    assert hint["text"] == USAGE_HINT
    assert slack.reactions(CHANNEL, ts) == set()
    assert await list_callbacks(store) == []
    assert await store.fetch_all("SELECT id FROM jobs") == []
    assert await find_link(store, "slack", f"{TEAM}:{CHANNEL}:{ts}") is None
    assert mentions_counted("no_request") == refused + 1


@pytest.mark.parametrize(
    "event",
    [
        {
            "type": "message",
            "channel_type": "im",
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "text": "On it!",
        },
        {"type": "app_mention", "user": BOT_USER, "text": f"<@{BOT_USER}> again"},
        {"type": "message", "subtype": "message_changed", "user": ASKER, "text": "edited"},
        {"type": "message", "channel_type": "channel", "user": ASKER, "text": "hello all"},
    ],
    ids=["own-dm-message", "own-mention", "an-edit", "a-channel-message"],
)
async def test_an_event_that_asks_nothing_does_nothing(
    mentions: SlackEventJob, slack: FakeSlack, store: Store, event: dict[str, Any]
) -> None:
    ts = slack.add_message(TEAM, CHANNEL, user=str(event["user"]), text=str(event["text"]))

    await mentions.handle(job_of({**event, "channel": CHANNEL, "ts": ts, "event_ts": ts}))

    assert slack.calls() == []
    assert await list_callbacks(store) == []
    assert await store.fetch_all("SELECT id FROM jobs") == []


@pytest.mark.parametrize(
    ("text", "default", "repository"),
    [
        ("why does the nightly build fail? acme/api", None, "acme/api"),
        ("look at https://github.com/acme/web/pull/3.", "acme/api", "acme/web"),
        ("why does the nightly build fail?", "acme/api", "acme/api"),
        ("why does the nightly build fail?", None, None),
    ],
    ids=["named", "url-over-default", "default", "none"],
)
async def test_the_repository_named_or_configured_reaches_the_prompt_and_tags(
    mentions: SlackEventJob,
    slack: FakeSlack,
    store: Store,
    text: str,
    default: str | None,
    repository: str | None,
) -> None:
    job, _ = mention_job(slack, f"<@{BOT_USER}> {text}")

    await dataclasses.replace(mentions, default_repository=default).handle(job)

    [start] = await jobs_of_kind(store, START_JOB)
    prompt, tags = start["payload"]["prompt"], start["payload"]["tags"]
    # The repository also names the conversation's working directory.
    assert start["payload"]["repository"] == repository
    if repository is None:
        assert "Repository:" not in prompt
        assert "repository" not in tags
    else:
        assert f"\n\nRepository: {repository}\n\n" in prompt
        assert tags["repository"] == repository


async def test_a_direct_message_needs_no_mention(
    mentions: SlackEventJob, slack: FakeSlack, store: Store
) -> None:
    dm = "D0ADA"
    ts = slack.add_message(TEAM, dm, user=ASKER, text="what changed in acme/api today?")
    event = im_message(user=ASKER, text="what changed in acme/api today?", channel=dm, ts=ts)

    await mentions.handle(job_of(event))

    assert slack.reactions(dm, ts) == {"eyes"}
    [ack] = [m for m in slack.thread(dm, ts) if m.get("bot_id") == BOT_ID]
    assert ack["text"].startswith("On it! Follow along <")
    [callback] = await list_callbacks(store)
    assert callback.get_processor().channel == dm
    [start] = await jobs_of_kind(store, START_JOB)
    assert start["payload"]["prompt"].startswith(
        "Ada asked you in a direct message:\n\nwhat changed in acme/api today?"
    )


async def test_a_repository_a_host_serves_is_checked_out_with_the_asker_as_co_author(
    mentions: SlackEventJob, slack: FakeSlack, store: Store
) -> None:
    slack.add_user("U0EVE", name="eve", display_name="Eve", email="eve@example.test")
    host = RecordingHost()
    turns = dataclasses.replace(mentions.turns, hosts={"github": host})
    job, ts = mention_job(slack, f"<@{BOT_USER}> fix the parser in acme/api", user="U0EVE")

    await dataclasses.replace(mentions, turns=turns).handle(job)

    [start] = await jobs_of_kind(store, START_JOB)
    workspace = start["payload"]["workspace"]
    assert (workspace["repository"], workspace["host"], workspace["locator"]) == (
        "acme/api",
        "github",
        "42",
    )
    assert workspace["requester"] == {
        "login": "Eve",
        "platform": "slack",
        "name": "Eve",
        "email": "eve@example.test",
    }
    [ack] = bot_replies(slack, ts)
    assert "without a checkout" not in ack["text"]


async def test_a_repository_no_host_serves_is_said_in_the_acknowledgement(
    mentions: SlackEventJob, slack: FakeSlack, store: Store
) -> None:
    turns = dataclasses.replace(mentions.turns, hosts={"github": RecordingHost()})
    job, ts = mention_job(slack, f"<@{BOT_USER}> fix the parser in acme/elsewhere")

    await dataclasses.replace(mentions, turns=turns).handle(job)

    [start] = await jobs_of_kind(store, START_JOB)
    assert start["payload"]["workspace"] is None
    assert start["payload"]["repository"] == "acme/elsewhere"
    [ack] = bot_replies(slack, ts)
    assert "I can't reach acme/elsewhere from here" in ack["text"]
    assert "work without a checkout" in ack["text"]
