"""Installations of the relay on a platform: Slack workspaces, GitHub App installations.

One row per (platform, account_id). `details` is plain JSON that operators may see;
`credentials` (tokens, keys) is JSON encrypted with SECRET_KEY through a SecretBox,
so a copy of the database alone never gives away a token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from db.secrets import SecretBox
from db.store import Store, now

STATUS_ACTIVE = "active"

_COLUMNS = "platform, account_id, status, details, credentials, created_at, updated_at"


@dataclass(frozen=True)
class Installation:
    platform: str
    account_id: str
    status: str
    details: dict[str, Any]
    # Decrypted tokens: kept out of repr() so that logging an installation leaks nothing.
    credentials: dict[str, Any] | None = field(repr=False)
    created_at: float
    updated_at: float


def _from_row(row: Mapping[str, Any], credentials: dict[str, Any] | None) -> Installation:
    return Installation(
        platform=row["platform"],
        account_id=row["account_id"],
        status=row["status"],
        details=json.loads(row["details"]),
        credentials=credentials,
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
    )


async def save_installation(
    store: Store,
    box: SecretBox,
    *,
    platform: str,
    account_id: str,
    details: dict[str, Any],
    credentials: dict[str, Any] | None,
    status: str = STATUS_ACTIVE,
) -> None:
    """Insert or replace one installation; a replaced row keeps its `created_at`."""
    # Encrypt before touching the database: without SECRET_KEY this raises
    # SecretKeyMissing and nothing is written.
    sealed = None if credentials is None else box.encrypt(json.dumps(credentials))
    stamp = now()
    await store.execute(
        "INSERT INTO installations (platform, account_id, status, details, credentials,"
        " created_at, updated_at) VALUES (:platform, :account_id, :status, :details,"
        " :credentials, :now, :now) ON CONFLICT (platform, account_id) DO UPDATE SET"
        " status = excluded.status, details = excluded.details,"
        " credentials = excluded.credentials, updated_at = excluded.updated_at",
        {
            "platform": platform,
            "account_id": account_id,
            "status": status,
            "details": json.dumps(details, sort_keys=True),
            "credentials": sealed,
            "now": stamp,
        },
    )


async def get_installation(
    store: Store, box: SecretBox, platform: str, account_id: str
) -> Installation | None:
    """One installation with its credentials decrypted.

    Raises CredentialsUnreadable when the row was sealed with another SECRET_KEY.
    """
    row = await store.fetch_one(
        f"SELECT {_COLUMNS} FROM installations"
        " WHERE platform = :platform AND account_id = :account_id",
        {"platform": platform, "account_id": account_id},
    )
    if row is None:
        return None
    sealed = row["credentials"]
    credentials = None if sealed is None else json.loads(box.decrypt(sealed))
    return _from_row(row, credentials)


async def list_installations(store: Store, *, platform: str | None = None) -> list[Installation]:
    """Every installation (of one platform, if given), ordered by platform and account.

    Listings are for operators: they carry `details` only and `credentials` is always
    None. Nothing is decrypted, so a listing needs no SECRET_KEY and cannot leak a
    token; use get_installation for the credentials of one installation.
    """
    where, values = "", dict[str, Any]()
    if platform is not None:
        where, values["platform"] = " WHERE platform = :platform", platform
    rows = await store.fetch_all(
        f"SELECT {_COLUMNS} FROM installations{where} ORDER BY platform, account_id", values
    )
    return [_from_row(row, None) for row in rows]


async def delete_installation(store: Store, platform: str, account_id: str) -> bool:
    """True when an installation was there and is now gone."""
    row = await store.fetch_one(
        "DELETE FROM installations WHERE platform = :platform AND account_id = :account_id"
        " RETURNING account_id",
        {"platform": platform, "account_id": account_id},
    )
    return row is not None


async def set_installation_status(
    store: Store, platform: str, account_id: str, status: str
) -> bool:
    """True when the installation exists (its status is now `status`)."""
    row = await store.fetch_one(
        "UPDATE installations SET status = :status, updated_at = :now"
        " WHERE platform = :platform AND account_id = :account_id RETURNING account_id",
        {"platform": platform, "account_id": account_id, "status": status, "now": now()},
    )
    return row is not None
