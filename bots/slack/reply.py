"""SlackCallbackProcessor: the agent's answer, posted in the Slack thread that asked.

The row holds where the answer goes (team, channel, thread, who asked, the
triggering message and the "on it" message), never a token: the token is looked up
when the reply is delivered, so a re-installed workspace's new token is used and
an uninstalled workspace gets no post.
"""

from __future__ import annotations

import logging
import re
from typing import ClassVar

from bots.slack import PLATFORM
from bots.slack.api import SlackApi, SlackTeam
from bots.slack.blocks import SECTION_TEXT_CHARS, approval_blocks, status_blocks
from bots.slack.formatting import escape_mrkdwn, markdown_to_mrkdwn, slack_link, split_for_slack
from bots.texts import (
    APPROVAL_EXPIRED_TEXT,
    WORKING_REACTION,
    answer,
    approval_request_text,
    status_text,
)
from db.approvals import EXPIRED
from db.job_kinds import PermanentJobError, RetryableJobError
from processors.base import Reply, ReplyingProcessor, ReplyStatus
from processors.confirmation import ApprovalRequest
from processors.context import ProcessorContext
from processors.status import TurnStatus

log = logging.getLogger(__name__)

# Marks agent-relay's approval requests (Slack message metadata), so a retried job
# finds the one it posted instead of posting another.
APPROVAL_EVENT_TYPE = "agent_relay_approval"
DONE_REACTION = "white_check_mark"
_MEMBER = re.compile(r"<@[A-Z0-9]+>")
FAILED_REACTION = "x"


class SlackCallbackProcessor(ReplyingProcessor):
    processor_kind: ClassVar[str] = PLATFORM
    team_id: str
    enterprise_id: str | None = None
    channel: str
    thread_ts: str
    user: str
    # The message that asked (it carries the reactions) and the "on it" reply.
    trigger_ts: str
    ack_ts: str | None = None
    # How many messages of a split reply are posted already (a retry goes on from there).
    delivered_parts: int = 0

    # Slack: at most one edit of a message per 3 s (chat.update's tier allows more,
    # but a thread read by people needs no more).
    status_interval: ClassVar[float | None] = 3.0

    def has_status_message(self) -> bool:
        return self.ack_ts is not None

    async def edit_status(self, status: TurnStatus, context: ProcessorContext) -> None:
        if self.ack_ts is None:
            return
        team = await slack_team(context, self.team_id, self.enterprise_id)
        # chat.update leaves the message's metadata as it is: a retried event job
        # still finds the "on it" message by it.
        text = status_text(status, slack_link)
        await team.call(
            "chat.update",
            channel=self.channel,
            ts=self.ack_ts,
            text=text,
            blocks=status_blocks(text, stoppable=not status.final),
        )

    async def post_approval(self, request: ApprovalRequest, context: ProcessorContext) -> str:
        team = await slack_team(context, self.team_id, self.enterprise_id)
        text = approval_text(request)
        return await team.post_once_in_thread(
            self.channel,
            self.thread_ts,
            text,
            event_type=APPROVAL_EVENT_TYPE,
            key={"approval_id": str(request.id)},
            blocks=approval_blocks(request, text),
        )

    async def edit_approval(
        self, request: ApprovalRequest, message_id: str, context: ProcessorContext
    ) -> None:
        team = await slack_team(context, self.team_id, self.enterprise_id)
        text = approval_text(request)
        # The buttons go: the request is answered.
        await team.call(
            "chat.update",
            channel=self.channel,
            ts=message_id,
            text=text,
            blocks=approval_blocks(request, text),
        )

    async def deliver(self, reply: Reply, context: ProcessorContext) -> None:
        team = await slack_team(context, self.team_id, self.enterprise_id)
        parts = reply_messages(reply, self.user)
        for index in range(self.delivered_parts, len(parts)):
            await team.post_in_thread(self.channel, self.thread_ts, parts[index])
            self.delivered_parts = index + 1
            await self.remember_delivery(reply, context)
        done = DONE_REACTION if reply.status is ReplyStatus.COMPLETED else FAILED_REACTION
        try:
            await team.react(self.channel, self.trigger_ts, WORKING_REACTION, remove=True)
            await team.react(self.channel, self.trigger_ts, done)
        except (RetryableJobError, PermanentJobError) as exc:
            # The answer is in the thread; a missing check mark is not worth
            # posting it again (a retry would) or calling it undelivered.
            log.warning("callback %s: reactions not updated: %s", reply.callback_id, exc)


def approval_text(request: ApprovalRequest) -> str:
    """The request in mrkdwn; once answered, "Approved by <@U>" or "Rejected by <@U>: reason"."""
    text = markdown_to_mrkdwn(approval_request_text(request, with_answer=False))
    answer = _answer_line(request)
    room = SECTION_TEXT_CHARS - (len(answer) + 2 if answer else 0)
    if len(text) > room:
        text = text[: room - 1] + "…"
    return f"{text}\n\n{answer}" if answer else text


def _answer_line(request: ApprovalRequest) -> str | None:
    """The answer in mrkdwn: `answered_by` is a mention as Slack writes it ("<@U1>")."""
    if request.state == EXPIRED:
        return f"*{APPROVAL_EXPIRED_TEXT}*"
    if request.accept is None:
        return None
    verdict = "Approved" if request.accept else "Rejected"
    head = f"*{verdict} by {request.answered_by}*" if request.answered_by else f"*{verdict}*"
    if not request.accept and request.reason:
        return f"{head}: {escape_mrkdwn(request.reason)}"
    return f"{head}."


def reply_messages(reply: Reply, user: str) -> list[str]:
    """The reply as Slack messages: the asker mentioned, markdown made mrkdwn, split."""
    body = markdown_to_mrkdwn(reply.summary)
    if reply.stopped_by is not None and _MEMBER.fullmatch(reply.stopped_by):
        # Our own "Stopped by <@U…>" line names a person: a mention, not text.
        body = body.replace(escape_mrkdwn(reply.stopped_by), reply.stopped_by, 1)
    text = answer(body, reply.url, slack_link)
    return split_for_slack(f"<@{user}> {text}")


async def slack_team(
    context: ProcessorContext, team_id: str, enterprise_id: str | None
) -> SlackTeam:
    return await context.platform(PLATFORM, SlackApi, "Slack").team(team_id, enterprise_id)
