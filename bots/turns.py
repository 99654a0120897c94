"""The turn sequence every platform shares, once its event job has accepted a mention.

Find the thread's conversation, react, choose the conversation id, acknowledge once,
read what was written since the last turn, build the prompt (or the follow-up
message) and record the turn: one transaction writes the callback that will carry the
answer back, the conversation link and the job that starts the conversation or sends
the follow-up. A platform supplies only a small adapter (`Mention`) for the steps
that speak its API.

Platform event jobs are keyed by thread key, so two mentions in one thread are
handled one after the other and the "start or continue" decision never races. Every
step may run again after a crash: reactions are idempotent, the acknowledgement is
found again, and the turn is recorded once per delivery.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from agent.checkout import WorkspaceRequest
from agent.events import (
    START_JOB,
    STOP_JOB,
    TURN_MESSAGE_JOB,
    StartPayload,
    StopPayload,
    TurnMessagePayload,
)
from bots.markers import MarkedThread, marker, post_once
from bots.texts import acknowledgement, no_checkout_note, nothing_to_approve, permission_refusal
from db.approvals import pending_approval
from db.callbacks import ConversationCallback, insert_callback
from db.conversation_links import ConversationLink, find_link, save_link
from db.jobs import JobQueue
from db.logcontext import bind
from db.metrics import MENTION_ACCEPTED, MENTIONS
from db.store import Store
from processors.approvals import answer_approval
from processors.base import ReplyingProcessor
from processors.hosts import RepositoryHost
from processors.workspace import locate

log = logging.getLogger(__name__)

# uuid5 namespace of the conversation ids agent-relay derives from platform deliveries.
_CONVERSATION_NAMESPACE = uuid.UUID("8a5f3c2e-6f7b-4b7e-9d1a-3c4b5d6e7f80")
# The agent-server's tags: lowercase alphanumeric keys, values of at most 256 characters.
TAG_VALUE_CHARS = 256


@dataclass(frozen=True)
class Turn:
    """One accepted mention, ready to be recorded."""

    platform: str
    thread_key: str
    # The platform's id of the triggering delivery: a retried job records it once.
    delivery_id: str
    conversation_id: str
    # The prompt of a new conversation, or the follow-up message of a continued one.
    text: str
    # The platform's processor: where the answer goes.
    processor: ReplyingProcessor
    tags: dict[str, str] = field(default_factory=dict)
    # Platform marker of the newest message the agent has now seen.
    cursor: str | None = None
    # When the platform's delivery arrived (epoch seconds; its event job's created_at),
    # for the mention -> agent latency.
    received_at: float | None = None
    # The repository ("owner/name") the conversation is about, if any: it names the
    # conversation's directory, and a platform that serves it checks it out.
    repository: str | None = None
    workspace: WorkspaceRequest | None = None


@dataclass(frozen=True)
class Context:
    """What people wrote in the thread since the agent last saw it."""

    # One line per message, oldest first.
    history: list[str]
    # The platform's marker of the newest message now seen (the next turn's start).
    cursor: str | None


class Mention(Protocol):
    """One accepted mention, as its platform speaks to its thread."""

    platform: str
    thread_key: str
    delivery_id: str
    # Where the answer will appear, for the acknowledgement ("this thread").
    answer_place: str

    async def react(self) -> None:
        """Show that the bot is working on it (a reaction; a courtesy that may fail)."""

    async def acknowledge(self, text: str) -> None:
        """Post the "on it" `text` unless an earlier attempt did (and keep its id if the
        processor needs it)."""

    async def context(self, since: str | None) -> Context:
        """The thread's messages after the cursor `since` (None: all of them)."""

    def link_style(self, url: str, label: str) -> str:
        """A link in the platform's markup."""

    def prompt(self, context: Context) -> str:
        """The first message of a new conversation."""

    def follow_up(self, context: Context) -> str:
        """The message that continues the thread's conversation."""

    def processor(self) -> ReplyingProcessor:
        """The callback processor that posts this turn's answer."""

    def tags(self) -> dict[str, str]:
        """The conversation's tags on the agent-server."""

    def workspace(self) -> WorkspaceRequest | None:
        """The checkout the request needs: its repository, where it was asked, and by
        whom; None when it is about no repository."""


@dataclass(frozen=True)
class Turns:
    """Where accepted mentions become agent turns: the store and queue they are
    recorded in, and the conversation links the acknowledgements carry."""

    store: Store
    queue: JobQueue
    conversation_url: Callable[[str], str | None]
    # The platforms that host repositories (filled in once every platform is built).
    hosts: Mapping[str, RepositoryHost] = field(default_factory=dict)

    async def take(self, mention: Mention, *, received_at: float | None) -> int | None:
        """Run the shared sequence for an accepted mention; the callback id (None when
        this delivery's turn was recorded by an earlier attempt)."""
        link = await find_link(self.store, mention.platform, mention.thread_key)
        await mention.react()
        conversation_id = (
            link.conversation_id
            if link
            else new_conversation_id(mention.platform, mention.delivery_id)
        )
        bind(conversation=conversation_id)
        continuing = link is not None
        # A new conversation's checkout: which platform serves the repository is
        # known before the "on it", which says so when none does. (No hosts at all:
        # checkouts are off in this deployment, and nobody needs to be told.)
        wanted = None if continuing else mention.workspace()
        located = await locate(self.hosts, wanted) if wanted and self.hosts else None
        note = (
            no_checkout_note(wanted.repository) if wanted and self.hosts and not located else None
        )
        await mention.acknowledge(
            acknowledgement(
                self.conversation_url(conversation_id),
                continuing=continuing,
                where=mention.answer_place,
                link=mention.link_style,
                note=note,
                # Asked in a chat, the thread is on no repository: say which one.
                working_on=located.repository
                if located and located.host != mention.platform
                else None,
            )
        )
        context = await mention.context(link.cursor if link else None)
        # Asked again now that the thread is read (titles, links).
        workspace = mention.workspace() if located is not None else None
        if workspace is not None and located is not None:
            workspace = workspace.model_copy(
                update={"host": located.host, "locator": located.locator}
            )
        turn = Turn(
            platform=mention.platform,
            thread_key=mention.thread_key,
            delivery_id=mention.delivery_id,
            conversation_id=conversation_id,
            text=mention.follow_up(context) if continuing else mention.prompt(context),
            # The status that replaces the "on it" keeps its note.
            processor=mention.processor().model_copy(update={"status_note": note}),
            tags={key: value[:TAG_VALUE_CHARS] for key, value in mention.tags().items()},
            cursor=context.cursor,
            received_at=received_at,
            repository=wanted.repository if wanted else None,
            workspace=workspace,
        )
        return await record_turn(self.store, self.queue, turn, continuing=continuing)

    async def stop(self, platform: str, thread_key: str, delivery_id: str, who: str) -> bool:
        """Someone asked to stop the thread's run (`who` as the platform writes a
        person): its conversation is paused, and the turn closes in their name. False
        when the thread has no conversation."""
        link = await find_link(self.store, platform, thread_key)
        if link is None:
            return False
        await self.queue.enqueue(
            STOP_JOB,
            StopPayload(conversation_id=link.conversation_id, who=who),
            key=f"stop:{link.conversation_id}",
            idempotency_key=f"stop:{platform}:{delivery_id}",
        )
        log.info("%s %s: %s asked to stop %s", platform, thread_key, who, link.conversation_id)
        return True

    async def command(
        self,
        thread: MarkedThread,
        platform: str,
        thread_key: str,
        delivery_id: str,
        who: str,
        text: str,
    ) -> bool:
        """Carry out `text` when it is a command to the thread's run rather than a
        request (`stop`, `approve`, `reject <reason>`), from someone who may trigger
        the agent; True when it was one (no turn starts then)."""
        if is_stop(text):
            await self.stop(platform, thread_key, delivery_id, who)
            return True
        answer = approval_answer_of(text)
        if answer is None:
            return False
        await self.answer_approval(thread, platform, thread_key, delivery_id, who, answer)
        return True

    async def answer_approval(
        self,
        thread: MarkedThread,
        platform: str,
        thread_key: str,
        delivery_id: str,
        who: str,
        answer: ApprovalAnswer,
    ) -> bool:
        """Someone who may trigger answered the thread's approval request (`who` as the
        platform writes a person): the answer is queued (processors.approvals), or,
        when nothing waits, they are told so once. Never starts a turn."""
        link = await find_link(self.store, platform, thread_key)
        approval = await pending_approval(self.store, link.conversation_id) if link else None
        if approval is None:
            await post_once(thread, nothing_to_approve(who), marker("approval-none", delivery_id))
            log.info("%s %s: %s answered; nothing waits for approval", platform, thread_key, who)
            return False
        await answer_approval(
            self.queue,
            approval_id=approval.id,
            accept=answer.accept,
            reason=answer.reason,
            who=who,
            delivery_id=f"{platform}:{delivery_id}",
        )
        log.info(
            "%s %s: %s %s approval %s",
            platform,
            thread_key,
            who,
            "approved" if answer.accept else "rejected",
            approval.id,
        )
        return True


@dataclass(frozen=True)
class ApprovalAnswer:
    """`@openhands approve` or `@openhands reject <reason>`."""

    accept: bool
    reason: str | None = None


def approval_answer_of(text: str) -> ApprovalAnswer | None:
    """The approval a mention answers with, if it is one: `approve` alone, or `reject`
    followed by an optional reason (for the agent)."""
    words = text.strip().split(None, 1)
    if not words:
        return None
    verb = words[0].rstrip(".!:,").lower()
    rest = words[1].strip() if len(words) > 1 else ""
    if verb == "approve" and not rest.rstrip(".!"):
        return ApprovalAnswer(accept=True)
    if verb == "reject":
        return ApprovalAnswer(accept=False, reason=rest or None)
    return None


def is_stop(text: str) -> bool:
    """Whether a mention asks the bot to stop (`@openhands stop`)."""
    return text.strip().rstrip(".!").lower() == "stop"


def new_conversation_id(platform: str, delivery_id: str) -> str:
    """The id of the conversation a delivery starts: the same on every retry of its job,
    so an "on it" link posted by a failed attempt stays right."""
    return uuid.uuid5(_CONVERSATION_NAMESPACE, f"{platform}:{delivery_id}").hex


class _AlreadyRecorded(Exception):
    """Rolls back a turn whose delivery was recorded by an earlier attempt."""


async def record_turn(store: Store, queue: JobQueue, turn: Turn, *, continuing: bool) -> int | None:
    """Start or continue the conversation of `turn`, with a callback for its answer.

    One transaction: the link, the callback and the job that starts the
    conversation (or sends the follow-up) exist together or not at all. Returns the
    callback id, or None when this delivery was recorded before (a retried job). An
    accepted mention is counted, and its callback id bound for the log lines after.
    """
    # The processor keeps where its turn came from: its log lines and its reply's
    # carry the delivery id, and a follow-up's message times the mention -> agent
    # latency.
    origin = {"origin_delivery_id": turn.delivery_id, "origin_received_at": turn.received_at}
    processor = turn.processor.model_copy(
        update={**origin, "turn_message": turn.text} if continuing else origin
    )
    try:
        async with store.transaction():
            callback = await insert_callback(
                store, ConversationCallback.for_processor(turn.conversation_id, processor)
            )
            assert callback.id is not None
            if continuing:
                job_id = await queue.enqueue(
                    TURN_MESSAGE_JOB,
                    TurnMessagePayload(callback_id=callback.id),
                    key=turn.conversation_id,
                    idempotency_key=f"mention:{turn.platform}:{turn.delivery_id}",
                )
            else:
                job_id = await queue.enqueue(
                    START_JOB,
                    StartPayload(
                        conversation_id=turn.conversation_id,
                        prompt=turn.text,
                        tags=turn.tags,
                        platform=turn.platform,
                        delivery_id=turn.delivery_id,
                        callback_id=callback.id,
                        received_at=turn.received_at,
                        repository=turn.repository,
                        workspace=turn.workspace,
                    ),
                    key=turn.conversation_id,
                    idempotency_key=f"mention:{turn.platform}:{turn.delivery_id}",
                )
            if job_id is None:
                raise _AlreadyRecorded
            await save_link(
                store,
                ConversationLink(turn.platform, turn.thread_key, turn.conversation_id, turn.cursor),
            )
    except _AlreadyRecorded:
        _log_turn(turn, continuing, "recorded before")
        return None
    MENTIONS.labels(platform=turn.platform, outcome=MENTION_ACCEPTED).inc()
    bind(callback=callback.id)
    _log_turn(turn, continuing, callback.id)
    return callback.id


def _log_turn(turn: Turn, continuing: bool, callback: object) -> None:
    log.info(
        "%s %s: %s conversation %s (callback %s)",
        turn.platform,
        turn.thread_key,
        "continued" if continuing else "started",
        turn.conversation_id,
        callback,
    )


def count_refusal(platform: str, outcome: str) -> None:
    """A mention that starts nothing, counted by why (`no_permission`, ...)."""
    MENTIONS.labels(platform=platform, outcome=outcome).inc()


async def refuse(
    thread: MarkedThread,
    platform: str,
    thread_key: str,
    who: str,
    needed: str,
    *,
    key: str,
    detail: str = "",
) -> None:
    """The one polite reply to `who`, who may not start the agent (`needed`: the access
    the platform requires); `key` names the mention, so a retry posts it once."""
    await post_once(thread, f"@{who} {permission_refusal(needed)}", marker("refusal", key))
    count_refusal(platform, "no_permission")
    log.info("%s %s: %s may not trigger the agent%s", platform, thread_key, who, detail)
