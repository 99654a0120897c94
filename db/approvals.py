"""Approval requests: the actions an agent waits to have confirmed, and their answer.

A row is written when a turn's agent stops at `waiting_for_confirmation`
(processors.approvals), keyed by the oldest held action, so the same stop recorded
twice is one row. Its `state` moves once, by conditional UPDATEs: `pending` ->
`answering` (one answer claimed it: who, accept, reason and the delivery that asked)
-> `approved` or `rejected` once the agent-server has the answer; or `pending` ->
`expired` when the turn ended before anyone answered. `actions` is JSON
written by the layer above; this module only stores it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from db.store import Store, now

PENDING = "pending"
ANSWERING = "answering"
APPROVED = "approved"
REJECTED = "rejected"
EXPIRED = "expired"

_COLUMNS = (
    "id, conversation_id, callback_id, action_id, actions, state, message_id, accept,"
    " reason, answered_by, answer_delivery_id, created_at, answered_at"
)


@dataclass(frozen=True)
class Approval:
    id: int
    conversation_id: str
    callback_id: int
    # The oldest held action's event id on the agent-server.
    action_id: str
    actions: str
    state: str
    # The platform's id of the posted request (a comment id, a Slack ts).
    message_id: str | None
    accept: bool | None
    reason: str | None
    # Who answered, as the platform writes a person; None for the timeout.
    answered_by: str | None
    answer_delivery_id: str | None
    created_at: float
    answered_at: float | None

    @property
    def answered(self) -> bool:
        return self.state in (APPROVED, REJECTED, EXPIRED)


def _approval(row: Mapping[str, Any] | None) -> Approval | None:
    if row is None:
        return None
    accept = row["accept"]
    return Approval(**{**row, "accept": None if accept is None else bool(accept)})


async def insert_approval(
    store: Store, conversation_id: str, callback_id: int, action_id: str, actions: str
) -> Approval | None:
    """Record a pending request; None when this stop's request was recorded before."""
    row = await store.fetch_one(
        "INSERT INTO approvals (conversation_id, callback_id, action_id, actions, state,"
        " created_at) VALUES (:conversation, :callback, :action, :actions, :state, :now)"
        f" ON CONFLICT (conversation_id, action_id) DO NOTHING RETURNING {_COLUMNS}",
        {
            "conversation": conversation_id,
            "callback": callback_id,
            "action": action_id,
            "actions": actions,
            "state": PENDING,
            "now": now(),
        },
    )
    return _approval(row)


async def get_approval(store: Store, approval_id: int) -> Approval | None:
    row = await store.fetch_one(
        f"SELECT {_COLUMNS} FROM approvals WHERE id = :id", {"id": approval_id}
    )
    return _approval(row)


async def pending_approval(store: Store, conversation_id: str) -> Approval | None:
    """The conversation's newest request still waiting for an answer."""
    row = await store.fetch_one(
        f"SELECT {_COLUMNS} FROM approvals WHERE conversation_id = :id AND state = :state"
        " ORDER BY id DESC LIMIT 1",
        {"id": conversation_id, "state": PENDING},
    )
    return _approval(row)


async def callback_waits_for_approval(store: Store, callback_id: int) -> bool:
    """Whether the turn of `callback_id` has a request nobody has answered yet."""
    row = await store.fetch_one(
        "SELECT 1 AS found FROM approvals WHERE callback_id = :callback AND state = :state",
        {"callback": callback_id, "state": PENDING},
    )
    return row is not None


async def claim_answer(
    store: Store,
    approval_id: int,
    *,
    accept: bool,
    reason: str | None,
    who: str | None,
    delivery_id: str,
) -> bool:
    """Make this the request's answer if it has none: the first answer wins."""
    row = await store.fetch_one(
        "UPDATE approvals SET state = :answering, accept = :accept, reason = :reason,"
        " answered_by = :who, answer_delivery_id = :delivery, answered_at = :now"
        " WHERE id = :id AND state = :pending RETURNING id",
        {
            "id": approval_id,
            "answering": ANSWERING,
            "pending": PENDING,
            "accept": int(accept),
            "reason": reason,
            "who": who,
            "delivery": delivery_id,
            "now": now(),
        },
    )
    return row is not None


async def mark_answered(store: Store, approval_id: int) -> None:
    """The agent-server has the claimed answer."""
    await store.execute(
        "UPDATE approvals SET state = CASE WHEN accept = 1 THEN :approved ELSE :rejected END"
        " WHERE id = :id AND state = :answering",
        {"id": approval_id, "approved": APPROVED, "rejected": REJECTED, "answering": ANSWERING},
    )


async def set_message_id(store: Store, approval_id: int, message_id: str) -> None:
    await store.execute(
        "UPDATE approvals SET message_id = :message WHERE id = :id",
        {"id": approval_id, "message": message_id},
    )


async def expire_approvals(store: Store, callback_id: int) -> list[int]:
    """The turn of `callback_id` ended: its unanswered requests wait no more; their ids."""
    rows = await store.fetch_all(
        "UPDATE approvals SET state = :expired, answered_at = :now"
        " WHERE callback_id = :callback AND state = :pending RETURNING id",
        {"callback": callback_id, "expired": EXPIRED, "pending": PENDING, "now": now()},
    )
    return [int(row["id"]) for row in rows]
