"""The `slack.event` job: from an accepted Slack event to a recorded agent turn.

Runs in a worker, keyed by thread, so mentions in one thread are handled in order.
It acknowledges (eyes on the message, an "on it" reply with the conversation link),
reads the thread for context, builds the prompt (or the follow-up message) and
hands the turn to bots.mentions. Every step may run again after a crash: reactions
already there are fine, the "on it" reply is found again by its metadata, and the
turn is recorded once per Slack event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from bots.mentions import Turn, find_link, infer_repository, new_conversation_id, record_turn
from bots.slack.api import SlackApi, SlackTeam
from bots.slack.triggers import PLATFORM, SlackTrigger, mentioned_users, trigger_of
from db.jobs import Job, JobKind, JobQueue
from db.logcontext import bind
from db.metrics import MENTIONS
from db.store import Store

log = logging.getLogger(__name__)


class SlackEventPayload(BaseModel):
    """An accepted Slack event, with what Bolt knew of its workspace."""

    event_id: str
    team_id: str
    enterprise_id: str | None = None
    bot_user_id: str | None = None
    event: dict[str, Any]


SLACK_EVENT_JOB = JobKind("slack.event", SlackEventPayload)
# Marks agent-relay's "on it" replies (Slack message metadata), so a retried job
# finds the one it posted instead of posting another.
ACK_EVENT_TYPE = "agent_relay_ack"
HISTORY_MESSAGES = 20
WORKING_REACTION = "eyes"

USAGE_HINT = (
    "Tell me what to do after the mention, e.g. "
    "`@OpenHands why does the nightly build fail? acme/api`"
)


@dataclass(frozen=True)
class SlackMentions:
    store: Store
    queue: JobQueue
    teams: SlackApi
    # Builds the platform's callback processor (bots.slack.reply.SlackCallbackProcessor);
    # handed in by relay, since bots/ does not import processors/.
    new_processor: Callable[..., BaseModel]
    conversation_url: Callable[[str], str | None]
    default_repository: str | None = None

    async def handle(self, job: Job) -> None:
        payload = SLACK_EVENT_JOB.payload_of(job)
        # The worker runs each job in a task of its own: what is bound here stays in it.
        bind(delivery=payload.event_id)
        trigger = trigger_of(payload.event, payload.team_id, payload.bot_user_id)
        if trigger is None:
            return
        team = await self.teams.team(trigger.team_id, payload.enterprise_id)
        if not trigger.text:
            await team.post_in_thread(trigger.channel, trigger.thread_ts, USAGE_HINT)
            MENTIONS.labels(platform=PLATFORM, outcome="no_request").inc()
            log.info("slack %s: a mention without a request; usage hint posted", trigger.thread_key)
            return
        link = await find_link(self.store, PLATFORM, trigger.thread_key)
        await team.react(trigger.channel, trigger.ts, WORKING_REACTION)
        thread = await team.thread_messages(trigger.channel, trigger.thread_ts)
        conversation_id = (
            link.conversation_id if link else new_conversation_id(PLATFORM, payload.event_id)
        )
        bind(conversation=conversation_id)
        ack_ts = await self._acknowledge(team, trigger, thread, conversation_id, bool(link))
        bot_user_id = payload.bot_user_id
        people = [m for m in thread if _is_person(m, bot_user_id) and m.get("ts") != trigger.ts]
        if link is not None:
            people = [m for m in people if _ts_after(m, link.cursor)]
        history = await _history_lines(team, people[-HISTORY_MESSAGES:])
        asker = await team.display_name(trigger.user)
        request = await _readable(team, trigger.text)
        if link is None:
            repository = infer_repository(trigger.text, self.default_repository)
            text = _new_conversation_prompt(asker, trigger, request, repository, history)
        else:
            repository = None
            text = _follow_up_message(asker, request, history)
        turn = Turn(
            platform=PLATFORM,
            thread_key=trigger.thread_key,
            delivery_id=payload.event_id,
            conversation_id=conversation_id,
            text=text,
            processor=self.new_processor(
                team_id=trigger.team_id,
                enterprise_id=payload.enterprise_id,
                channel=trigger.channel,
                thread_ts=trigger.thread_ts,
                user=trigger.user,
                trigger_ts=trigger.ts,
                ack_ts=ack_ts,
            ),
            tags=_tags(trigger, repository),
            cursor=trigger.ts,
            received_at=job.created_at,
        )
        await record_turn(self.store, self.queue, turn, continuing=link is not None)

    async def _acknowledge(
        self,
        team: SlackTeam,
        trigger: SlackTrigger,
        thread: list[dict[str, Any]],
        conversation_id: str,
        continuing: bool,
    ) -> str:
        """The "on it" reply's ts: the one an earlier attempt posted, or a new one."""
        for message in thread:
            metadata = message.get("metadata") or {}
            if (
                metadata.get("event_type") == ACK_EVENT_TYPE
                and (metadata.get("event_payload") or {}).get("trigger_ts") == trigger.ts
            ):
                return str(message["ts"])
        text = "On it, continuing our conversation." if continuing else "On it!"
        url = self.conversation_url(conversation_id)
        text += f" Follow along <{url}|here>;" if url else ""
        text += " I'll answer in this thread."
        return await team.post_in_thread(
            trigger.channel,
            trigger.thread_ts,
            text,
            metadata={"event_type": ACK_EVENT_TYPE, "event_payload": {"trigger_ts": trigger.ts}},
        )


def _is_person(message: dict[str, Any], bot_user_id: str | None) -> bool:
    return not (
        message.get("bot_id")
        or message.get("subtype")
        or (bot_user_id is not None and message.get("user") == bot_user_id)
    )


def _ts_after(message: dict[str, Any], cursor: str | None) -> bool:
    # Slack ts values are "seconds.micro" strings of fixed-width fraction.
    return cursor is None or float(message.get("ts") or 0) > float(cursor)


async def _readable(team: SlackTeam, text: str) -> str:
    """Slack text with <@U…> mentions shown as @names, as people read it."""
    for user_id in mentioned_users(text):
        name = await team.display_name(user_id)
        text = text.replace(f"<@{user_id}>", f"@{name}")
    return text


async def _history_lines(team: SlackTeam, messages: list[dict[str, Any]]) -> list[str]:
    lines = []
    for message in messages:
        name = await team.display_name(str(message.get("user") or "someone"))
        lines.append(f"{name}: {await _readable(team, str(message.get('text') or ''))}")
    return lines


def _new_conversation_prompt(
    asker: str,
    trigger: SlackTrigger,
    request: str,
    repository: str | None,
    history: list[str],
) -> str:
    where = "a direct message" if trigger.is_dm else f"Slack channel {trigger.channel}"
    parts = [f"{asker} asked you in {where}:", request]
    if repository:
        parts.append(f"Repository: {repository}")
    if history:
        parts.append("The thread so far, oldest first:\n" + "\n".join(history))
    parts.append("Your answer will be posted in that Slack thread.")
    return "\n\n".join(parts)


def _follow_up_message(asker: str, request: str, history: list[str]) -> str:
    parts = [f"{asker} followed up in the Slack thread:", request]
    if history:
        parts.append("Messages in the thread since your last answer:\n" + "\n".join(history))
    return "\n\n".join(parts)


def _tags(trigger: SlackTrigger, repository: str | None) -> dict[str, str]:
    # Agent-server tags: lowercase alphanumeric keys, values of at most 256 characters.
    tags = {
        "platform": PLATFORM,
        "team": trigger.team_id,
        "channel": trigger.channel,
        "thread": trigger.thread_ts,
    }
    if repository:
        tags["repository"] = repository[:256]
    return tags
