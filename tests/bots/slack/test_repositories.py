"""Choosing a Slack mention's repository: the `use` command, the channel's default,
DEFAULT_REPOSITORY and the picker, through the `slack.event` job against the fake
Slack, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from agent.events import START_JOB
from bots.slack.api import SlackApi
from bots.slack.blocks import NO_REPOSITORY_ACTION, PICK_ACTION
from bots.slack.job import SLACK_EVENT_JOB, SlackEventJob
from bots.slack.repositories import (
    MAX_OPTIONS,
    PICKER_EVENT_TYPE,
    RepositoryChoice,
    UseCommand,
    parse_choice,
    picker_blocks,
    use_command,
)
from bots.turns import Turns
from db.conversation_links import find_link
from db.job_kinds import Job
from db.jobs import JobQueue
from db.repository_choices import channel_repository, get_choice
from db.store import Store
from processors.workspace import HostedRepository
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
_job_ids = itertools.count(1)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("use acme/api", UseCommand("acme/api")),
        ("Use acme/api.", UseCommand("acme/api")),
        ("use `acme/api`", UseCommand("acme/api")),
        ("use <https://github.com/acme/api>", UseCommand("acme/api")),
        (
            "use <https://gitlab.example.test/group/sub/proj|group/sub/proj>",
            UseCommand("group/sub/proj"),
        ),
        ("use group/sub/proj", UseCommand("group/sub/proj")),
        ("use acme/api.git", UseCommand("acme/api")),
        ("use 1/2", UseCommand(None, invalid=True)),
        ("use none", UseCommand(None)),
        ("use no repository", UseCommand(None)),
        ("use banana", UseCommand(None, invalid=True)),
        ("use the retry helper in parser.py", None),
        ("fix the parser in acme/api", None),
    ],
)
def test_use_command(text: str, command: UseCommand | None) -> None:
    assert use_command(text) == command


def test_a_picked_value_must_name_a_configured_host_and_a_repository() -> None:
    hosts = {"github": object(), "gitlab": object()}
    assert parse_choice("github:acme/api", hosts) == RepositoryChoice("acme/api", "github")
    assert parse_choice("gitlab:g/s/p", hosts) == RepositoryChoice("g/s/p", "gitlab")
    assert parse_choice("", hosts) == RepositoryChoice(None)
    assert parse_choice("bitbucket:acme/api", hosts) is None
    assert parse_choice("github:not a repo", hosts) is None


def test_up_to_a_hundred_repositories_are_a_menu_more_are_typed_into() -> None:
    few = [HostedRepository("github", f"acme/r{n}") for n in range(MAX_OPTIONS)]
    [_, actions] = picker_blocks(ASKER, few)
    menu, button = actions["elements"]
    assert (menu["type"], menu["action_id"]) == ("static_select", PICK_ACTION)
    assert [o["value"] for o in menu["options"]][:2] == ["github:acme/r0", "github:acme/r1"]
    # One platform: the options need not say which.
    assert "description" not in menu["options"][0]
    assert (button["action_id"], button["text"]["text"]) == (NO_REPOSITORY_ACTION, "No repository")

    many = [*few, HostedRepository("gitlab", "group/more")]
    [_, actions] = picker_blocks(ASKER, many)
    menu, _ = actions["elements"]
    assert (menu["type"], menu["action_id"]) == ("external_select", PICK_ACTION)
    assert "options" not in menu


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.add_team(TEAM, bot_token=BOT_TOKEN, bot_user_id=BOT_USER, bot_id=BOT_ID)
        fake.add_user(ASKER, name="ada", display_name="Ada")
        fake.add_user("U0OTTO", name="otto")
        yield fake


@pytest.fixture
def host() -> RecordingHost:
    return RecordingHost(repositories={"acme/api": "42", "acme/web": "43"})


@pytest.fixture
def mentions(store: Store, slack: FakeSlack, host: RecordingHost) -> SlackEventJob:
    turns = Turns(store, JobQueue(store), conversation_url=lambda cid: None, hosts={"github": host})
    return SlackEventJob(turns, SlackApi(slack.api_url, bot_token=BOT_TOKEN))


def mention_job(
    slack: FakeSlack, text: str, *, channel: str = CHANNEL, user: str = ASKER
) -> tuple[Job, str]:
    full = f"<@{BOT_USER}> {text}"
    ts = slack.add_message(TEAM, channel, user=user, text=full)
    number = next(_job_ids)
    event = app_mention(user=user, text=full, channel=channel, ts=ts)
    job = leased_job(
        number,
        SLACK_EVENT_JOB.name,
        {
            "event_id": f"Ev{number:08d}",
            "team_id": TEAM,
            "bot_user_id": BOT_USER,
            "event": {"team": TEAM, **event},
        },
    )
    return job, ts


def bot_replies(slack: FakeSlack, ts: str, channel: str = CHANNEL) -> list[dict[str, Any]]:
    return [m for m in slack.thread(channel, ts) if m.get("bot_id") == BOT_ID]


async def test_use_sets_the_channel_default_says_so_and_starts_nothing(
    mentions: SlackEventJob, slack: FakeSlack, store: Store
) -> None:
    job, ts = mention_job(slack, "use acme/api")

    await mentions.handle(job)
    await mentions.handle(job)  # a retry says it once

    assert await channel_repository(store, "slack", f"{TEAM}:{CHANNEL}") == "acme/api"
    [reply] = bot_replies(slack, ts)
    assert reply["text"].startswith("This channel now works on acme/api.")
    assert await jobs_of_kind(store, START_JOB) == []
    assert await find_link(store, "slack", f"{TEAM}:{CHANNEL}:{ts}") is None

    job, ts = mention_job(slack, "use none")
    await mentions.handle(job)
    assert await channel_repository(store, "slack", f"{TEAM}:{CHANNEL}") is None
    [reply] = bot_replies(slack, ts)
    assert reply["text"].startswith("This channel has no repository now.")


async def test_use_of_a_repository_no_host_reaches_is_kept_and_says_so(
    mentions: SlackEventJob, slack: FakeSlack, store: Store
) -> None:
    job, ts = mention_job(slack, "use acme/elsewhere")

    await mentions.handle(job)

    assert await channel_repository(store, "slack", f"{TEAM}:{CHANNEL}") == "acme/elsewhere"
    [reply] = bot_replies(slack, ts)
    assert reply["text"].startswith("This channel now works on acme/elsewhere.")
    assert "I can't reach acme/elsewhere from here" in reply["text"]
    # One it reaches is confirmed without that.
    job, ts = mention_job(slack, "use acme/api")
    await mentions.handle(job)
    assert "can't reach" not in bot_replies(slack, ts)[0]["text"]


async def test_a_mention_naming_none_works_on_the_channel_default_and_says_so(
    mentions: SlackEventJob, slack: FakeSlack, store: Store
) -> None:
    await mentions.handle(mention_job(slack, "use acme/web")[0])
    job, ts = mention_job(slack, "why is the build red?")

    await mentions.handle(job)

    [start] = await jobs_of_kind(store, START_JOB)
    assert start["payload"]["workspace"]["repository"] == "acme/web"
    [ack] = bot_replies(slack, ts)
    assert ack["text"].startswith("On it! Working on acme/web. I'll answer in this thread.")


async def test_a_repository_named_wins_over_the_channel_default_which_wins_over_the_setting(
    mentions: SlackEventJob, slack: FakeSlack, store: Store
) -> None:
    configured = dataclasses.replace(mentions, default_repository="acme/elsewhere")
    await configured.handle(mention_job(slack, "why is the build red?", channel="C0OTHER")[0])
    await configured.handle(mention_job(slack, "use acme/web")[0])
    await configured.handle(mention_job(slack, "fix the parser in acme/api")[0])
    await configured.handle(mention_job(slack, "why is the build red?")[0])

    starts = await jobs_of_kind(store, START_JOB)
    assert [s["payload"]["repository"] for s in starts] == [
        "acme/elsewhere",
        "acme/api",
        "acme/web",
    ]


async def test_with_no_repository_anywhere_the_asker_is_shown_a_picker(
    mentions: SlackEventJob, slack: FakeSlack, store: Store
) -> None:
    job, ts = mention_job(slack, "why is the build red?")

    await mentions.handle(job)
    await mentions.handle(job)  # a retry finds its picker

    assert await jobs_of_kind(store, START_JOB) == []
    [picker] = bot_replies(slack, ts)
    assert picker["metadata"]["event_type"] == PICKER_EVENT_TYPE
    assert (
        picker["text"]
        == f"<@{ASKER}> Which repository is this about? I'll start once you pick one."
    )
    menu = picker["blocks"][1]["elements"][0]
    assert [o["value"] for o in menu["options"]] == ["github:acme/api", "github:acme/web"]
    pending = await get_choice(store, "slack", job.payload["event_id"])
    assert pending is not None
    assert (pending.asker, pending.chosen) == (ASKER, None)
    assert pending.picker_ref == f"{TEAM}:{CHANNEL}:{picker['ts']}"
    assert json.loads(pending.payload)["event"]["ts"] == ts


async def test_a_picked_repository_starts_the_conversation_on_it(
    mentions: SlackEventJob, slack: FakeSlack, store: Store
) -> None:
    job, ts = mention_job(slack, "why is the build red?")
    await mentions.handle(job)
    picked = dataclasses.replace(
        job, payload={**job.payload, "repository_choice": "github:acme/web"}
    )

    await mentions.handle(picked)

    [start] = await jobs_of_kind(store, START_JOB)
    workspace = start["payload"]["workspace"]
    assert (workspace["repository"], workspace["host"], workspace["locator"]) == (
        "acme/web",
        "github",
        "43",
    )
    [_, ack] = bot_replies(slack, ts)
    assert ack["text"].startswith("On it! Working on acme/web.")


async def test_no_repository_picked_starts_the_conversation_without_one(
    mentions: SlackEventJob, slack: FakeSlack, store: Store
) -> None:
    job, _ = mention_job(slack, "why is the build red?")
    await mentions.handle(job)

    await mentions.handle(
        dataclasses.replace(job, payload={**job.payload, "repository_choice": ""})
    )

    [start] = await jobs_of_kind(store, START_JOB)
    assert start["payload"].get("repository") is None
    assert start["payload"].get("workspace") is None


async def test_without_hosts_or_repositories_no_picker_is_shown(
    mentions: SlackEventJob, slack: FakeSlack, store: Store, host: RecordingHost
) -> None:
    host.repositories.clear()
    await mentions.handle(mention_job(slack, "why is the build red?")[0])
    no_hosts = dataclasses.replace(mentions, turns=dataclasses.replace(mentions.turns, hosts={}))
    await no_hosts.handle(mention_job(slack, "and now?", channel="C0OTHER")[0])

    starts = await jobs_of_kind(store, START_JOB)
    assert [s["payload"].get("repository") for s in starts] == [None, None]


async def test_the_options_handler_filters_what_was_typed(
    mentions: SlackEventJob, host: RecordingHost
) -> None:
    host.repositories.update({"other/webhooks": "44", "acme/cli": "45"})

    options = await mentions.repositories.options("WEB")

    assert [o["value"] for o in options] == ["github:acme/web", "github:other/webhooks"]
    assert [o["value"] for o in await mentions.repositories.options("")][:1] == ["github:acme/api"]
