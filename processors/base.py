"""ConversationCallbackProcessor and the context processors run in.

A processor is a pydantic model stored (as JSON, under its registered kind) in a
conversation callback row. It is called with each state change of its conversation
and decides what to do; `ReplyingProcessor` holds the behaviour every platform
shares (collect the agent's answer, queue one reply, close the callback) and leaves
only the delivery of that reply to the platform.
"""

from __future__ import annotations

import logging
import uuid
from abc import ABC, abstractmethod
from enum import StrEnum
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ValidationError

from agent.events import (
    TURN_MESSAGE_JOB,
    AgentState,
    AgentStateChangedObservation,
    TurnMessagePayload,
)
from db.agent_conversations import end_status, stop_requested_by
from db.callbacks import (
    CallbackStatus,
    ConversationCallback,
    UnknownProcessorKind,
    active_callbacks,
    get_callback,
    reply_idempotency_key,
    save_callback,
)
from db.job_kinds import JobKind
from processors.context import ProcessorContext
from processors.outcome import turn_outcome
from processors.status import TurnStatus
from processors.summary import collect_summary
from processors.workspace import end_turn

log = logging.getLogger(__name__)

# Replies ride out platform outages of a few hours: 20 attempts with the queue's
# backoff (doubling from 2 s, capped at 30 min) keep trying for 2.5 to 5 hours.
REPLY_MAX_ATTEMPTS = 20


class ReplyStatus(StrEnum):
    COMPLETED = "completed"
    ERROR = "error"


class Reply(BaseModel):
    """What goes back to the place the conversation came from."""

    callback_id: int
    conversation_id: str
    status: ReplyStatus
    summary: str
    url: str | None = None
    # Fixed when the reply is queued, so every retry carries the same id and the
    # receiving side can drop duplicates.
    delivery_id: str
    # The platform delivery that asked (for the logs), and when the agent event that
    # produced this reply arrived (for the stop -> reply latency); None when unknown.
    origin_delivery_id: str | None = None
    stopped_at: float | None = None
    # The pull (merge) request the turn opened or pushed to: {"url", "number",
    # "branch", "created"} (processors.outcome); None without one.
    pull_request: dict[str, Any] | None = None
    # The steps the turn's status message counted (None: it had none), and who
    # stopped the turn, as the platform writes a person (None: nobody did).
    steps: int | None = None
    stopped_by: str | None = None


# Deliver a reply to where its conversation came from; the payload is the Reply.
REPLY_JOB = JobKind("callback.reply", Reply)


class ConversationCallbackProcessor(BaseModel, ABC):
    """Called with every state change of the callback's conversation."""

    processor_kind: ClassVar[str]

    @abstractmethod
    async def __call__(
        self,
        callback: ConversationCallback,
        observation: AgentStateChangedObservation,
        context: ProcessorContext,
    ) -> None: ...


_FAILURE_TEXT = {
    AgentState.ERROR: "The agent ran into an error and stopped before finishing.",
    AgentState.STUCK: "The agent got stuck repeating itself and stopped before finishing.",
    AgentState.RATE_LIMITED: (
        "The agent was rate-limited by its language model and stopped. Please try again later."
    ),
    AgentState.STOPPED: "The conversation was stopped before the agent answered.",
}
EMPTY_ANSWER_TEXT = "The agent finished without writing an answer."
ANSWER_STATES = frozenset({AgentState.AWAITING_USER_INPUT, AgentState.FINISHED})


def failure_text(state: AgentState, url: str | None) -> str:
    text = _FAILURE_TEXT.get(state, "The agent stopped before finishing.")
    return f"{text} Conversation: {url}" if url else text


class ReplyingProcessor(ConversationCallbackProcessor):
    """Answer once: the agent's summary when it stops, or a readable failure."""

    # Summary round-trip state (SUMMARY_MODE=instruction), kept in the row: the
    # instruction's event id once known, and the mark saved before sending it.
    summary_instruction_event_id: str | None = None
    summary_instruction_timestamp: str | None = None
    summary_instruction_pending: bool = False
    summary_requested_after: str | None = None
    # A follow-up turn (docs/ARCHITECTURE.md, Turns): the user message this callback
    # waits to send to an existing conversation. While it is set, the callback ignores
    # the conversation's state changes: they belong to an earlier turn.
    turn_message: str | None = None
    turn_message_pending: bool = False
    turn_message_after: str | None = None
    # Where the turn came from (set by bots.turns.record_turn): the platform's
    # delivery id, which every log line of the turn carries, and when it arrived.
    origin_delivery_id: str | None = None
    origin_received_at: float | None = None
    # What the turn's "on it" said that its status keeps saying (bots.turns): a
    # repository it works without.
    status_note: str | None = None

    # How often the platform lets the turn's status message be edited (seconds);
    # None: the platform keeps no status message (processors.progress).
    status_interval: ClassVar[float | None] = None

    def has_status_message(self) -> bool:
        """Whether this turn's "on it" message is there to be edited."""
        return False

    async def edit_status(self, status: TurnStatus, context: ProcessorContext) -> None:
        """Show `status` in the turn's "on it" message (platforms that keep one)."""

    @classmethod
    def of(cls, source: object, **fields: Any) -> Self:
        """The processor of a turn: each field of this platform's (none of the fields
        every ReplyingProcessor has) read from `source`'s attribute of the same name,
        where the trigger already says where the answer goes; `fields` give the rest."""
        own = cls.model_fields.keys() - ReplyingProcessor.model_fields.keys()
        found = {name: getattr(source, name) for name in own if hasattr(source, name)}
        return cls(**{**found, **fields})

    @abstractmethod
    async def deliver(self, reply: Reply, context: ProcessorContext) -> None:
        """Send the reply to the platform; raise RetryableJobError to be tried again."""

    async def __call__(
        self,
        callback: ConversationCallback,
        observation: AgentStateChangedObservation,
        context: ProcessorContext,
    ) -> None:
        url = context.conversation_url(callback.conversation_id)
        if self.turn_message is not None:
            return
        if observation.agent_state in _FAILURE_TEXT:
            await end_turn(context, callback.conversation_id)
            await self.close(
                callback,
                context,
                ReplyStatus.ERROR,
                failure_text(observation.agent_state, url),
                reason=f"agent state {observation.agent_state.value}",
                stopped_at=observation.received_at,
            )
            return
        if observation.agent_state is AgentState.PAUSED:
            await self._close_if_stopped(callback, context, observation)
            return
        if observation.agent_state not in ANSWER_STATES:
            return
        summary = await collect_summary(self, callback, context)
        if summary is not None:
            assert callback.id is not None
            answer = summary or EMPTY_ANSWER_TEXT
            outcome = await turn_outcome(
                context, callback.conversation_id, answer, callback_id=callback.id
            )
            await self.close(
                callback,
                context,
                ReplyStatus.COMPLETED,
                f"{outcome.headline}\n\n{answer}" if outcome else answer,
                stopped_at=observation.received_at,
                pull_request=outcome.pull_request if outcome else None,
            )

    async def _close_if_stopped(
        self,
        callback: ConversationCallback,
        context: ProcessorContext,
        observation: AgentStateChangedObservation,
    ) -> None:
        """A pause someone asked for in the thread ends the turn, with what the agent
        delivered so far (its pushes and pull request)."""
        who = await stop_requested_by(context.store, callback.conversation_id)
        if who is None:
            return  # paused elsewhere (the agent's own UI): the turn goes on later
        assert callback.id is not None
        text = f"Stopped by {who}."
        outcome = await turn_outcome(
            context, callback.conversation_id, text, callback_id=callback.id
        )
        await self.close(
            callback,
            context,
            ReplyStatus.COMPLETED,
            f"{text}\n\n{outcome.headline}" if outcome else text,
            reason=f"stopped by {who}",
            stopped_at=observation.received_at,
            pull_request=outcome.pull_request if outcome else None,
            stopped_by=who,
        )

    async def close(
        self,
        callback: ConversationCallback,
        context: ProcessorContext,
        status: ReplyStatus,
        text: str,
        *,
        reason: str | None = None,
        stopped_at: float | None = None,
        pull_request: dict[str, Any] | None = None,
        stopped_by: str | None = None,
    ) -> None:
        """Queue the one reply and close the callback, atomically; `stopped_at` is when
        the agent event that led to it arrived."""
        assert callback.id is not None
        async with context.store.transaction():
            current = await get_callback(context.store, callback.id)
            if current is None or current.status is not CallbackStatus.ACTIVE:
                return
            # The status message takes no more progress edits: its outcome is next.
            # (A turn without one, such as an API callback's, has no row to end.)
            steps = (
                await end_status(context.store, callback.conversation_id, callback.id)
                if self.status_interval is not None and self.has_status_message()
                else None
            )
            reply = Reply(
                callback_id=callback.id,
                conversation_id=callback.conversation_id,
                status=status,
                summary=text,
                url=context.conversation_url(callback.conversation_id),
                delivery_id=uuid.uuid4().hex,
                origin_delivery_id=self.origin_delivery_id,
                stopped_at=stopped_at,
                pull_request=pull_request,
                steps=steps,
                stopped_by=stopped_by,
            )
            await context.queue.enqueue(
                REPLY_JOB,
                reply,
                # Replies of one conversation arrive in turn order; their own key
                # keeps a platform outage from holding up the conversation's jobs.
                key=f"reply:{callback.conversation_id}",
                idempotency_key=reply_idempotency_key(callback.id),
                max_attempts=REPLY_MAX_ATTEMPTS,
            )
            current.set_processor(self)
            current.status = (
                CallbackStatus.COMPLETED
                if status is ReplyStatus.COMPLETED
                else CallbackStatus.ERROR
            )
            current.status_reason = reason
            await save_callback(context.store, current)
            await queue_next_turn(context, callback.conversation_id, closed_callback_id=callback.id)
        log.info("callback %s closed as %s", callback.id, status.value)

    async def remember(self, callback: ConversationCallback, context: ProcessorContext) -> None:
        """Persist this processor's state in its callback row."""
        callback.set_processor(self)
        await save_callback(context.store, callback)

    async def remember_delivery(self, reply: Reply, context: ProcessorContext) -> None:
        """Persist this processor's state while its reply is being delivered (a reply
        of several messages records each one, so a retry does not post it again)."""
        callback = await get_callback(context.store, reply.callback_id)
        if callback is not None:
            await self.remember(callback, context)


async def waiting_turns(
    context: ProcessorContext, conversation_id: str
) -> list[tuple[ConversationCallback, ReplyingProcessor]]:
    """The conversation's ACTIVE callbacks whose follow-up message is not sent yet, oldest first."""
    waiting = []
    for callback in await active_callbacks(context.store, conversation_id):
        try:
            processor = callback.get_processor()
        except (UnknownProcessorKind, ValidationError):
            continue  # the runtime closes such rows when it meets them
        if isinstance(processor, ReplyingProcessor) and processor.turn_message is not None:
            waiting.append((callback, processor))
    return waiting


async def queue_next_turn(
    context: ProcessorContext, conversation_id: str, *, closed_callback_id: int
) -> None:
    """A turn ended: let the oldest waiting follow-up send its message.

    Turns of one conversation take turns: a follow-up's message goes to the agent
    only once every earlier callback of the conversation has answered, so each
    answer belongs to exactly one turn.
    """
    waiting = await waiting_turns(context, conversation_id)
    if waiting:
        next_callback, _ = waiting[0]
        assert next_callback.id is not None  # a stored row
        await context.queue.enqueue(
            TURN_MESSAGE_JOB,
            TurnMessagePayload(callback_id=next_callback.id),
            key=conversation_id,
            idempotency_key=f"turn:{next_callback.id}:after:{closed_callback_id}",
        )
