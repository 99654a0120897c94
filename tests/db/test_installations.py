"""The installations repository on real SQLite and real PostgreSQL."""

from __future__ import annotations

import pytest

from db.installations import (
    STATUS_ACTIVE,
    delete_installation,
    get_installation,
    list_installations,
    save_installation,
    set_installation_status,
)
from db.secrets import CredentialsUnreadable, SecretBox, SecretKeyMissing
from db.store import Store

TOKEN = "xoxb-1111-2222-secret-bot-token"
DETAILS = {"team_id": "T1", "team_name": "Acme"}


@pytest.fixture
def box() -> SecretBox:
    return SecretBox("a-test-secret-key-that-is-long-enough")


async def save_acme(store: Store, box: SecretBox, token: str = TOKEN) -> None:
    await save_installation(
        store,
        box,
        platform="slack",
        account_id="-:T1",
        details=DETAILS,
        credentials={"bot_token": token},
    )


async def raw_row(store: Store, platform: str, account_id: str) -> dict[str, object]:
    row = await store.fetch_one(
        "SELECT status, details, credentials, created_at, updated_at FROM installations"
        " WHERE platform = :platform AND account_id = :account_id",
        {"platform": platform, "account_id": account_id},
    )
    assert row is not None
    return dict(row)


async def test_an_installation_round_trips_with_its_credentials(
    store: Store, box: SecretBox
) -> None:
    await save_acme(store, box)

    found = await get_installation(store, box, "slack", "-:T1")

    assert found is not None
    assert (found.platform, found.account_id, found.status) == ("slack", "-:T1", STATUS_ACTIVE)
    assert found.details == DETAILS
    assert found.credentials == {"bot_token": TOKEN}
    assert found.created_at == found.updated_at


async def test_credentials_are_stored_encrypted(store: Store, box: SecretBox) -> None:
    await save_acme(store, box)

    raw = await raw_row(store, "slack", "-:T1")

    assert isinstance(raw["credentials"], str)
    assert TOKEN not in raw["credentials"]
    assert "xoxb" not in raw["credentials"]
    assert "Acme" in str(raw["details"])


async def test_another_secret_key_cannot_read_the_credentials(store: Store, box: SecretBox) -> None:
    await save_acme(store, box)

    with pytest.raises(CredentialsUnreadable):
        await get_installation(store, SecretBox("another-secret-key-entirely"), "slack", "-:T1")


async def test_without_a_secret_key_nothing_is_saved(store: Store) -> None:
    with pytest.raises(SecretKeyMissing):
        await save_acme(store, SecretBox(None))

    assert await list_installations(store) == []


async def test_no_credentials_are_stored_as_null(store: Store, box: SecretBox) -> None:
    await save_installation(
        store, box, platform="github", account_id="42", details={}, credentials=None
    )

    assert (await raw_row(store, "github", "42"))["credentials"] is None
    found = await get_installation(store, box, "github", "42")
    assert found is not None and found.credentials is None


async def test_the_repr_of_an_installation_shows_no_credentials(
    store: Store, box: SecretBox
) -> None:
    await save_acme(store, box)

    found = await get_installation(store, box, "slack", "-:T1")

    assert TOKEN not in repr(found)
    assert "-:T1" in repr(found)


async def test_saving_again_replaces_the_row_and_keeps_created_at(
    store: Store, box: SecretBox
) -> None:
    await save_acme(store, box)
    await store.execute("UPDATE installations SET created_at = 1000, updated_at = 1000")

    await save_installation(
        store,
        box,
        platform="slack",
        account_id="-:T1",
        details={"team_id": "T1", "team_name": "Acme Renamed"},
        credentials={"bot_token": "xoxb-new"},
        status="suspended",
    )

    rows = await store.fetch_all("SELECT account_id FROM installations")
    assert rows == [{"account_id": "-:T1"}]
    found = await get_installation(store, box, "slack", "-:T1")
    assert found is not None
    assert found.created_at == 1000
    assert found.updated_at > 1000
    assert found.details["team_name"] == "Acme Renamed"
    assert found.credentials == {"bot_token": "xoxb-new"}
    assert found.status == "suspended"


async def test_accounts_and_platforms_are_kept_apart(store: Store, box: SecretBox) -> None:
    await save_acme(store, box)
    await save_installation(
        store,
        box,
        platform="slack",
        account_id="-:T2",
        details={"team_id": "T2"},
        credentials={"bot_token": "xoxb-two"},
    )
    await save_installation(
        store, box, platform="github", account_id="-:T1", details={}, credentials={"key": "k"}
    )

    one = await get_installation(store, box, "slack", "-:T1")
    two = await get_installation(store, box, "slack", "-:T2")
    github = await get_installation(store, box, "github", "-:T1")

    assert one is not None and one.credentials == {"bot_token": TOKEN}
    assert two is not None and two.credentials == {"bot_token": "xoxb-two"}
    assert github is not None and github.credentials == {"key": "k"}
    assert await get_installation(store, box, "slack", "-:T3") is None


async def test_listing_is_ordered_and_never_carries_credentials(
    store: Store, box: SecretBox
) -> None:
    await save_installation(
        store, box, platform="slack", account_id="-:T2", details={}, credentials={"t": "2"}
    )
    await save_acme(store, box)
    await save_installation(
        store, box, platform="github", account_id="7", details={}, credentials={"t": "g"}
    )

    everything = await list_installations(store)
    slack_only = await list_installations(store, platform="slack")

    assert [(i.platform, i.account_id) for i in everything] == [
        ("github", "7"),
        ("slack", "-:T1"),
        ("slack", "-:T2"),
    ]
    assert [i.account_id for i in slack_only] == ["-:T1", "-:T2"]
    assert all(i.credentials is None for i in everything)
    assert slack_only[0].details == DETAILS


async def test_listing_needs_no_readable_credentials(store: Store, box: SecretBox) -> None:
    await save_acme(store, box)
    await store.execute("UPDATE installations SET credentials = 'not-a-fernet-token'")

    # A listing decrypts nothing, so even unreadable credentials do not stop it.
    listed = await list_installations(store)

    assert [i.account_id for i in listed] == ["-:T1"]


async def test_delete_removes_one_installation_once(store: Store, box: SecretBox) -> None:
    await save_acme(store, box)
    await save_installation(
        store, box, platform="slack", account_id="-:T2", details={}, credentials=None
    )

    assert await delete_installation(store, "slack", "-:T1") is True
    assert await delete_installation(store, "slack", "-:T1") is False

    assert await get_installation(store, box, "slack", "-:T1") is None
    assert await get_installation(store, box, "slack", "-:T2") is not None


async def test_set_status_changes_only_an_existing_installation(
    store: Store, box: SecretBox
) -> None:
    await save_acme(store, box)
    await store.execute("UPDATE installations SET updated_at = 1000")

    assert await set_installation_status(store, "slack", "-:T1", "suspended") is True
    assert await set_installation_status(store, "slack", "-:T9", "suspended") is False

    found = await get_installation(store, box, "slack", "-:T1")
    assert found is not None
    assert found.status == "suspended"
    assert found.updated_at > 1000
    assert found.credentials == {"bot_token": TOKEN}
