"""Approvals: the thread answers what the agent waits to run.

A request is recorded once per stop (processors.confirmation, from the turn's
ReplyingProcessor) and posted by the `approval.post` job through the processor's
`post_approval` hook; that job also shows "Waiting for approval" in the turn's status
message. Each answer is an `approval.answer` job, one per delivery, queued by
`answer_approval`, which every platform calls with the same arguments:

    await answer_approval(queue, approval_id=..., accept=True | False,
                          reason="..." | None, who="@alice" | "<@U1>" | None,
                          delivery_id="slack:<interaction id>")

Who may answer is the caller's decision (GitHub: write access; GitLab: Developer;
Slack: the person who asked, `(await turn_processor(store, approval)).user`, and
SLACK_APPROVERS); `db.approvals.get_approval(store, id).state` says whether it still
waits (`pending`). The job makes the
first answer win (a conditional UPDATE of the pending row), gives it to the
agent-server once, and edits the posted request to "Approved by ..." or "Rejected
by ...: reason" through the processor's `edit_approval` hook. Later answers,
repeated deliveries and answers to a request already answered do nothing. A request
nobody answers is rejected after CONFIRMATION_TIMEOUT by the same job, queued
delayed when the request was recorded.

Crash-safe: claim (UPDATE to `answering`) -> call -> mark (`approved`/`rejected`).
A retry of the claimed answer asks the agent-server first: it answers only while
the agent still holds the request's action, and a rejection that reached it (the
action has its UserRejectObservation, the conversation idles) only needs the run
that lets the agent go on.
"""

from __future__ import annotations

import logging

from db.approvals import (
    ANSWERING,
    PENDING,
    Approval,
    claim_answer,
    get_approval,
    mark_answered,
    set_message_id,
)
from db.callbacks import get_callback
from db.job_kinds import Job, JobHandler, PermanentJobError
from db.jobs import JobQueue
from db.logcontext import bind
from db.store import Store
from processors.base import ReplyingProcessor
from processors.confirmation import (
    APPROVAL_ANSWER_JOB,
    APPROVAL_POST_JOB,
    EVENTS_READ,
    ApprovalAnswerPayload,
    ApprovalRequest,
    held_actions,
    queue_answer,
)
from processors.context import ProcessorContext
from processors.progress import edit_progress

log = logging.getLogger(__name__)

WAITING_FOR_CONFIRMATION = "waiting_for_confirmation"
# What a rejected conversation's execution_status is until it is run again.
IDLE = "idle"


async def answer_approval(
    queue: JobQueue,
    *,
    approval_id: int,
    accept: bool,
    reason: str | None,
    who: str | None,
    delivery_id: str,
) -> bool:
    """Queue an answer to approval `approval_id` (the id a Slack button's value
    carries); once per `delivery_id`, which should name the platform ("slack:...").
    `who` as the platform writes a person; `reason` (a rejection's) goes to the agent.
    False when this delivery's answer was queued before or there is no such request;
    whether the answer wins is decided when its job runs."""
    return await queue_answer(
        queue,
        ApprovalAnswerPayload(
            approval_id=approval_id,
            accept=accept,
            reason=(reason or "").strip() or None,
            who=who,
            delivery_id=delivery_id,
        ),
    )


def approval_handlers(context: ProcessorContext) -> dict[str, JobHandler]:
    async def on_post(job: Job) -> None:
        await post_request(context, APPROVAL_POST_JOB.payload_of(job).approval_id)

    async def on_answer(job: Job) -> None:
        await give_answer(context, APPROVAL_ANSWER_JOB.payload_of(job))

    return {APPROVAL_POST_JOB.name: on_post, APPROVAL_ANSWER_JOB.name: on_answer}


async def turn_processor(store: Store, approval: Approval) -> ReplyingProcessor | None:
    """The processor of the turn `approval` belongs to, whose fields also say who asked
    for the turn (Slack: `SlackCallbackProcessor.user`, a member id)."""
    callback = await get_callback(store, approval.callback_id)
    if callback is None:
        return None
    processor = callback.get_processor()
    return processor if isinstance(processor, ReplyingProcessor) else None


def _request(context: ProcessorContext, approval: Approval) -> ApprovalRequest:
    return ApprovalRequest.of(approval, context.conversation_url(approval.conversation_id))


async def post_request(context: ProcessorContext, approval_id: int) -> None:
    """Post the request in its thread (once: the message id is kept), then show
    "Waiting for approval" in the turn's status message."""
    approval = await get_approval(context.store, approval_id)
    if approval is None:
        return
    bind(conversation=approval.conversation_id, callback=approval.callback_id)
    processor = await turn_processor(context.store, approval)
    if processor is None:
        raise PermanentJobError(f"approval {approval_id}: its turn's processor does not load")
    if approval.message_id is None:
        message_id = await processor.post_approval(_request(context, approval), context)
        if message_id is not None:
            await set_message_id(context.store, approval_id, message_id)
            approval = await get_approval(context.store, approval_id) or approval
            log.info("approval %s asked in message %s", approval_id, message_id)
    if approval.answered and approval.message_id is not None:
        # Answered (the timeout, another platform's click) while this post waited.
        await processor.edit_approval(_request(context, approval), approval.message_id, context)
    await edit_progress(context, approval.conversation_id, must=True)


async def give_answer(context: ProcessorContext, answer: ApprovalAnswerPayload) -> None:
    approval = await get_approval(context.store, answer.approval_id)
    if approval is None:
        log.info("approval %s does not exist; answer ignored", answer.approval_id)
        return
    bind(conversation=approval.conversation_id, callback=approval.callback_id)
    if approval.state == PENDING:
        await claim_answer(
            context.store,
            approval.id,
            accept=answer.accept,
            reason=answer.reason,
            who=answer.who,
            delivery_id=answer.delivery_id,
        )
        approval = await get_approval(context.store, approval.id) or approval
    if approval.answer_delivery_id != answer.delivery_id:
        log.info(
            "approval %s was answered before (%s); %s's answer does nothing",
            approval.id,
            approval.state,
            answer.who or "the timeout",
        )
        return
    if approval.state == ANSWERING:
        await _send_to_agent(context, approval)
        await mark_answered(context.store, approval.id)
        approval = await get_approval(context.store, approval.id) or approval
        log.info(
            "approval %s %s by %s",
            approval.id,
            approval.state,
            approval.answered_by or "the timeout",
        )
    # Shown by every attempt until it succeeds: a 429 delays it, never drops it.
    if approval.message_id is not None:
        processor = await turn_processor(context.store, approval)
        if processor is not None:
            await processor.edit_approval(_request(context, approval), approval.message_id, context)
    # The status message goes back to the agent's step (unless the turn has ended).
    await edit_progress(context, approval.conversation_id)


async def _send_to_agent(context: ProcessorContext, approval: Approval) -> None:
    """Give the claimed answer to the agent-server, unless an earlier attempt did."""
    conversation_id = approval.conversation_id
    info = await context.agent.get_conversation(conversation_id)
    status = str((info or {}).get("execution_status") or "")
    events, _ = await context.agent.search_events(
        conversation_id, newest_first=True, limit=EVENTS_READ
    )
    holds_it = approval.action_id in {action.action_id for action in held_actions(events)}
    if status == WAITING_FOR_CONFIRMATION and holds_it:
        await context.agent.respond_to_confirmation(
            conversation_id, accept=bool(approval.accept), reason=_agent_reason(approval)
        )
        if not approval.accept:
            # A rejection leaves the conversation idle: the agent reads it when it runs.
            await context.agent.run(conversation_id)
    elif not approval.accept and status == IDLE and not holds_it:
        await context.agent.run(conversation_id)  # the rejection reached it; the run did not
    else:
        log.info(
            "conversation %s no longer waits for approval %s (%s); nothing sent",
            conversation_id,
            approval.id,
            status or "unknown",
        )


def _agent_reason(approval: Approval) -> str | None:
    """What the agent reads after "Action rejected: "."""
    if approval.accept:
        return None
    who = approval.answered_by or "agent-relay"
    return f"{who}: {approval.reason}" if approval.reason else f"{who} gave no reason."
