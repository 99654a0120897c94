"""Workspaces: the checkout a conversation works in, and what its turns pushed.

One row per conversation with a repository (processors.workspace writes it in the
start job, before the checkout). `plan` and `request` are JSON written by the layer
above (agent.checkout's models); this module only stores them. The capability the
agent-server presents for the conversation's credentials is kept as its SHA-256 only;
the token last minted for the agent is kept encrypted with SECRET_KEY, or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db.callbacks import CallbackStatus
from db.store import Store, now

_COLUMNS = (
    "conversation_id, host, repository, locator, mode, working_dir, base_branch, branch,"
    " plan, request, capability_hash, token_ciphertext, token_expires_at, checked_out_at,"
    " turn_start_sha, change_request, last_turn_ended_at, removed_at"
)


@dataclass
class Workspace:
    conversation_id: str
    # The platform hosting the repository ("github", "gitlab").
    host: str
    repository: str
    # The host's handle of the repository (GitHub installation id, GitLab project id).
    locator: str
    # agent.checkout.CheckoutMode's value.
    mode: str
    working_dir: str
    base_branch: str
    # The branch the agent pushes to; None when nothing may be pushed.
    branch: str | None
    # JSON of agent.checkout.RepositoryPlan and WorkspaceRequest.
    plan: str
    request: str
    capability_hash: str
    token_ciphertext: str | None = None
    token_expires_at: float | None = None
    checked_out_at: float | None = None
    # The branch's head when the current turn began (None: not on the host yet).
    turn_start_sha: str | None = None
    # JSON of agent.checkout.ChangeRequest, once there is one.
    change_request: str | None = None
    last_turn_ended_at: float | None = None
    removed_at: float | None = None


async def get_workspace(store: Store, conversation_id: str) -> Workspace | None:
    row = await store.fetch_one(
        f"SELECT {_COLUMNS} FROM workspaces WHERE conversation_id = :id", {"id": conversation_id}
    )
    return None if row is None else Workspace(**row)


async def insert_workspace(store: Store, workspace: Workspace) -> bool:
    """Record a new workspace; False when the conversation has one already (a retried
    start job keeps the first, with its capability)."""
    values: dict[str, Any] = {**workspace.__dict__, "created_at": now(), "updated_at": now()}
    names = ", ".join(values)
    placeholders = ", ".join(f":{name}" for name in values)
    inserted = await store.fetch_one(
        f"INSERT INTO workspaces ({names}) VALUES ({placeholders})"
        " ON CONFLICT (conversation_id) DO NOTHING RETURNING conversation_id",
        values,
    )
    return inserted is not None


async def update_workspace(store: Store, conversation_id: str, **fields: Any) -> None:
    """Set some columns of a workspace (names from Workspace's fields)."""
    unknown = fields.keys() - Workspace.__dataclass_fields__.keys()
    if unknown:
        raise ValueError(f"not a workspace column: {sorted(unknown)}")
    assignments = ", ".join(f"{name} = :{name}" for name in fields)
    await store.execute(
        f"UPDATE workspaces SET {assignments}, updated_at = :updated_at"
        " WHERE conversation_id = :conversation_id",
        {**fields, "updated_at": now(), "conversation_id": conversation_id},
    )


async def ended_before(store: Store, cutoff: float, *, limit: int) -> list[Workspace]:
    """Workspaces still on disk whose last turn ended before `cutoff`, oldest first."""
    rows = await store.fetch_all(
        f"SELECT {_COLUMNS} FROM workspaces WHERE removed_at IS NULL"
        " AND last_turn_ended_at IS NOT NULL AND last_turn_ended_at < :cutoff"
        " ORDER BY last_turn_ended_at LIMIT :limit",
        {"cutoff": cutoff, "limit": limit},
    )
    return [Workspace(**row) for row in rows]


async def idle_before(store: Store, cutoff: float, *, limit: int) -> list[Workspace]:
    """Workspaces still on disk that nobody has used since before `cutoff`, oldest first.

    Idle means: the last turn ended before `cutoff` (or, when no turn ever ended, as
    after a checkout that failed, the row was made before it) and no turn is under
    way now (no ACTIVE callback of the conversation), so that a batch is never taken
    up by conversations that are busy again.
    """
    rows = await store.fetch_all(
        f"SELECT {_COLUMNS} FROM workspaces w WHERE w.removed_at IS NULL"
        " AND COALESCE(w.last_turn_ended_at, w.created_at) < :cutoff"
        " AND NOT EXISTS (SELECT 1 FROM conversation_callbacks cb"
        "  WHERE cb.conversation_id = w.conversation_id AND cb.status = :active)"
        " ORDER BY COALESCE(w.last_turn_ended_at, w.created_at), w.conversation_id"
        " LIMIT :limit",
        {"cutoff": cutoff, "limit": limit, "active": CallbackStatus.ACTIVE.value},
    )
    return [Workspace(**row) for row in rows]
