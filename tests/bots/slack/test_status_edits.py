"""A Slack turn's status message: edits held back by a rate limit come later, and
the final edit keeps to the message's interval (real SQLite and PostgreSQL, fake Slack)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from bots.slack.api import SlackApi
from bots.slack.reply import SlackCallbackProcessor
from db.callbacks import ConversationCallback, insert_callback
from db.job_kinds import RetryableJobError
from processors.base import Reply, ReplyStatus
from processors.context import ProcessorContext
from processors.progress import arm_status, edit_progress, finish_status
from tests.support.fake_slack import FakeSlack

TEAM, TOKEN, CHANNEL = "T0EDIT", "xoxb-edit", "C0EDIT"
CONVERSATION = "c" * 32


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.add_team(TEAM, bot_token=TOKEN, bot_user_id="U0BOT", bot_id="B0EDIT")
        yield fake


async def start_turn(
    context: ProcessorContext, slack: FakeSlack
) -> tuple[ProcessorContext, ConversationCallback, SlackCallbackProcessor, str]:
    context = dataclasses.replace(
        context, platforms={"slack": SlackApi(slack.api_url, bot_token=TOKEN)}
    )
    asked = slack.add_message(TEAM, CHANNEL, user="U0ASKER", text="<@U0BOT> go")
    on_it = slack.add_message(TEAM, CHANNEL, user="U0BOT", text="On it!", thread_ts=asked)
    processor = SlackCallbackProcessor(
        team_id=TEAM,
        channel=CHANNEL,
        thread_ts=asked,
        user="U0ASKER",
        trigger_ts=asked,
        ack_ts=on_it,
    )
    callback = await insert_callback(
        context.store, ConversationCallback.for_processor(CONVERSATION, processor)
    )
    await arm_status(context, callback, processor)
    await context.store.execute(
        "UPDATE agent_conversations SET status_steps = 2, status_step = 'Run the tests'"
        " WHERE conversation_id = :id",
        {"id": CONVERSATION},
    )
    return context, callback, processor, on_it


def status_of(slack: FakeSlack, ts: str) -> str:
    [message] = [m for m in slack.messages(CHANNEL, team_id=TEAM) if m["ts"] == ts]
    return str(message["text"])


async def test_a_rate_limited_edit_is_tried_again_and_then_shown(
    context: ProcessorContext, slack: FakeSlack
) -> None:
    context, _, _, on_it = await start_turn(context, slack)
    slack.fail_next("chat.update", status=429, retry_after=2)

    with pytest.raises(RetryableJobError) as raised:
        await edit_progress(context, CONVERSATION)
    assert raised.value.retry_after == 2
    assert status_of(slack, on_it) == "On it!"

    await edit_progress(context, CONVERSATION)  # the retry: no lease left behind
    assert status_of(slack, on_it).startswith("Working on it: Run the tests\n2 steps")
    slack.clear_calls()
    await edit_progress(context, CONVERSATION)  # nothing new: no edit
    assert slack.calls("chat.update") == []


async def test_the_final_edit_waits_out_the_interval_then_comes_once(
    context: ProcessorContext, slack: FakeSlack
) -> None:
    context, callback, processor, on_it = await start_turn(context, slack)
    await edit_progress(context, CONVERSATION)
    assert callback.id is not None
    reply = Reply(
        callback_id=callback.id,
        conversation_id=CONVERSATION,
        status=ReplyStatus.COMPLETED,
        summary="Done.",
        delivery_id="d1",
        steps=2,
    )

    with pytest.raises(RetryableJobError) as raised:
        await finish_status(context, processor, reply)
    assert raised.value.retry_after is not None and 0 < raised.value.retry_after <= 3.0

    await context.store.execute(
        "UPDATE agent_conversations SET status_edited_at = status_edited_at - 3"
        " WHERE conversation_id = :id",
        {"id": CONVERSATION},
    )
    await finish_status(context, processor, reply)
    assert status_of(slack, on_it).startswith("Done")
    slack.clear_calls()
    await finish_status(context, processor, reply)  # a retried reply: shown already
    assert slack.calls("chat.update") == []
