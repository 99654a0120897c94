"""The summary round trip: getting from a stopped agent an answer worth posting.

SUMMARY_MODE=instruction (default): at the first stop, send the summary instruction
as a user message and remember that message's event id; at a later stop, the answer
is the agent's newest message or FinishAction after that event. `ask_agent` asks the
question out of band (no event recorded); `final_response` takes the agent's final
response as it stands.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from agent.events import agent_event_kind
from db.callbacks import ConversationCallback
from db.job_kinds import RetryableJobError
from processors.context import ProcessorContext, SummaryMode

log = logging.getLogger(__name__)


class SummaryState(Protocol):
    """The round trip's state, which a ReplyingProcessor keeps in its callback row."""

    summary_instruction_event_id: str | None
    summary_instruction_timestamp: str | None
    summary_instruction_pending: bool
    summary_requested_after: str | None

    async def remember(self, callback: ConversationCallback, context: ProcessorContext) -> None:
        """Persist the state in the callback row."""


SUMMARY_INSTRUCTION = (
    "Please write the reply to the person who asked for this task. In a few short "
    "paragraphs: what you did, what the result is (links to any branch, pull request or "
    "file you changed), and anything they still need to decide or do. If you still need "
    "an answer from them, ask it plainly. Reply with that text only."
)

# A stop may arrive long after the instruction; the walk back to it is bounded so a
# runaway conversation cannot make one job page through it forever.
_MAX_PAGES = 20


async def collect_summary(
    processor: SummaryState,
    callback: ConversationCallback,
    context: ProcessorContext,
) -> str | None:
    """The text to post, or None while the round trip is still under way."""
    conversation_id = callback.conversation_id
    if context.summary_mode is SummaryMode.ASK_AGENT:
        return await context.agent.ask_agent(conversation_id, SUMMARY_INSTRUCTION)
    if context.summary_mode is SummaryMode.FINAL_RESPONSE:
        return await context.agent.final_response(conversation_id)
    if processor.summary_instruction_event_id is None:
        await _request_summary(processor, callback, context)
        return None
    return await _answer_after_instruction(processor, conversation_id, context)


async def _request_summary(
    processor: SummaryState, callback: ConversationCallback, context: ProcessorContext
) -> None:
    """Send the summary instruction once, and remember its event id."""

    async def mark(sent_after: str | None) -> None:
        processor.summary_instruction_pending = True
        processor.summary_requested_after = sent_after
        await processor.remember(callback, context)

    instruction = await send_user_message_once(
        context,
        callback.conversation_id,
        SUMMARY_INSTRUCTION,
        pending=processor.summary_instruction_pending,
        sent_after=processor.summary_requested_after,
        mark=mark,
    )
    processor.summary_instruction_event_id = str(instruction["id"])
    processor.summary_instruction_timestamp = instruction.get("timestamp")
    await processor.remember(callback, context)
    log.info(
        "callback %s asked conversation %s for its summary", callback.id, callback.conversation_id
    )


async def send_user_message_once(
    context: ProcessorContext,
    conversation_id: str,
    text: str,
    *,
    pending: bool,
    sent_after: str | None,
    mark: Callable[[str | None], Awaitable[None]],
) -> dict[str, Any]:
    """Send `text` as a user message at most once, also across retries; returns its event.

    The agent-server does not say which event a sent message became, so it is looked
    up afterwards. Before sending, `mark` persists the newest user message id (the
    caller then passes pending=True and that id as `sent_after`): an attempt that
    died after sending is recognised on retry by a user message newer than the mark,
    and the text is not sent twice.
    """
    newest = await _newest_user_message(context, conversation_id)
    sent_before = pending and newest is not None and newest["id"] != sent_after
    if not sent_before:
        if not pending:
            sent_after = None if newest is None else str(newest["id"])
            await mark(sent_after)
        await context.agent.send_message(conversation_id, text)
        newest = await _newest_user_message(context, conversation_id)
        if newest is None or newest["id"] == sent_after:
            raise RetryableJobError("the sent message is not among the agent's events yet")
    assert newest is not None
    return newest


async def _newest_user_message(
    context: ProcessorContext, conversation_id: str
) -> dict[str, Any] | None:
    events, _ = await context.agent.search_events(
        conversation_id, kind="MessageEvent", source="user", newest_first=True, limit=1
    )
    return events[0] if events else None


async def _answer_after_instruction(
    processor: SummaryState, conversation_id: str, context: ProcessorContext
) -> str | None:
    page_id = None
    for _ in range(_MAX_PAGES):
        events, page_id = await context.agent.search_events(
            conversation_id,
            newest_first=True,
            since=processor.summary_instruction_timestamp,
            page_id=page_id,
        )
        for event in events:
            if event.get("id") == processor.summary_instruction_event_id:
                # Reached the instruction: the agent has not answered it yet, so
                # this stop is an older one arriving late.
                return None
            if agent_event_kind(event) in ("message", "finish"):
                return event_text(event)
        if page_id is None:
            return None
    return None


def event_text(event: dict[str, Any]) -> str:
    """The human-readable text of an agent MessageEvent or FinishAction."""
    action = event.get("action")
    finish_message = action.get("message") if isinstance(action, dict) else None
    if isinstance(finish_message, str):
        return finish_message.strip()
    message = event.get("llm_message") or {}
    parts = [
        part.get("text", "")
        for part in message.get("content") or []
        if isinstance(part, dict) and part.get("type") == "text"
    ]
    return "\n".join(part for part in parts if part).strip()
