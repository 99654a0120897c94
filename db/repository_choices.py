"""Which repository a chat mention is about, when the mention does not say.

Two small records (migration 9):
- a channel's default repository, set by `@openhands use owner/name` in it;
- a mention that named none, held with its job's payload until the person who asked
  picks a repository in the thread. The pick is claimed once (`claim_choice`), in the
  transaction that queues the mention's job again, so a second pick or a repeated
  click payload finds it taken and does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db.store import Store, now


async def channel_repository(store: Store, platform: str, channel_key: str) -> str | None:
    row = await store.fetch_one(
        "SELECT repository FROM channel_repositories"
        " WHERE platform = :platform AND channel_key = :channel_key",
        {"platform": platform, "channel_key": channel_key},
    )
    return str(row["repository"]) if row else None


async def set_channel_repository(
    store: Store, platform: str, channel_key: str, repository: str | None, *, set_by: str
) -> None:
    """Make `repository` the channel's default; None clears it."""
    values = {"platform": platform, "channel_key": channel_key}
    if repository is None:
        await store.execute(
            "DELETE FROM channel_repositories"
            " WHERE platform = :platform AND channel_key = :channel_key",
            values,
        )
        return
    await store.execute(
        "INSERT INTO channel_repositories (platform, channel_key, repository, set_by, updated_at)"
        " VALUES (:platform, :channel_key, :repository, :set_by, :now)"
        " ON CONFLICT (platform, channel_key) DO UPDATE SET repository = excluded.repository,"
        " set_by = excluded.set_by, updated_at = excluded.updated_at",
        {**values, "repository": repository, "set_by": set_by, "now": now()},
    )


@dataclass(frozen=True)
class PendingChoice:
    """A mention waiting for its asker to pick a repository."""

    platform: str
    delivery_id: str
    thread_key: str
    # The platform's id of the person who asked: the only one whose pick counts.
    asker: str
    # The job to queue again once picked, and its payload (JSON).
    job_kind: str
    payload: str
    # Where the picker is (Slack: "{team}:{channel}:{ts}"), once posted.
    picker_ref: str | None = None
    # "" for "no repository"; None while nothing was picked.
    chosen: str | None = None
    chosen_by: str | None = None


def _choice(row: Any) -> PendingChoice:
    return PendingChoice(
        platform=str(row["platform"]),
        delivery_id=str(row["delivery_id"]),
        thread_key=str(row["thread_key"]),
        asker=str(row["asker"]),
        job_kind=str(row["job_kind"]),
        payload=str(row["payload"]),
        picker_ref=row["picker_ref"],
        chosen=row["chosen"],
        chosen_by=row["chosen_by"],
    )


_COLUMNS = (
    "platform, delivery_id, thread_key, asker, job_kind, payload, picker_ref, chosen, chosen_by"
)


async def hold_choice(store: Store, choice: PendingChoice) -> PendingChoice:
    """Record `choice` unless its delivery's is recorded already; the stored one."""
    await store.execute(
        "INSERT INTO repository_choices (platform, delivery_id, thread_key, asker, job_kind,"
        " payload, created_at) VALUES (:platform, :delivery_id, :thread_key, :asker,"
        " :job_kind, :payload, :now) ON CONFLICT (platform, delivery_id) DO NOTHING",
        {
            "platform": choice.platform,
            "delivery_id": choice.delivery_id,
            "thread_key": choice.thread_key,
            "asker": choice.asker,
            "job_kind": choice.job_kind,
            "payload": choice.payload,
            "now": now(),
        },
    )
    stored = await get_choice(store, choice.platform, choice.delivery_id)
    assert stored is not None
    return stored


async def get_choice(store: Store, platform: str, delivery_id: str) -> PendingChoice | None:
    row = await store.fetch_one(
        f"SELECT {_COLUMNS} FROM repository_choices"
        " WHERE platform = :platform AND delivery_id = :delivery_id",
        {"platform": platform, "delivery_id": delivery_id},
    )
    return _choice(row) if row else None


async def choice_at(store: Store, platform: str, picker_ref: str) -> PendingChoice | None:
    """The mention whose picker is at `picker_ref`."""
    row = await store.fetch_one(
        f"SELECT {_COLUMNS} FROM repository_choices"
        " WHERE platform = :platform AND picker_ref = :picker_ref",
        {"platform": platform, "picker_ref": picker_ref},
    )
    return _choice(row) if row else None


async def place_picker(store: Store, platform: str, delivery_id: str, picker_ref: str) -> None:
    await store.execute(
        "UPDATE repository_choices SET picker_ref = :picker_ref"
        " WHERE platform = :platform AND delivery_id = :delivery_id",
        {"platform": platform, "delivery_id": delivery_id, "picker_ref": picker_ref},
    )


async def claim_choice(
    store: Store, platform: str, delivery_id: str, chosen: str, *, chosen_by: str
) -> bool:
    """Record the pick; False when one was recorded before (it stays)."""
    rows = await store.fetch_all(
        "UPDATE repository_choices SET chosen = :chosen, chosen_by = :chosen_by,"
        " chosen_at = :now WHERE platform = :platform AND delivery_id = :delivery_id"
        " AND chosen IS NULL RETURNING delivery_id",
        {
            "platform": platform,
            "delivery_id": delivery_id,
            "chosen": chosen,
            "chosen_by": chosen_by,
            "now": now(),
        },
    )
    return bool(rows)
