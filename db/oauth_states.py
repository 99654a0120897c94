"""Single-use OAuth states (Slack install, GitHub App manifest flow).

A state is issued when a user is sent to the platform and must come back exactly
once, before it expires, to the same platform's callback: that is what stops a forged
or replayed callback.
"""

from __future__ import annotations

import secrets

from db.store import Store, now

DEFAULT_STATE_TTL_SECONDS = 600.0


async def issue_state(
    store: Store, platform: str, *, ttl_seconds: float = DEFAULT_STATE_TTL_SECONDS
) -> str:
    """A new random state for `platform`, valid for `ttl_seconds`."""
    state = secrets.token_urlsafe(32)
    stamp = now()
    # Abandoned flows leave their states behind; sweeping expired ones of every
    # platform on each issue keeps the table as small as the flows in progress.
    await store.execute("DELETE FROM oauth_states WHERE expires_at <= :now", {"now": stamp})
    await store.execute(
        "INSERT INTO oauth_states (state, platform, expires_at)"
        " VALUES (:state, :platform, :expires_at)",
        {"state": state, "platform": platform, "expires_at": stamp + ttl_seconds},
    )
    return state


async def consume_state(store: Store, platform: str, state: str) -> bool:
    """True exactly once for a valid, unexpired state issued for `platform`.

    The row is deleted and read back in one statement, so of two concurrent consumers
    only the one whose DELETE removed the row sees it. An expired state is removed all
    the same, and refused.
    """
    row = await store.fetch_one(
        "DELETE FROM oauth_states WHERE state = :state AND platform = :platform"
        " RETURNING expires_at",
        {"state": state, "platform": platform},
    )
    return row is not None and float(row["expires_at"]) > now()
