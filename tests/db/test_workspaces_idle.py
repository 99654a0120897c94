"""db/workspaces.py's `idle_before`, which the workspace clean-up takes its batches
from, on real SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

from db.callbacks import CallbackStatus, ConversationCallback, insert_callback
from db.store import Store, now
from db.workspaces import Workspace, idle_before, insert_workspace, update_workspace

CUTOFF = now() - 7 * 86400.0


async def workspace(
    store: Store, *, ended_at: float | None, created_at: float = CUTOFF - 100
) -> str:
    conversation_id = uuid.uuid4().hex
    assert await insert_workspace(
        store,
        Workspace(
            conversation_id=conversation_id,
            host="gitlab",
            repository="group/api",
            locator="5",
            mode="head_branch",
            working_dir=f"/ws/{conversation_id}/api",
            base_branch="main",
            branch="feature",
            plan="{}",
            request="{}",
            capability_hash="0" * 64,
            last_turn_ended_at=ended_at,
        ),
    )
    await store.execute(
        "UPDATE workspaces SET created_at = :at WHERE conversation_id = :id",
        {"at": created_at, "id": conversation_id},
    )
    return conversation_id


async def test_idle_means_ended_before_the_cutoff_no_turn_under_way_and_not_removed(
    store: Store,
) -> None:
    oldest = await workspace(store, ended_at=CUTOFF - 50)
    never_ended = await workspace(store, ended_at=None, created_at=CUTOFF - 30)
    older = await workspace(store, ended_at=CUTOFF - 10)
    await workspace(store, ended_at=CUTOFF + 10)
    await workspace(store, ended_at=None, created_at=CUTOFF + 10)
    gone = await workspace(store, ended_at=CUTOFF - 40)
    await update_workspace(store, gone, removed_at=now())
    busy = await workspace(store, ended_at=CUTOFF - 20)
    await insert_callback(
        store,
        ConversationCallback(
            conversation_id=busy,
            status=CallbackStatus.ACTIVE,
            processor_type="webhook",
            processor_json="{}",
            created_at=now(),
            updated_at=now(),
        ),
    )

    found = await idle_before(store, CUTOFF, limit=10)

    assert [w.conversation_id for w in found] == [oldest, never_ended, older]
    assert [w.conversation_id for w in await idle_before(store, CUTOFF, limit=2)] == [
        oldest,
        never_ended,
    ]
