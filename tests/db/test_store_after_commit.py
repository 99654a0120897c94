"""Store.after_commit: callbacks that wait for the outermost commit (both databases)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from db.store import Store


class Calls:
    def __init__(self) -> None:
        self.names: list[str] = []

    def hook(self, name: str) -> None:
        self.names.append(name)

    def to(self, name: str) -> Callable[[], None]:
        return lambda: self.hook(name)


async def insert_delivery(store: Store, delivery_id: str) -> None:
    await store.execute(
        "INSERT INTO inbound_deliveries (source, delivery_id, received_at) VALUES ('test', :id, 0)",
        {"id": delivery_id},
    )


async def test_outside_a_transaction_the_callback_runs_at_once(store: Store) -> None:
    calls = Calls()
    store.after_commit(calls.to("now"))
    assert calls.names == ["now"]


async def test_the_callback_runs_after_the_commit_and_sees_the_data(store: Store) -> None:
    seen: list[int] = []
    async with store.transaction():
        await insert_delivery(store, "1")
        store.after_commit(lambda: seen.append(len(seen) + 1))
        await insert_delivery(store, "2")
        assert seen == []
    assert seen == [1]
    rows = await store.fetch_all("SELECT delivery_id FROM inbound_deliveries")
    assert len(rows) == 2


async def test_a_rolled_back_transaction_runs_no_callback(store: Store) -> None:
    calls = Calls()
    with pytest.raises(RuntimeError):
        async with store.transaction():
            await insert_delivery(store, "1")
            store.after_commit(calls.to("never"))
            raise RuntimeError("roll back")
    assert calls.names == []


async def test_a_savepoint_waits_for_the_outer_commit_and_drops_its_own_rollback(
    store: Store,
) -> None:
    calls = Calls()
    async with store.transaction():
        store.after_commit(calls.to("outer"))
        async with store.transaction():
            store.after_commit(calls.to("committed savepoint"))
        assert calls.names == []  # a released savepoint is not a commit
        with pytest.raises(RuntimeError):
            async with store.transaction():
                store.after_commit(calls.to("rolled back savepoint"))
                raise RuntimeError("roll the savepoint back")
        assert calls.names == []
    assert calls.names == ["outer", "committed savepoint"]


async def test_a_task_started_inside_a_transaction_is_not_in_it(store: Store) -> None:
    calls = Calls()

    async def elsewhere() -> None:
        # This task inherits the context, not the transaction: nothing to wait for.
        store.after_commit(calls.to("other task"))

    async with store.transaction():
        await asyncio.create_task(elsewhere())
        assert calls.names == ["other task"]
    assert calls.names == ["other task"]


async def test_two_stores_keep_their_hooks_apart(store: Store, database_url: str) -> None:
    calls = Calls()
    async with Store(database_url) as other:
        async with store.transaction():
            other.after_commit(calls.to("other store"))
            assert calls.names == ["other store"]


async def test_a_failing_callback_is_logged_and_the_others_still_run(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls()

    def broken() -> None:
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="db.store"):
        async with store.transaction():
            await insert_delivery(store, "1")
            store.after_commit(broken)
            store.after_commit(calls.to("after"))
    assert calls.names == ["after"]
    assert "after-commit callback failed" in caplog.text
    assert await store.fetch_all("SELECT delivery_id FROM inbound_deliveries") == [
        {"delivery_id": "1"}
    ]
