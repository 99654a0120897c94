"""A click on the repository picker, against the fake Slack, on SQLite and PostgreSQL:
only the asker's pick counts, and it queues the mention once."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from bots.slack.api import SlackApi, SlackTeam
from bots.slack.blocks import NO_REPOSITORY_ACTION, PICK_ACTION
from bots.slack.interactions import SlackInteraction
from bots.slack.job import SLACK_EVENT_JOB, SlackEventJob
from bots.slack.picks import OVERTAKEN_TEXT, RepositoryPicks
from bots.turns import Turns
from db.conversation_links import ConversationLink, save_link
from db.jobs import JobQueue
from db.repository_choices import choice_at
from db.store import Store
from tests.support.fake_agent_api import jobs_of_kind
from tests.support.fake_host import RecordingHost
from tests.support.fake_slack import FakeSlack, app_mention
from tests.support.leased_jobs import leased_job

TEAM = "T0ACME"
BOT_TOKEN = "xoxb-test-token"
BOT_USER = "U0BOT"
BOT_ID = "B0BOT"
CHANNEL = "C0BUILDS"
ASKER = "U0ADA"
OTHER = "U0OTTO"
_job_ids = itertools.count(1)


def click_by(user: str, value: str | None, message_ts: str, thread_ts: str) -> SlackInteraction:
    """A click on the picker, as the `slack.interaction` job hands it over."""
    return SlackInteraction(
        team_id=TEAM,
        user=user,
        action_id=NO_REPOSITORY_ACTION if value == "none" else PICK_ACTION,
        value=value,
        channel=CHANNEL,
        message_ts=message_ts,
        thread_ts=thread_ts,
        delivery_id=f"click-{next(_job_ids)}",
    )


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.add_team(TEAM, bot_token=BOT_TOKEN, bot_user_id=BOT_USER, bot_id=BOT_ID)
        fake.add_user(ASKER, name="ada", display_name="Ada")
        fake.add_user(OTHER, name="otto")
        yield fake


@pytest.fixture
def mentions(store: Store, slack: FakeSlack) -> SlackEventJob:
    host = RecordingHost(repositories={"acme/api": "42", "acme/web": "43"})
    turns = Turns(store, JobQueue(store), conversation_url=lambda cid: None, hosts={"github": host})
    return SlackEventJob(turns, SlackApi(slack.api_url, bot_token=BOT_TOKEN))


@pytest.fixture
def picks(mentions: SlackEventJob) -> RepositoryPicks:
    return RepositoryPicks(mentions.repositories, mentions.turns.queue)


@pytest.fixture
async def team(slack: FakeSlack) -> SlackTeam:
    return await SlackApi(slack.api_url, bot_token=BOT_TOKEN).team(TEAM)


async def picker(mentions: SlackEventJob, slack: FakeSlack) -> tuple[str, dict[str, Any]]:
    """A mention naming no repository, handled: its ts and its picker message."""
    text = f"<@{BOT_USER}> why is the build red?"
    ts = slack.add_message(TEAM, CHANNEL, user=ASKER, text=text)
    number = next(_job_ids)
    event = app_mention(user=ASKER, text=text, channel=CHANNEL, ts=ts)
    payload = {"event_id": f"Ev{number:08d}", "team_id": TEAM, "event": {"team": TEAM, **event}}
    await mentions.handle(leased_job(number, SLACK_EVENT_JOB.name, payload))
    [message] = [m for m in slack.thread(CHANNEL, ts) if m.get("bot_id") == BOT_ID]
    return ts, message


async def test_the_askers_pick_queues_the_mention_with_it_and_settles_the_picker(
    mentions: SlackEventJob, picks: RepositoryPicks, slack: FakeSlack, store: Store, team: SlackTeam
) -> None:
    ts, message = await picker(mentions, slack)

    await picks.on_pick(click_by(ASKER, "github:acme/web", message["ts"], ts), team)

    [queued] = await jobs_of_kind(store, SLACK_EVENT_JOB)
    assert queued["payload"]["repository_choice"] == "github:acme/web"
    assert queued["payload"]["event"]["ts"] == ts
    assert queued["job_key"] == f"slack:{TEAM}:{CHANNEL}:{ts}"
    [settled] = [m for m in slack.thread(CHANNEL, ts) if m["ts"] == message["ts"]]
    assert settled["text"] == f"<@{ASKER}> picked acme/web."
    assert [b["type"] for b in settled["blocks"]] == ["section"]

    # The same click again, a second pick, the button: nothing more.
    await picks.on_pick(click_by(ASKER, "github:acme/web", message["ts"], ts), team)
    await picks.on_pick(click_by(ASKER, "github:acme/api", message["ts"], ts), team)
    await picks.on_no_repository(click_by(ASKER, "none", message["ts"], ts), team)
    assert len(await jobs_of_kind(store, SLACK_EVENT_JOB)) == 1
    [settled] = [m for m in slack.thread(CHANNEL, ts) if m["ts"] == message["ts"]]
    assert settled["text"] == f"<@{ASKER}> picked acme/web."


async def test_someone_elses_pick_is_refused_privately_and_changes_nothing(
    mentions: SlackEventJob, picks: RepositoryPicks, slack: FakeSlack, store: Store, team: SlackTeam
) -> None:
    ts, message = await picker(mentions, slack)

    await picks.on_pick(click_by(OTHER, "github:acme/api", message["ts"], ts), team)

    [refusal] = slack.ephemerals()
    assert (refusal["user"], refusal["channel"], refusal["thread_ts"]) == (OTHER, CHANNEL, ts)
    assert (
        refusal["text"] == f"Only <@{ASKER}>, who asked, can pick the repository for this request."
    )
    assert await jobs_of_kind(store, SLACK_EVENT_JOB) == []
    pending = await choice_at(store, "slack", f"{TEAM}:{CHANNEL}:{message['ts']}")
    assert pending is not None and pending.chosen is None
    assert slack.calls("chat.update") == []


async def test_no_repository_queues_the_mention_without_one(
    mentions: SlackEventJob, picks: RepositoryPicks, slack: FakeSlack, store: Store, team: SlackTeam
) -> None:
    ts, message = await picker(mentions, slack)

    await picks.on_no_repository(click_by(ASKER, "none", message["ts"], ts), team)

    [queued] = await jobs_of_kind(store, SLACK_EVENT_JOB)
    assert queued["payload"]["repository_choice"] == ""
    [settled] = [m for m in slack.thread(CHANNEL, ts) if m["ts"] == message["ts"]]
    assert settled["text"] == f"<@{ASKER}> picked no repository: working without a checkout."


async def test_a_value_that_was_not_offered_changes_nothing(
    mentions: SlackEventJob, picks: RepositoryPicks, slack: FakeSlack, store: Store, team: SlackTeam
) -> None:
    ts, message = await picker(mentions, slack)

    await picks.on_pick(click_by(ASKER, "bitbucket:acme/api", message["ts"], ts), team)
    await picks.on_pick(click_by(ASKER, None, message["ts"], ts), team)
    await picks.on_pick(click_by(ASKER, "github:acme/api", "1.000", ts), team)

    assert await jobs_of_kind(store, SLACK_EVENT_JOB) == []


async def test_a_pick_after_a_later_mention_started_the_thread_s_conversation_starts_nothing(
    mentions: SlackEventJob, picks: RepositoryPicks, slack: FakeSlack, store: Store, team: SlackTeam
) -> None:
    ts, message = await picker(mentions, slack)
    # The asker mentioned again, naming a repository: that started the conversation.
    await save_link(store, ConversationLink("slack", f"{TEAM}:{CHANNEL}:{ts}", "c" * 32, ts))

    await picks.on_pick(click_by(ASKER, "github:acme/web", message["ts"], ts), team)

    assert await jobs_of_kind(store, SLACK_EVENT_JOB) == []
    [settled] = [m for m in slack.thread(CHANNEL, ts) if m["ts"] == message["ts"]]
    assert settled["text"] == OVERTAKEN_TEXT
    assert [b["type"] for b in settled["blocks"]] == ["section"]
