"""SlackCallbackProcessor's approval requests against the fake Slack: a thread message
with Approve and Reject buttons, found again by its metadata, edited to its answer."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from bots.slack.api import SlackApi
from bots.slack.blocks import APPROVE_ACTION, REJECT_ACTION
from bots.slack.reply import APPROVAL_EVENT_TYPE, SlackCallbackProcessor
from processors.confirmation import ApprovalRequest, HeldAction
from processors.context import ProcessorContext
from tests.support.fake_slack import FakeSlack

TEAM, BOT_TOKEN, BOT_USER = "T0REPLY", "xoxb-reply-token", "U0BOTREPLY"
ASKER, CHANNEL = "U0ASKER", "C0REPLY"
URL = "https://agent.example.test/conversations/abc"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.add_team(TEAM, bot_token=BOT_TOKEN, bot_user_id=BOT_USER, bot_id="B0REPLY")
        fake.add_user(ASKER, name="ada", display_name="Ada")
        yield fake


def request(state: str = "pending", **answer: object) -> ApprovalRequest:
    held = HeldAction("a1", "terminal", "rm -rf build && make", "Start <clean>.")
    return ApprovalRequest(
        id=8, conversation_id="abc", actions=[held], url=URL, state=state, **answer
    )


async def test_a_request_has_two_buttons_is_posted_once_and_loses_them_when_answered(
    context: ProcessorContext, slack: FakeSlack
) -> None:
    slack_context = dataclasses.replace(
        context, platforms={"slack": SlackApi(slack.api_url, bot_token=BOT_TOKEN)}
    )
    thread_ts = slack.add_message(TEAM, CHANNEL, user=ASKER, text=f"<@{BOT_USER}> clean")
    processor = SlackCallbackProcessor(
        team_id=TEAM, channel=CHANNEL, thread_ts=thread_ts, user=ASKER, trigger_ts=thread_ts
    )

    ts = await processor.post_approval(request(), slack_context)
    assert await processor.post_approval(request(), slack_context) == ts  # a retry

    [message] = [m for m in slack.thread(CHANNEL, thread_ts, team_id=TEAM) if m["ts"] == ts]
    assert len([m for m in slack.thread(CHANNEL, thread_ts, team_id=TEAM)]) == 2
    section, actions = message["blocks"]
    assert "```\nrm -rf build &amp;&amp; make\n```" in section["text"]["text"]
    assert "Start &lt;clean&gt;." in section["text"]["text"]
    assert [(b["action_id"], b["style"], b["value"]) for b in actions["elements"]] == [
        (APPROVE_ACTION, "primary", "8"),
        (REJECT_ACTION, "danger", "8"),
    ]
    assert message["metadata"]["event_type"] == APPROVAL_EVENT_TYPE

    answered = request("rejected", accept=False, answered_by=f"<@{ASKER}>", reason="a <b>")
    await processor.edit_approval(answered, ts, slack_context)

    [message] = [m for m in slack.thread(CHANNEL, thread_ts, team_id=TEAM) if m["ts"] == ts]
    [section] = message["blocks"]
    assert section["text"]["text"].endswith(f"*Rejected by <@{ASKER}>*: a &lt;b&gt;")
