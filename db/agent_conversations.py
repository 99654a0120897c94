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
        "SELECT execution_status, last_agent_event_kind FROM agent_conversations"
        " WHERE conversation_id = :id" + ("" if store.is_sqlite else " FOR UPDATE"),
        {"id": conversation_id},
    )
    assert row is not None
    return HeardState(row["execution_status"], row["last_agent_event_kind"])
