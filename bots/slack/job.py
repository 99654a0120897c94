"""The `slack.event` job: from an accepted Slack event to a recorded agent turn.

Runs in a worker, keyed by thread, so mentions in one thread are handled in order.
It acknowledges (eyes on the message, an "on it" reply with the conversation link),
reads the thread for context, builds the prompt (or the follow-up message) and
hands the turn to the shared turn sequence (bots.turns). Every step may run again
after a crash: reactions already there are fine, the "on it" reply is found again
by its metadata, and the turn is recorded once per Slack event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from agent.checkout import Requester, WorkspaceRequest
from bots.hygiene import visible_text
from bots.slack import PLATFORM
from bots.slack.api import SlackApi, SlackPerson, SlackTeam
from bots.slack.blocks import status_blocks
from bots.slack.formatting import slack_link
from bots.slack.reply import SlackCallbackProcessor
from bots.slack.repositories import RepositoryChoice, SlackRepositories, use_command
from bots.slack.triggers import SlackTrigger, mentioned_users, trigger_of
from bots.texts import WORKING_REACTION, request_title
from bots.turns import Context, Turns, count_refusal
from db.conversation_links import find_link
from db.job_kinds import Job, JobKind
from db.logcontext import bind

log = logging.getLogger(__name__)


class SlackEventPayload(BaseModel):
    """An accepted Slack event, with what Bolt knew of its workspace."""

    event_id: str
    team_id: str
    enterprise_id: str | None = None
    bot_user_id: str | None = None
    event: dict[str, Any]
    # Set when the mention waited for its asker to pick a repository: the picked
    # option's value ("github:acme/api"), "" for no repository.
    repository_choice: str | None = None


SLACK_EVENT_JOB = JobKind("slack.event", SlackEventPayload)
# Marks agent-relay's "on it" replies (Slack message metadata), so a retried job
# finds the one it posted instead of posting another.
ACK_EVENT_TYPE = "agent_relay_ack"
HISTORY_MESSAGES = 20

USAGE_HINT = (
    "Tell me what to do after the mention, e.g. "
    "`@OpenHands why does the nightly build fail? acme/api`"
)


@dataclass(frozen=True)
class SlackEventJob:
    turns: Turns
    api: SlackApi
    default_repository: str | None = None

    @property
    def repositories(self) -> SlackRepositories:
        turns = self.turns
        return SlackRepositories(turns.store, lambda: turns.hosts, self.default_repository)

    async def handle(self, job: Job) -> None:
        payload = SLACK_EVENT_JOB.payload_of(job)
        # The worker runs each job in a task of its own: what is bound here stays in it.
        bind(delivery=payload.event_id)
        trigger = trigger_of(payload.event, payload.team_id, payload.bot_user_id)
        if trigger is None:
            return
        team = await self.api.team(trigger.team_id, payload.enterprise_id)
        if not trigger.text:
            await team.post_in_thread(trigger.channel, trigger.thread_ts, USAGE_HINT)
            count_refusal(PLATFORM, "no_request")
            log.info("slack %s: a mention without a request; usage hint posted", trigger.thread_key)
            return
        repositories = self.repositories
        command = use_command(trigger.text) if payload.repository_choice is None else None
        if command is not None:
            await repositories.use(team, trigger, command)
            return
        choice = RepositoryChoice(None)
        if await find_link(self.turns.store, PLATFORM, trigger.thread_key) is None:
            # A new conversation: which repository it is about is settled now (a
            # follow-up keeps its conversation's).
            chosen = await repositories.choose(
                team,
                trigger,
                delivery_id=payload.event_id,
                picked=payload.repository_choice,
                job_kind=SLACK_EVENT_JOB.name,
                payload=SLACK_EVENT_JOB.encode(payload),
            )
            if chosen is None:
                return  # the picker is in the thread; its pick queues this again
            choice = chosen
        mention = SlackMention(
            team,
            trigger,
            delivery_id=payload.event_id,
            enterprise_id=payload.enterprise_id,
            bot_user_id=payload.bot_user_id,
            choice=choice,
        )
        await self.turns.take(mention, received_at=job.created_at)


class SlackMention:
    """A Slack mention as the shared turn sequence (bots.turns) speaks to it."""

    platform = PLATFORM
    answer_place = "this thread"

    def __init__(
        self,
        team: SlackTeam,
        trigger: SlackTrigger,
        *,
        delivery_id: str,
        enterprise_id: str | None,
        bot_user_id: str | None,
        choice: RepositoryChoice,
    ) -> None:
        self.team = team
        self.trigger = trigger
        self.thread_key = trigger.thread_key
        self.delivery_id = delivery_id
        self.enterprise_id = enterprise_id
        self.bot_user_id = bot_user_id
        self.choice = choice
        self.ack_ts: str | None = None
        self.person: SlackPerson | None = None
        self.asker = ""
        self.request = ""
        self._thread: list[dict[str, Any]] | None = None

    async def react(self) -> None:
        await self.team.react(self.trigger.channel, self.trigger.ts, WORKING_REACTION)

    def link_style(self, url: str, label: str) -> str:
        return slack_link(url, label)

    async def _thread_messages(self) -> list[dict[str, Any]]:
        if self._thread is None:
            self._thread = await self.team.thread_messages(
                self.trigger.channel, self.trigger.thread_ts
            )
        return self._thread

    async def acknowledge(self, text: str) -> None:
        """The "on it" reply's ts: the one an earlier attempt posted (found by its
        message metadata), or a new one."""
        trigger = self.trigger
        self.ack_ts = await self.team.post_once_in_thread(
            trigger.channel,
            trigger.thread_ts,
            text,
            event_type=ACK_EVENT_TYPE,
            key={"trigger_ts": trigger.ts},
            # It becomes the turn's status message, with the Stop button till the end.
            blocks=status_blocks(text, stoppable=True),
            thread=await self._thread_messages(),
        )

    async def context(self, since: str | None) -> Context:
        thread = await self._thread_messages()
        people = [
            m
            for m in thread
            if _is_person(m, self.bot_user_id)
            and m.get("ts") != self.trigger.ts
            and _ts_after(m, since)
        ]
        history = await _history_lines(self.team, people[-HISTORY_MESSAGES:])
        self.person = await self.team.person(self.trigger.user)
        self.asker = self.person.name
        self.request = await _readable(self.team, self.trigger.text)
        return Context(history=history, cursor=self.trigger.ts)

    def repository(self) -> str | None:
        return self.choice.repository

    def workspace(self) -> WorkspaceRequest | None:
        repository = self.repository()
        if repository is None:
            return None
        return WorkspaceRequest(
            repository=repository,
            host=self.choice.host,
            title=request_title(self.request, ""),
            # Co-author of the agent's commits when Slack shares the email.
            requester=Requester(
                login=self.asker or self.trigger.user,
                platform=PLATFORM,
                name=self.person.name if self.person else None,
                email=self.person.email if self.person else None,
            ),
        )

    def prompt(self, context: Context) -> str:
        where = (
            "a direct message" if self.trigger.is_dm else f"Slack channel {self.trigger.channel}"
        )
        parts = [f"{self.asker} asked you in {where}:", self.request]
        repository = self.repository()
        if repository:
            parts.append(f"Repository: {repository}")
        if context.history:
            parts.append("The thread so far, oldest first:\n" + "\n".join(context.history))
        parts.append("Your answer will be posted in that Slack thread.")
        return "\n\n".join(parts)

    def follow_up(self, context: Context) -> str:
        parts = [f"{self.asker} followed up in the Slack thread:", self.request]
        if context.history:
            parts.append(
                "Messages in the thread since your last answer:\n" + "\n".join(context.history)
            )
        return "\n\n".join(parts)

    def processor(self) -> SlackCallbackProcessor:
        return SlackCallbackProcessor.of(
            self.trigger,
            enterprise_id=self.enterprise_id,
            trigger_ts=self.trigger.ts,
            ack_ts=self.ack_ts,
        )

    def tags(self) -> dict[str, str]:
        tags = {
            "platform": PLATFORM,
            "team": self.trigger.team_id,
            "channel": self.trigger.channel,
            "thread": self.trigger.thread_ts,
        }
        repository = self.repository()
        if repository:
            tags["repository"] = repository
        return tags


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
    """Slack text with <@U…> mentions shown as @names, as people read it (and without
    the invisible characters they cannot see)."""
    text = visible_text(text, markup=False)
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
