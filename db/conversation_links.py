"""Conversation links: which platform thread belongs to which agent conversation.

A link is (platform, thread key) -> conversation id, with a cursor: the platform's
marker of the newest message the agent has seen, so a follow-up sends only what was
written since. Platform event jobs are keyed by thread key, so two mentions in one
thread never race over a link.
"""

from __future__ import annotations

from dataclasses import dataclass

from db.store import Store, now

_COLUMNS = "platform, thread_key, conversation_id, cursor"


@dataclass(frozen=True)
class ConversationLink:
    platform: str
    thread_key: str
    conversation_id: str
    cursor: str | None


async def find_link(store: Store, platform: str, thread_key: str) -> ConversationLink | None:
    row = await store.fetch_one(
        f"SELECT {_COLUMNS} FROM conversation_links"
        " WHERE platform = :platform AND thread_key = :thread_key",
        {"platform": platform, "thread_key": thread_key},
    )
    return None if row is None else ConversationLink(**row)


async def links_of(store: Store, conversation_id: str) -> list[ConversationLink]:
    rows = await store.fetch_all(
        f"SELECT {_COLUMNS} FROM conversation_links"
        " WHERE conversation_id = :id ORDER BY created_at",
        {"id": conversation_id},
    )
    return [ConversationLink(**row) for row in rows]


async def save_link(store: Store, link: ConversationLink) -> None:
    """Point the thread at the conversation; a link without a cursor keeps the old one."""
    stamp = now()
    await store.execute(
        "INSERT INTO conversation_links (platform, thread_key, conversation_id, cursor,"
        " created_at, updated_at) VALUES (:platform, :thread_key, :conversation_id, :cursor,"
        " :now, :now) ON CONFLICT (platform, thread_key) DO UPDATE SET"
        " conversation_id = excluded.conversation_id,"
        " cursor = COALESCE(excluded.cursor, conversation_links.cursor),"
        " updated_at = excluded.updated_at",
        {
            "platform": link.platform,
            "thread_key": link.thread_key,
            "conversation_id": link.conversation_id,
            "cursor": link.cursor,
            "now": stamp,
        },
    )


async def forget_links(store: Store, conversation_id: str) -> None:
    """Unlink the threads of a conversation that could not be started."""
    await store.execute(
        "DELETE FROM conversation_links WHERE conversation_id = :id", {"id": conversation_id}
    )
