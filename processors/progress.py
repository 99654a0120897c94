"""The live status of a turn: the "on it" message edited as the agent works.

The agent intake counts a turn's steps (agent.events.step_of) in the conversation's
row and queues at most one `turn.progress` job per batch, coalesced (one per edit
generation) and delayed until the message's interval has passed since its last
edit. The job edits the message when what it shows changed; a rate-limited edit
is tried again after the platform's Retry-After, and a lost one changes nothing
else. When the turn ends, the reply job makes the status final (`finish_status`)
before the answer is posted, and no progress edit starts after: an edit in flight
or one less than the message's interval ago holds the final one back (a lease in
the row), and the final mark stops every later one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from agent.events import PROGRESS_JOB, STOP_JOB
from db.agent_conversations import lock_conversation, request_stop
from db.callbacks import CallbackStatus, ConversationCallback, get_callback
from db.job_kinds import Job, JobHandler, RetryableJobError
from db.store import now
from db.workspaces import get_workspace
from processors.base import Reply, ReplyingProcessor, ReplyStatus
from processors.context import ProcessorContext
from processors.status import Outcome, TurnStatus

log = logging.getLogger(__name__)

# How long an edit may be in flight before another may start (the HTTP clients
# give up well before).
EDIT_LEASE_SECONDS = 60.0

_STATUS_COLUMNS = (
    "status_callback_id, status_interval, status_steps, status_step, status_edited_at,"
    " status_editing_until, status_shown, status_final, status_stopped_by"
)


def progress_handlers(context: ProcessorContext) -> dict[str, JobHandler]:
    async def on_progress(job: Job) -> None:
        await edit_progress(context, PROGRESS_JOB.payload_of(job).conversation_id)

    async def on_stop(job: Job) -> None:
        stop = STOP_JOB.payload_of(job)
        # Remembered first: the pause's state change then closes the turn in their name.
        await request_stop(context.store, stop.conversation_id, stop.who)
        await context.agent.pause(stop.conversation_id)
        log.info("conversation %s paused at the request of %s", stop.conversation_id, stop.who)

    return {PROGRESS_JOB.name: on_progress, STOP_JOB.name: on_stop}


async def arm_status(
    context: ProcessorContext, callback: ConversationCallback, processor: ReplyingProcessor
) -> None:
    """A turn starts: its status message (if it has one) shows its steps from now on."""
    interval = processor.status_interval
    if interval is None or not processor.has_status_message() or callback.id is None:
        return
    async with context.store.transaction():
        heard = await lock_conversation(context.store, callback.conversation_id)
        if heard.status_callback_id == callback.id:
            return  # a retried start: already armed
        await context.store.execute(
            "UPDATE agent_conversations SET status_callback_id = :callback,"
            " status_interval = :interval, status_steps = 0, status_step = NULL,"
            " status_generation = 0, status_edited_at = NULL, status_editing_until = NULL,"
            " status_shown = NULL, status_final = 0, status_stopped_by = NULL"
            " WHERE conversation_id = :id",
            {"id": callback.conversation_id, "callback": callback.id, "interval": interval},
        )


async def arm_started(context: ProcessorContext, callback_id: int | None) -> None:
    """`arm_status` for the callback a conversation's start was recorded with."""
    callback = await get_callback(context.store, callback_id) if callback_id else None
    if callback is None or callback.status is not CallbackStatus.ACTIVE:
        return
    processor = callback.get_processor()
    if isinstance(processor, ReplyingProcessor):
        await arm_status(context, callback, processor)


async def _status_row(context: ProcessorContext, conversation_id: str) -> Mapping[str, Any] | None:
    await lock_conversation(context.store, conversation_id)
    return await context.store.fetch_one(
        f"SELECT {_STATUS_COLUMNS} FROM agent_conversations WHERE conversation_id = :id",
        {"id": conversation_id},
    )


async def edit_progress(context: ProcessorContext, conversation_id: str) -> None:
    claimed = await _claim_edit(context, conversation_id)
    if claimed is None:
        return
    callback_id, processor, fingerprint, status = claimed
    shown: str | None = fingerprint
    retry: RetryableJobError | None = None
    try:
        await processor.edit_status(status, context)
    except RetryableJobError as exc:  # a 429 or an outage: the edit comes later
        log.info("status of callback %s not edited yet: %s", callback_id, exc)
        shown, retry = None, exc
    except Exception as exc:  # a lost edit changes nothing else
        log.warning("status of callback %s not edited: %s", callback_id, exc)
        shown = None
    await context.store.execute(
        "UPDATE agent_conversations SET status_editing_until = NULL,"
        " status_shown = COALESCE(:shown, status_shown)"
        " WHERE conversation_id = :id AND status_callback_id = :callback",
        {"id": conversation_id, "callback": callback_id, "shown": shown},
    )
    if retry is not None:
        raise retry


async def _claim_edit(
    context: ProcessorContext, conversation_id: str
) -> tuple[int, ReplyingProcessor, str, TurnStatus] | None:
    """In one transaction: whether to edit now, and with what; the edit is leased."""
    async with context.store.transaction():
        row = await _status_row(context, conversation_id)
        if row is None or row["status_callback_id"] is None or row["status_final"]:
            return None
        stamp = now()
        # The batches after this one queue a new job (agent.intake).
        values = {"id": conversation_id, "now": stamp, "until": stamp + EDIT_LEASE_SECONDS}
        await context.store.execute(
            "UPDATE agent_conversations SET status_generation = status_generation + 1"
            " WHERE conversation_id = :id",
            values,
        )
        shown = f"{row['status_steps']}|{row['status_step']}"
        busy = (row["status_editing_until"] or 0) > stamp
        if busy or shown == row["status_shown"]:
            return None
        found = await _current_turn(context, int(row["status_callback_id"]))
        if found is None:
            return None
        callback, processor = found
        await context.store.execute(
            "UPDATE agent_conversations SET status_edited_at = :now,"
            " status_editing_until = :until WHERE conversation_id = :id",
            values,
        )
    status = await _status(
        context,
        callback,
        processor,
        steps=int(row["status_steps"] or 0),
        step=row["status_step"],
        elapsed_until=stamp,
    )
    return int(row["status_callback_id"]), processor, shown, status


async def _current_turn(
    context: ProcessorContext, callback_id: int
) -> tuple[ConversationCallback, ReplyingProcessor] | None:
    callback = await get_callback(context.store, callback_id)
    if callback is None or callback.status is not CallbackStatus.ACTIVE:
        return None
    processor = callback.get_processor()
    if not isinstance(processor, ReplyingProcessor) or processor.turn_message is not None:
        return None
    return callback, processor


async def _status(
    context: ProcessorContext,
    callback: ConversationCallback,
    processor: ReplyingProcessor,
    *,
    steps: int,
    step: str | None,
    elapsed_until: float,
    outcome: Outcome | None = None,
    stopped_by: str | None = None,
) -> TurnStatus:
    workspace = await get_workspace(context.store, callback.conversation_id)
    started = processor.origin_received_at
    return TurnStatus(
        steps=steps,
        step=step,
        elapsed=max(0.0, elapsed_until - started) if started else None,
        url=context.conversation_url(callback.conversation_id),
        repository=workspace.repository if workspace else None,
        branch=workspace.branch if workspace else None,
        outcome=outcome,
        stopped_by=stopped_by,
        note=processor.status_note,
    )


async def finish_status(
    context: ProcessorContext, processor: ReplyingProcessor, reply: Reply
) -> None:
    """Show the turn's outcome in its status message before its answer is posted.

    The turn's progress edits ended when it closed (processors.base); one still in
    flight, or one less than the message's interval ago, makes the reply wait. The
    text depends on the reply alone, so a retried reply writes the same."""
    if processor.status_interval is None or not processor.has_status_message():
        return
    async with context.store.transaction():
        row = await _status_row(context, reply.conversation_id)
        ours = row is not None and row["status_callback_id"] == reply.callback_id
        if ours and row is not None and (row["status_editing_until"] or 0) > now():
            raise RetryableJobError("a status edit is in flight", retry_after=1.0)
        # The final edit keeps to the message's interval too (the platforms' limits
        # on edits do not know it is the last one): the answer waits that long.
        wait = (
            (row["status_edited_at"] or 0) + processor.status_interval - now()
            if ours and row is not None and row["status_shown"] != f"final|{_outcome(reply).value}"
            else 0.0
        )
        if wait > 0:
            raise RetryableJobError("the status was edited moments ago", retry_after=wait)
    outcome = _outcome(reply)
    shown = f"final|{outcome.value}"
    if ours and row is not None and row["status_shown"] == shown:
        return  # a retried reply: the status is final already
    callback = await get_callback(context.store, reply.callback_id)
    if callback is None:
        return
    status = await _status(
        context,
        callback,
        processor,
        steps=reply.steps or 0,
        step=None,
        elapsed_until=reply.stopped_at or now(),
        outcome=outcome,
        stopped_by=reply.stopped_by,
    )
    # A 429 or an outage makes the reply wait (it is retried); a message that is
    # gone for good does not keep the answer back.
    try:
        await processor.edit_status(status, context)
    except RetryableJobError:
        raise
    except Exception as exc:
        log.warning("final status of callback %s not shown: %s", reply.callback_id, exc)
        return
    await context.store.execute(
        "UPDATE agent_conversations SET status_shown = :shown"
        " WHERE conversation_id = :id AND status_callback_id = :callback",
        {"id": reply.conversation_id, "callback": reply.callback_id, "shown": shown},
    )


def _outcome(reply: Reply) -> Outcome:
    if reply.stopped_by is not None:
        return Outcome.STOPPED
    return Outcome.DONE if reply.status is ReplyStatus.COMPLETED else Outcome.FAILED
