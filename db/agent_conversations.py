"""What the relay has heard of each agent conversation (the `agent_conversations` rows)."""

from __future__ import annotations

from dataclasses import dataclass

from db.store import Store, now


@dataclass(frozen=True)
class HeardState:
    """The last execution status the agent-server's webhooks reported for a conversation
    (None before any did), and the kind of the agent's last event of the turn."""

    execution_status: str | None
    last_agent_event_kind: str | None
    # The turn whose status message is live (processors.progress): its callback, how
    # often the message may be edited, the steps counted so far, the generation of
    # its edits (a progress job is queued once per generation) and the last edit.
    status_callback_id: int | None = None
    status_interval: float | None = None
    status_steps: int = 0
    status_generation: int = 0
    status_edited_at: float | None = None

    @property
    def shows_progress(self) -> bool:
        return self.status_callback_id is not None and self.status_interval is not None


async def lock_conversation(store: Store, conversation_id: str) -> HeardState:
    """Inside a transaction: the conversation's row, created when missing, and on
    PostgreSQL locked until the transaction ends.

    Whoever writes because of a conversation's state takes this first, so that two
    such transactions take turns: the later one sees what the earlier one committed.
    (SQLite's transactions already run one at a time.)
    """
    await store.execute(
        "INSERT INTO agent_conversations (conversation_id, updated_at)"
        " VALUES (:id, :now) ON CONFLICT (conversation_id) DO NOTHING",
        {"id": conversation_id, "now": now()},
    )
    row = await store.fetch_one(
        "SELECT execution_status, last_agent_event_kind, status_callback_id,"
        " status_interval, status_steps, status_generation, status_edited_at"
        " FROM agent_conversations WHERE conversation_id = :id"
        + ("" if store.is_sqlite else " FOR UPDATE"),
        {"id": conversation_id},
    )
    assert row is not None
    return HeardState(
        row["execution_status"],
        row["last_agent_event_kind"],
        row["status_callback_id"],
        row["status_interval"],
        int(row["status_steps"] or 0),
        int(row["status_generation"] or 0),
        row["status_edited_at"],
    )


async def request_stop(store: Store, conversation_id: str, who: str) -> None:
    """Remember who asked to stop the conversation's turn: its pause then closes the
    turn with their name (processors.base)."""
    async with store.transaction():
        await lock_conversation(store, conversation_id)
        await store.execute(
            "UPDATE agent_conversations SET status_stopped_by = :who WHERE conversation_id = :id",
            {"id": conversation_id, "who": who},
        )


async def stop_requested_by(store: Store, conversation_id: str) -> str | None:
    row = await store.fetch_one(
        "SELECT status_stopped_by FROM agent_conversations WHERE conversation_id = :id",
        {"id": conversation_id},
    )
    return row["status_stopped_by"] if row else None


async def end_status(store: Store, conversation_id: str, callback_id: int) -> int | None:
    """Inside a transaction: the turn of `callback_id` ended, its status message takes
    no more progress edits; the steps it counted, or None when it had none."""
    row = await store.fetch_one(
        "UPDATE agent_conversations SET status_final = 1, status_interval = NULL"
        " WHERE conversation_id = :id AND status_callback_id = :callback"
        " RETURNING status_steps",
        {"id": conversation_id, "callback": callback_id},
    )
    return int(row["status_steps"] or 0) if row else None
