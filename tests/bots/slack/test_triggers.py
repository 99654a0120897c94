"""Which Slack events ask the agent for something, and what they ask (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from bots.slack.triggers import mentioned_users, request_text, thread_key, trigger_of

TEAM = "T1"
BOT = "UBOT"
CHANNEL = "C1"
ASKER = "UASKER"


def mention(**overrides: Any) -> dict[str, Any]:
    """An app_mention in a channel, as the Events API sends it."""
    return {
        "type": "app_mention",
        "user": ASKER,
        "text": f"<@{BOT}> fix the build",
        "ts": "1700000000.000100",
        "channel": CHANNEL,
        "event_ts": "1700000000.000100",
        **overrides,
    }


def direct_message(**overrides: Any) -> dict[str, Any]:
    """A message in the app's DM channel."""
    return {
        "type": "message",
        "channel_type": "im",
        "user": ASKER,
        "text": "why does the nightly build fail?",
        "ts": "1700000000.000200",
        "channel": "D1",
        "event_ts": "1700000000.000200",
        **overrides,
    }


# -- what triggers ----------------------------------------------------------------------


def test_mention_in_a_channel_starts_a_thread_on_its_own_message() -> None:
    trigger = trigger_of(mention(), TEAM, BOT)

    assert trigger is not None
    assert (trigger.team_id, trigger.channel, trigger.user) == (TEAM, CHANNEL, ASKER)
    assert trigger.ts == "1700000000.000100"
    assert trigger.thread_ts == trigger.ts
    assert trigger.is_dm is False
    assert trigger.text == "fix the build"


def test_mention_in_a_thread_keeps_the_thread() -> None:
    trigger = trigger_of(mention(ts="1700000050.000300", thread_ts="1700000000.000100"), TEAM, BOT)

    assert trigger is not None
    assert trigger.ts == "1700000050.000300"
    assert trigger.thread_ts == "1700000000.000100"
    assert trigger.thread_key == f"{TEAM}:{CHANNEL}:1700000000.000100"


def test_direct_message_triggers_without_a_mention() -> None:
    trigger = trigger_of(direct_message(), TEAM, BOT)

    assert trigger is not None
    assert trigger.is_dm is True
    assert trigger.channel == "D1"
    assert trigger.thread_ts == trigger.ts == "1700000000.000200"
    assert trigger.text == "why does the nightly build fail?"


def test_direct_message_in_a_thread_keeps_the_thread() -> None:
    trigger = trigger_of(direct_message(thread_ts="1700000000.000001"), TEAM, BOT)

    assert trigger is not None
    assert trigger.thread_ts == "1700000000.000001"


@pytest.mark.parametrize("channel_type", ["channel", "group", "mpim"])
def test_plain_message_outside_a_dm_asks_nothing(channel_type: str) -> None:
    event = direct_message(channel_type=channel_type, channel=CHANNEL, text=f"<@{BOT}> hi")
    assert trigger_of(event, TEAM, BOT) is None


def test_message_without_a_channel_type_asks_nothing() -> None:
    event = direct_message()
    del event["channel_type"]
    assert trigger_of(event, TEAM, BOT) is None


@pytest.mark.parametrize("subtype", ["file_share", "thread_broadcast"])
@pytest.mark.parametrize("make", [mention, direct_message])
def test_a_message_with_files_or_a_broadcast_reply_still_asks(subtype: str, make: Any) -> None:
    assert trigger_of(make(subtype=subtype), TEAM, BOT) is not None


@pytest.mark.parametrize(
    "subtype", ["message_changed", "message_deleted", "channel_join", "bot_message"]
)
@pytest.mark.parametrize("make", [mention, direct_message])
def test_subtypes_ask_nothing(subtype: str, make: Any) -> None:
    assert trigger_of(make(subtype=subtype), TEAM, BOT) is None


@pytest.mark.parametrize("make", [mention, direct_message])
def test_messages_of_bots_ask_nothing(make: Any) -> None:
    assert trigger_of(make(bot_id="B2"), TEAM, BOT) is None
    assert trigger_of(make(bot_profile={"id": "B2", "name": "other"}), TEAM, BOT) is None


@pytest.mark.parametrize("make", [mention, direct_message])
def test_the_apps_own_messages_ask_nothing(make: Any) -> None:
    assert trigger_of(make(user=BOT), TEAM, BOT) is None


@pytest.mark.parametrize("kind", ["reaction_added", "app_home_opened", "member_joined_channel"])
def test_other_event_types_ask_nothing(kind: str) -> None:
    assert trigger_of(mention(type=kind), TEAM, BOT) is None


@pytest.mark.parametrize("missing", ["user", "channel", "ts"])
def test_events_missing_who_where_or_when_ask_nothing(missing: str) -> None:
    event = mention()
    del event[missing]
    assert trigger_of(event, TEAM, BOT) is None


def test_empty_thread_ts_falls_back_to_the_messages_ts() -> None:
    trigger = trigger_of(mention(thread_ts=""), TEAM, BOT)
    assert trigger is not None
    assert trigger.thread_ts == trigger.ts


# -- the request's text ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"<@{BOT}> fix it", "fix it"),
        (f"<@{BOT}|openhands> fix it", "fix it"),
        (f"please <@{BOT}> fix it", "please fix it"),
        (f"fix it <@{BOT}>", "fix it"),
        (f"<@{BOT}> ask <@U2> and <@U3|carol> about it", "ask <@U2> and <@U3|carol> about it"),
        (f"<@{BOT}> <@{BOT}|openhands> twice", "twice"),
        (f"<@{BOT}>", ""),
        (f"  <@{BOT}|openhands>  \t ", ""),
    ],
)
def test_request_text_drops_only_the_bots_mention(text: str, expected: str) -> None:
    assert request_text(text, BOT) == expected
    trigger = trigger_of(mention(text=text), TEAM, BOT)
    assert trigger is not None
    assert trigger.text == expected


def test_request_text_keeps_line_breaks() -> None:
    assert request_text(f"<@{BOT}> first\nsecond", BOT) == "first\nsecond"


def test_without_a_bot_user_id_mentions_are_kept() -> None:
    assert request_text(f"<@{BOT}> fix it", None) == f"<@{BOT}> fix it"


def test_missing_text_is_an_empty_request() -> None:
    event = direct_message()
    del event["text"]
    trigger = trigger_of(event, TEAM, BOT)
    assert trigger is not None
    assert trigger.text == ""


def test_mentioned_users_in_order_without_repeats() -> None:
    text = f"<@U2> and <@{BOT}|openhands>, then <@U3|carol> and <@U2> again"
    assert mentioned_users(text) == ["U2", BOT, "U3"]
    assert mentioned_users("no one here, not even <#C1|general>") == []


def test_thread_key_format() -> None:
    assert thread_key("T9", "C7", "1700000000.000100") == "T9:C7:1700000000.000100"
