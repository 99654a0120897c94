"""The job handlers that run processors: state changes, replies, conversation starts.

Each handler is idempotent, because the queue delivers at least once: a callback
that was closed is skipped, a reply is queued once per callback (idempotency key),
and starting a conversation uses the id agent-relay chose for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from agent.events import AgentStateChangedObservation
from agent.intake import STATE_CHANGED_JOB
from db.callbacks import (
    CallbackStatus,
    ConversationCallback,
    UnknownProcessorKind,
    active_callbacks,
    get_callback,
    save_callback,
)
from db.jobs import Job, PermanentJobError
from processors.base import (
    REPLY_JOB,
    ConversationCallbackProcessor,
    ProcessorContext,
    Reply,
    ReplyingProcessor,
    ReplyStatus,
)

log = logging.getLogger(__name__)

START_JOB = "conversation.start"
START_FAILED_TEXT = "The agent could not start working on this request."

JobHandler = Callable[[Job], Awaitable[None]]


def job_handlers(context: ProcessorContext) -> dict[str, JobHandler]:
    async def on_state_changed(job: Job) -> None:
        await run_processors(
            context,
            AgentStateChangedObservation.model_validate(job.payload["observation"]),
            only_callback_id=job.payload.get("callback_id"),
        )

    async def on_reply(job: Job) -> None:
        await deliver_reply(context, Reply.model_validate(job.payload))

    async def on_start(job: Job) -> None:
        await start_conversation(context, job.payload)

    return {STATE_CHANGED_JOB: on_state_changed, REPLY_JOB: on_reply, START_JOB: on_start}


async def load_processor(
    context: ProcessorContext, callback: ConversationCallback
) -> ConversationCallbackProcessor | None:
    """The callback's processor; a row that cannot be loaded is closed as ERROR."""
    try:
        processor: ConversationCallbackProcessor = callback.get_processor()
        return processor
    except (UnknownProcessorKind, ValidationError) as exc:
        reason = (
            str(exc)
            if isinstance(exc, UnknownProcessorKind)
            else f"processor of kind {callback.processor_type!r} does not load: "
            f"{exc.error_count()} validation error(s)"
        )
        log.error("callback %s: %s", callback.id, reason)
        callback.status, callback.status_reason = CallbackStatus.ERROR, reason
        await save_callback(context.store, callback)
        return None


async def run_processors(
    context: ProcessorContext,
    observation: AgentStateChangedObservation,
    *,
    only_callback_id: int | None = None,
) -> None:
    for callback in await active_callbacks(context.store, observation.conversation_id):
        if only_callback_id is not None and callback.id != only_callback_id:
            continue
        processor = await load_processor(context, callback)
        if processor is None:
            continue
        try:
            await processor(callback, observation, context)
        except PermanentJobError as exc:
            # Retrying will not help this callback; tell its thread instead of
            # leaving it waiting, and let the other callbacks run.
            log.error("callback %s failed for good: %s", callback.id, exc)
            if isinstance(processor, ReplyingProcessor):
                await processor.close(
                    callback,
                    context,
                    ReplyStatus.ERROR,
                    "agent-relay could not collect the agent's answer.",
                    reason=str(exc),
                )


async def deliver_reply(context: ProcessorContext, reply: Reply) -> None:
    callback = await get_callback(context.store, reply.callback_id)
    if callback is None:
        raise PermanentJobError(f"callback {reply.callback_id} no longer exists")
    try:
        processor = callback.get_processor()
    except (UnknownProcessorKind, ValidationError) as exc:
        raise PermanentJobError(f"callback {reply.callback_id}: {exc}") from exc
    if not isinstance(processor, ReplyingProcessor):
        raise PermanentJobError(f"processor kind {callback.processor_type!r} cannot reply")
    await processor.deliver(reply, context)
    log.info("reply of callback %s delivered (%s)", reply.callback_id, reply.status.value)


async def start_conversation(context: ProcessorContext, payload: dict[str, Any]) -> None:
    conversation_id = payload["conversation_id"]
    try:
        await context.agent.start_conversation(
            payload["prompt"], conversation_id=conversation_id, tags=payload.get("tags") or {}
        )
    except PermanentJobError as exc:
        for callback in await active_callbacks(context.store, conversation_id):
            processor = await load_processor(context, callback)
            if isinstance(processor, ReplyingProcessor):
                await processor.close(
                    callback, context, ReplyStatus.ERROR, START_FAILED_TEXT, reason=str(exc)
                )
        raise
    log.info("conversation %s started", conversation_id)
