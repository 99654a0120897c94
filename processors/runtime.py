"""The job handlers that run processors: state changes, catch-ups, replies, starts.

Each handler is idempotent, because the queue delivers at least once: a callback
that was closed is skipped, a reply is queued once per callback (idempotency key),
and starting a conversation uses the id agent-relay chose for it. A handler that
fails its last attempt closes the callbacks it was working for with a readable
failure, so nobody waits for an answer that will not come.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from pydantic import BaseModel, ValidationError

from agent.events import (
    START_JOB,
    STATE_CHANGED_JOB,
    STOPPED_STATES,
    TURN_MESSAGE_JOB,
    AgentStateChangedObservation,
    StartPayload,
    is_deletion_notice,
    state_for_status,
)
from db.callbacks import (
    CallbackStatus,
    ConversationCallback,
    UnknownProcessorKind,
    active_callbacks,
    get_callback,
    save_callback,
)
from db.conversation_links import forget_links
from db.job_kinds import Job, JobHandler, JobKind, PermanentJobError
from db.logcontext import bind, log_context
from db.metrics import MENTION_TO_AGENT_SECONDS, REPLIES, REPLY_SECONDS
from db.store import now
from processors.approvals import approval_handlers
from processors.base import (
    REPLY_JOB,
    ConversationCallbackProcessor,
    Reply,
    ReplyingProcessor,
    ReplyStatus,
    queue_next_turn,
)
from processors.context import ProcessorContext
from processors.hosts import CheckoutRefused
from processors.progress import arm_started, arm_status, finish_status, progress_handlers
from processors.summary import send_user_message_once
from processors.workspace import begin_turn, start_in_workspace

log = logging.getLogger(__name__)


class CatchUpPayload(BaseModel):
    callback_id: int


# Runs one newly registered callback if its conversation has already stopped.
CATCH_UP_JOB = JobKind("callback.catch_up", CatchUpPayload)

START_FAILED_TEXT = "The agent could not start working on this request."
MESSAGE_FAILED_TEXT = "The agent could not take up this message."
COLLECT_FAILED_TEXT = "agent-relay could not collect the agent's answer."
GAVE_UP_TEXT = "agent-relay could not reach the agent for too long and stopped waiting for it."


def job_handlers(context: ProcessorContext) -> dict[str, JobHandler]:
    """The handlers of the jobs that run processors, by job kind."""
    jobs = _RuntimeJobs(context)
    return {
        STATE_CHANGED_JOB.name: jobs.on_state_changed,
        CATCH_UP_JOB.name: jobs.on_catch_up,
        START_JOB.name: jobs.on_start,
        TURN_MESSAGE_JOB.name: jobs.on_turn_message,
        REPLY_JOB.name: jobs.on_reply,
        **progress_handlers(context),
        **approval_handlers(context),
    }


class _RuntimeJobs:
    def __init__(self, context: ProcessorContext) -> None:
        self.context = context

    async def on_state_changed(self, job: Job) -> None:
        payload = STATE_CHANGED_JOB.payload_of(job)
        observation = payload.observation
        if observation.received_at is None:
            # The job was queued when the event arrived.
            observation = observation.model_copy(update={"received_at": job.created_at})
        bind(conversation=observation.conversation_id)
        if is_deletion_notice(observation) and await self._runs_again(observation):
            return
        only = payload.callback_id
        await _closing_on_last_attempt(
            self.context,
            job,
            observation.conversation_id,
            only,
            run_processors(self.context, observation, only_callback_id=only),
        )

    async def _runs_again(self, observation: AgentStateChangedObservation) -> bool:
        """Whether a deleted conversation runs again under the same id: a start whose
        checkout did not finish deletes it and starts it afresh (processors.workspace),
        and the notice of that deletion is no end of the new one."""
        if await self.context.agent.get_conversation(observation.conversation_id) is None:
            return False
        log.info(
            "conversation %s was deleted and started again; its deletion ends no turn",
            observation.conversation_id,
        )
        return True

    async def on_catch_up(self, job: Job) -> None:
        callback = await self._active_callback(CATCH_UP_JOB.payload_of(job).callback_id)
        if callback is not None:
            await self._for_callback(job, callback, catch_up(self.context, callback))

    async def on_turn_message(self, job: Job) -> None:
        callback = await self._active_callback(TURN_MESSAGE_JOB.payload_of(job).callback_id)
        if callback is not None:
            await self._for_callback(job, callback, send_turn(self.context, callback))

    async def on_start(self, job: Job) -> None:
        start = START_JOB.payload_of(job)
        bind(
            delivery=start.delivery_id,
            conversation=start.conversation_id,
            callback=start.callback_id,
        )
        await _closing_on_last_attempt(
            self.context, job, start.conversation_id, None, start_conversation(self.context, start)
        )

    async def on_reply(self, job: Job) -> None:
        reply = REPLY_JOB.payload_of(job)
        bind(
            delivery=reply.origin_delivery_id,
            conversation=reply.conversation_id,
            callback=reply.callback_id,
        )
        try:
            await deliver_reply(self.context, reply)
        except Exception as exc:
            if isinstance(exc, PermanentJobError) or job.attempts >= job.max_attempts:
                await record_undelivered(self.context, reply, exc)
            raise

    async def _active_callback(self, callback_id: int) -> ConversationCallback | None:
        callback = await get_callback(self.context.store, callback_id)
        if callback is None or callback.status is not CallbackStatus.ACTIVE:
            return None
        bind(conversation=callback.conversation_id, callback=callback.id)
        return callback

    async def _for_callback(
        self, job: Job, callback: ConversationCallback, work: Awaitable[None]
    ) -> None:
        await _closing_on_last_attempt(
            self.context, job, callback.conversation_id, callback.id, work
        )


async def _closing_on_last_attempt(
    context: ProcessorContext,
    job: Job,
    conversation_id: str,
    only_callback_id: int | None,
    work: Awaitable[None],
) -> None:
    try:
        await work
    except PermanentJobError:
        raise  # the work closed what it could; the job is failed for good
    except Exception as exc:
        if job.attempts >= job.max_attempts:
            await close_callbacks(
                context,
                conversation_id,
                GAVE_UP_TEXT,
                reason=f"gave up after {job.attempts} attempts: {exc}",
                only_callback_id=only_callback_id,
            )
        raise


async def load_processor(
    context: ProcessorContext, callback: ConversationCallback
) -> ConversationCallbackProcessor | None:
    """The callback's processor; a row that cannot be loaded is closed as ERROR."""
    try:
        processor: ConversationCallbackProcessor = callback.get_processor()
        return processor
    except (UnknownProcessorKind, ValidationError) as exc:
        reason = _unloadable_reason(callback, exc)
        log.error("callback %s: %s", callback.id, reason)
        callback.status, callback.status_reason = CallbackStatus.ERROR, reason
        async with context.store.transaction():
            await save_callback(context.store, callback)
            if callback.id is not None:
                # A follow-up waiting behind this callback may go now.
                await queue_next_turn(
                    context, callback.conversation_id, closed_callback_id=callback.id
                )
        return None


def _unloadable_reason(callback: ConversationCallback, exc: Exception) -> str:
    # A ValidationError's text quotes the stored input, secrets included: count only.
    if isinstance(exc, ValidationError):
        return (
            f"processor of kind {callback.processor_type!r} does not load: "
            f"{exc.error_count()} validation error(s)"
        )
    return str(exc)


async def _active(
    context: ProcessorContext, conversation_id: str, only_callback_id: int | None
) -> list[ConversationCallback]:
    """The conversation's ACTIVE callbacks, or just the one named."""
    callbacks = await active_callbacks(context.store, conversation_id)
    return [c for c in callbacks if only_callback_id in (None, c.id)]


async def close_callbacks(
    context: ProcessorContext,
    conversation_id: str,
    text: str,
    *,
    reason: str,
    only_callback_id: int | None = None,
) -> None:
    """Close the conversation's ACTIVE callbacks (or one of them) with a failure reply."""
    for callback in await _active(context, conversation_id, only_callback_id):
        processor = await load_processor(context, callback)
        if isinstance(processor, ReplyingProcessor):
            await processor.close(callback, context, ReplyStatus.ERROR, text, reason=reason)


async def run_processors(
    context: ProcessorContext,
    observation: AgentStateChangedObservation,
    *,
    only_callback_id: int | None = None,
) -> None:
    for callback in await _active(context, observation.conversation_id, only_callback_id):
        processor = await load_processor(context, callback)
        if processor is None:
            continue
        with log_context(callback=callback.id, delivery=_origin(processor)):
            try:
                await processor(callback, observation, context)
            except PermanentJobError as exc:
                # Retrying will not help this callback; tell its thread instead of
                # leaving it waiting, and let the other callbacks run.
                log.error("callback %s failed for good: %s", callback.id, exc)
                if isinstance(processor, ReplyingProcessor):
                    await processor.close(
                        callback, context, ReplyStatus.ERROR, COLLECT_FAILED_TEXT, reason=str(exc)
                    )


def _origin(processor: ConversationCallbackProcessor) -> str | None:
    """The platform delivery a callback's turn came from, when it came from one."""
    return processor.origin_delivery_id if isinstance(processor, ReplyingProcessor) else None


async def catch_up(context: ProcessorContext, callback: ConversationCallback) -> None:
    """Run a new callback at once if its agent has already stopped.

    Queued behind the conversation's other jobs, so it looks at the agent after
    every state change that arrived before the callback existed was handled.
    """
    info = await context.agent.get_conversation(callback.conversation_id)
    if info is None:
        raise PermanentJobError(f"the agent-server has no conversation {callback.conversation_id}")
    known = await context.store.fetch_one(
        "SELECT last_agent_event_kind FROM agent_conversations WHERE conversation_id = :id",
        {"id": callback.conversation_id},
    )
    state = state_for_status(
        str(info.get("execution_status")), known["last_agent_event_kind"] if known else None
    )
    if state not in STOPPED_STATES:
        return
    observation = AgentStateChangedObservation(
        conversation_id=callback.conversation_id,
        agent_state=state,
        event_id=f"catch-up-{callback.id}",
    )
    await run_processors(context, observation, only_callback_id=callback.id)


async def deliver_reply(context: ProcessorContext, reply: Reply) -> None:
    callback = await get_callback(context.store, reply.callback_id)
    if callback is None:
        raise PermanentJobError(f"callback {reply.callback_id} no longer exists")
    try:
        processor = callback.get_processor()
    except (UnknownProcessorKind, ValidationError) as exc:
        raise PermanentJobError(
            f"callback {reply.callback_id}: {_unloadable_reason(callback, exc)}"
        ) from exc
    if not isinstance(processor, ReplyingProcessor):
        raise PermanentJobError(f"processor kind {callback.processor_type!r} cannot reply")
    await finish_status(context, processor, reply)
    await processor.deliver(reply, context)
    REPLIES.labels(platform=callback.processor_type, outcome="delivered").inc()
    if reply.stopped_at is not None:
        REPLY_SECONDS.labels(platform=callback.processor_type).observe(now() - reply.stopped_at)
    log.info("reply of callback %s delivered (%s)", reply.callback_id, reply.status.value)


async def start_conversation(context: ProcessorContext, start: StartPayload) -> None:
    conversation_id = start.conversation_id
    await arm_started(context, start.callback_id)
    try:
        if start.workspace is not None:
            await start_in_workspace(context, start)
        else:
            await context.agent.start_conversation(
                start.prompt,
                conversation_id=conversation_id,
                tags=start.tags,
                repository=start.repository,
            )
    except PermanentJobError as exc:
        # A checkout that cannot be made says why, in words for the thread.
        text = str(exc) if isinstance(exc, CheckoutRefused) else START_FAILED_TEXT
        async with context.store.transaction():
            await close_callbacks(context, conversation_id, text, reason=str(exc))
            # The conversation never came to be: the next mention in the thread
            # starts a new one instead of continuing this one.
            await forget_links(context.store, conversation_id)
        raise
    if start.received_at is not None:
        MENTION_TO_AGENT_SECONDS.labels(platform=start.platform).observe(now() - start.received_at)
    log.info("conversation %s started", conversation_id)


async def send_turn(context: ProcessorContext, callback: ConversationCallback) -> None:
    """Send a follow-up's message to its conversation, once every earlier turn has answered."""
    processor = await load_processor(context, callback)
    if not isinstance(processor, ReplyingProcessor) or processor.turn_message is None:
        return
    bind(delivery=processor.origin_delivery_id)
    earlier = [
        other
        for other in await active_callbacks(context.store, callback.conversation_id)
        if other.id is not None
        and callback.id is not None
        and other.id < callback.id
        # A row that does not load is closed here, and holds up nobody.
        and await load_processor(context, other) is not None
    ]
    if earlier:
        # An earlier turn is still under way; closing it queues this job again.
        log.info("callback %s waits for callback %s to answer", callback.id, earlier[0].id)
        return

    if not processor.turn_message_pending:
        await begin_turn(context, callback.conversation_id)
        await arm_status(context, callback, processor)

    async def mark(sent_after: str | None) -> None:
        processor.turn_message_pending = True
        processor.turn_message_after = sent_after
        await processor.remember(callback, context)

    try:
        await send_user_message_once(
            context,
            callback.conversation_id,
            processor.turn_message,
            pending=processor.turn_message_pending,
            sent_after=processor.turn_message_after,
            mark=mark,
        )
    except PermanentJobError as exc:
        await processor.close(
            callback, context, ReplyStatus.ERROR, MESSAGE_FAILED_TEXT, reason=str(exc)
        )
        raise
    processor.turn_message = None
    processor.turn_message_pending = False
    processor.turn_message_after = None
    await processor.remember(callback, context)
    if processor.origin_received_at is not None:
        MENTION_TO_AGENT_SECONDS.labels(platform=callback.processor_type).observe(
            now() - processor.origin_received_at
        )
    log.info("callback %s sent its message to %s", callback.id, callback.conversation_id)


async def record_undelivered(context: ProcessorContext, reply: Reply, exc: Exception) -> None:
    """A reply that will not arrive: its callback says so (ERROR, with the reason), so
    `callbacks show` and the API tell operators what the platform answered."""
    callback = await get_callback(context.store, reply.callback_id)
    if callback is None:
        return
    callback.status = CallbackStatus.ERROR
    callback.status_reason = f"reply not delivered: {exc}"
    await save_callback(context.store, callback)
    REPLIES.labels(platform=callback.processor_type, outcome="failed").inc()
    log.warning("reply of callback %s not delivered, for good: %s", reply.callback_id, exc)
