"""What an agent waiting for confirmation asks, recorded once per stop.

With CONFIRMATION_POLICY `always` or `risky` the agent-server holds tool calls and
stops at `waiting_for_confirmation` (AgentState.AWAITING_USER_CONFIRMATION). That is
not the end of a turn: the callback stays ACTIVE. `record_request` reads the held
actions (openhands-agent-server 1.58.2: the newest ActionEvents without an
observation), records them once (db.approvals, keyed by the oldest held action) and,
in the same transaction, queues the job that posts the request in the thread and the
delayed job that rejects it when nobody answers in time. The job handlers and the
answer's path are processors.approvals; this module is what ReplyingProcessor needs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from agent.events import command_of, one_line, trimmed
from db.approvals import PENDING, Approval, expire_approvals, get_approval, insert_approval
from db.callbacks import ConversationCallback
from db.job_kinds import JobKind
from db.jobs import JobQueue
from processors.context import ProcessorContext

log = logging.getLogger(__name__)

# What a request shows of each action: the reason on one line, the command whole
# (an approver must see what runs) up to a length a thread can hold.
REASON_CHARS = 300
COMMAND_CHARS = 2000
# How many of the newest events are read to find the held actions (a batch of
# parallel tool calls and the status updates around it fit many times over).
EVENTS_READ = 50
# The answer a request gets when nobody answers in CONFIRMATION_TIMEOUT seconds.
TIMEOUT_REASON = "no answer in the thread"
# Approval jobs ride out platform outages of hours, as replies do (processors.base).
APPROVAL_MAX_ATTEMPTS = 20


@dataclass(frozen=True)
class HeldAction:
    """One tool call the agent waits to have confirmed, as the thread shows it."""

    action_id: str
    tool: str
    # The command, file or URL it acts on, as the agent-server masked it, trimmed.
    detail: str
    # Why, in the agent's words (its thought, else its summary), one line.
    reason: str


@dataclass(frozen=True)
class ApprovalRequest:
    """A recorded request as a platform shows it (bots.texts renders it)."""

    id: int
    conversation_id: str
    actions: list[HeldAction]
    url: str | None
    state: str
    accept: bool | None = None
    answered_by: str | None = None
    reason: str | None = None

    @property
    def waiting(self) -> bool:
        """Whether it still takes an answer (a Slack request keeps its buttons)."""
        return self.state == PENDING

    @classmethod
    def of(cls, approval: Approval, url: str | None) -> ApprovalRequest:
        actions = [HeldAction(**item) for item in json.loads(approval.actions)]
        return cls(
            id=approval.id,
            conversation_id=approval.conversation_id,
            actions=actions,
            url=url,
            state=approval.state,
            accept=approval.accept,
            answered_by=approval.answered_by,
            reason=approval.reason,
        )


class ApprovalPostPayload(BaseModel):
    approval_id: int


class ApprovalAnswerPayload(BaseModel):
    """An answer to an approval request, from a thread or from the timeout."""

    approval_id: int
    accept: bool
    # A rejection's reason, which the agent reads; None: none given.
    reason: str | None = Field(default=None, max_length=2000)
    # Who answered, as the platform writes a person ("@alice", "<@U1>"); None: the
    # relay itself (the timeout).
    who: str | None = None
    # The platform delivery (or Slack interaction) that answered: a job per delivery.
    delivery_id: str


# Post a recorded request in its thread, and show "Waiting for approval" in the turn's status.
APPROVAL_POST_JOB = JobKind("approval.post", ApprovalPostPayload)
# Give a request its answer (processors.approvals.answer_approval).
APPROVAL_ANSWER_JOB = JobKind("approval.answer", ApprovalAnswerPayload)


def held_actions(events: list[dict[str, Any]]) -> list[HeldAction]:
    """The agent's newest tool calls that have no observation yet, oldest first, from
    events listed newest first. A held batch ends at the agent's first call that has
    one (or at a user message)."""
    answered: set[str] = set()
    held: list[HeldAction] = []
    for event in events:
        action_id = event.get("action_id")
        if isinstance(action_id, str):
            answered.add(action_id)
            continue
        if event.get("kind") == "MessageEvent" and event.get("source") == "user":
            break
        if event.get("kind") != "ActionEvent" or event.get("source") != "agent":
            continue
        if event.get("id") in answered:
            break
        held.append(_held(event))
    return held[::-1]


def _held(event: dict[str, Any]) -> HeldAction:
    action = event.get("action") if isinstance(event.get("action"), dict) else {}
    assert isinstance(action, dict)
    tool = str(event.get("tool_name") or action.get("kind") or "tool")
    return HeldAction(
        action_id=str(event.get("id")),
        tool=tool,
        detail=trimmed(command_of(action), COMMAND_CHARS),
        reason=one_line(_reason(event, tool), REASON_CHARS),
    )


def _reason(event: dict[str, Any], tool: str) -> str:
    thought = event.get("thought")
    if isinstance(thought, list):
        text = " ".join(
            str(part.get("text") or "") for part in thought if isinstance(part, dict)
        ).strip()
        if text:
            return text
    summary = event.get("summary")
    # openhands-agent-server 1.58.2 writes "tool: {json args}" when the LLM gave none.
    if isinstance(summary, str) and not summary.startswith(f"{tool}: {{"):
        return summary
    return ""


async def record_request(
    context: ProcessorContext, callback: ConversationCallback, event_id: str
) -> Approval | None:
    """The agent waits for confirmation (its stop's event `event_id`): record what it
    holds once, and queue the request's post and its timeout. None when this stop was
    recorded before, or nothing is held (a stale stop)."""
    assert callback.id is not None
    events, _ = await context.agent.search_events(
        callback.conversation_id, newest_first=True, limit=EVENTS_READ
    )
    actions = held_actions(events)
    if not actions:
        log.info(
            "conversation %s waits for confirmation (event %s), but holds no action",
            callback.conversation_id,
            event_id,
        )
        return None
    async with context.store.transaction():
        approval = await insert_approval(
            context.store,
            callback.conversation_id,
            callback.id,
            actions[0].action_id,
            json.dumps([action.__dict__ for action in actions]),
        )
        if approval is None:
            return None
        await context.queue.enqueue(
            APPROVAL_POST_JOB,
            ApprovalPostPayload(approval_id=approval.id),
            key=approval_key(callback.conversation_id),
            idempotency_key=f"approval-post:{approval.id}",
            max_attempts=APPROVAL_MAX_ATTEMPTS,
        )
        # No key: a delayed job would hold up the answers queued behind it.
        await context.queue.enqueue(
            APPROVAL_ANSWER_JOB,
            ApprovalAnswerPayload(
                approval_id=approval.id,
                accept=False,
                reason=TIMEOUT_REASON,
                delivery_id=f"timeout:{approval.id}",
            ),
            idempotency_key=f"approval-timeout:{approval.id}",
            delay=context.confirmation_timeout,
            max_attempts=APPROVAL_MAX_ATTEMPTS,
        )
    log.info(
        "conversation %s waits for approval %s of %d action(s)",
        callback.conversation_id,
        approval.id,
        len(actions),
    )
    return approval


async def expire_requests(
    context: ProcessorContext, conversation_id: str, callback_id: int
) -> None:
    """The turn ended (answered, failed, stopped) with requests nobody answered: they
    take no answer any more, and their messages say so (queued in the caller's
    transaction; the post job edits an answered request)."""
    for approval_id in await expire_approvals(context.store, callback_id):
        await context.queue.enqueue(
            APPROVAL_POST_JOB,
            ApprovalPostPayload(approval_id=approval_id),
            key=approval_key(conversation_id),
            idempotency_key=f"approval-expired:{approval_id}",
            max_attempts=APPROVAL_MAX_ATTEMPTS,
        )


def approval_key(conversation_id: str) -> str:
    """The job key of a conversation's approval jobs: a request is posted before any
    answer edits it, and answers take turns."""
    return f"approval:{conversation_id}"


async def queue_answer(queue: JobQueue, answer: ApprovalAnswerPayload) -> bool:
    """Queue `answer` once per delivery; False when that delivery's answer was queued
    before, or there is no such request. Runs in the caller's transaction if any."""
    approval = await get_approval(queue.store, answer.approval_id)
    if approval is None:
        return False
    job_id = await queue.enqueue(
        APPROVAL_ANSWER_JOB,
        answer,
        key=approval_key(approval.conversation_id),
        idempotency_key=f"approval-answer:{answer.delivery_id}",
        max_attempts=APPROVAL_MAX_ATTEMPTS,
    )
    return job_id is not None
