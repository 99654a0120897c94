"""Single-use OAuth states on real SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio

from db.oauth_states import consume_state, issue_state
from db.store import Store, now


async def state_rows(store: Store) -> list[dict[str, object]]:
    return await store.fetch_all("SELECT state, platform FROM oauth_states ORDER BY state")


async def test_a_state_is_consumed_once_only(store: Store) -> None:
    state = await issue_state(store, "slack")

    assert await consume_state(store, "slack", state) is True
    assert await consume_state(store, "slack", state) is False
    assert await state_rows(store) == []


async def test_states_are_random_and_url_safe(store: Store) -> None:
    states = {await issue_state(store, "slack") for _ in range(5)}

    assert len(states) == 5
    for state in states:
        assert len(state) >= 40
        assert state.replace("-", "").replace("_", "").isalnum()


async def test_an_unknown_state_is_refused(store: Store) -> None:
    await issue_state(store, "slack")

    assert await consume_state(store, "slack", "never-issued") is False
    assert len(await state_rows(store)) == 1


async def test_an_expired_state_is_refused_and_removed(store: Store) -> None:
    state = await issue_state(store, "slack", ttl_seconds=-1)

    assert await consume_state(store, "slack", state) is False
    assert await state_rows(store) == []


async def test_a_state_expires_after_its_ttl(store: Store) -> None:
    state = await issue_state(store, "slack", ttl_seconds=600)
    row = await store.fetch_one(
        "SELECT expires_at FROM oauth_states WHERE state = :state", {"state": state}
    )
    assert row is not None
    assert now() + 590 < float(row["expires_at"]) <= now() + 600

    await store.execute("UPDATE oauth_states SET expires_at = :past", {"past": now() - 1})

    assert await consume_state(store, "slack", state) is False


async def test_a_state_of_another_platform_is_refused_and_kept(store: Store) -> None:
    state = await issue_state(store, "github")

    assert await consume_state(store, "slack", state) is False
    assert await consume_state(store, "github", state) is True


async def test_issuing_sweeps_expired_states_of_every_platform(store: Store) -> None:
    await issue_state(store, "github", ttl_seconds=-1)
    await issue_state(store, "slack", ttl_seconds=-1)
    live = await issue_state(store, "github")

    fresh = await issue_state(store, "slack")

    assert await state_rows(store) == sorted(
        [{"state": live, "platform": "github"}, {"state": fresh, "platform": "slack"}],
        key=lambda row: row["state"],
    )


async def test_concurrent_consumers_of_one_state_have_one_winner(store: Store) -> None:
    state = await issue_state(store, "slack")

    results = await asyncio.gather(*(consume_state(store, "slack", state) for _ in range(10)))

    assert sorted(results) == [False] * 9 + [True]
