"""The Store: transactions on both databases."""

import asyncio

from db.store import Store


async def test_a_nested_transaction_is_a_savepoint_not_a_deadlock(store: Store) -> None:
    async with store.transaction():
        await store.execute(
            "INSERT INTO inbound_deliveries (source, delivery_id, received_at)"
            " VALUES ('outer', '1', 0)"
        )
        try:
            async with store.transaction():
                await store.execute(
                    "INSERT INTO inbound_deliveries (source, delivery_id, received_at)"
                    " VALUES ('inner', '1', 0)"
                )
                raise RuntimeError("roll the inner one back")
        except RuntimeError:
            pass
    rows = await store.fetch_all("SELECT source FROM inbound_deliveries")
    assert rows == [{"source": "outer"}]


async def test_a_colon_inside_a_quoted_literal_is_not_a_parameter(store: Store) -> None:
    row = await store.fetch_one(
        "SELECT 'T1:C1:1.0' AS literal, 'it''s :x' AS quoted, :value AS value, :value AS again",
        {"value": "v"},
    )
    assert row == {"literal": "T1:C1:1.0", "quoted": "it's :x", "value": "v", "again": "v"}


async def test_a_task_started_inside_a_transaction_uses_its_own_connection(
    store: Store,
) -> None:
    async with store.transaction():
        await store.execute(
            "INSERT INTO inbound_deliveries (source, delivery_id, received_at)"
            " VALUES ('outer', '1', 0)"
        )
        # On PostgreSQL the child would otherwise share the parent's connection
        # mid-transaction; on SQLite it waits for the transaction to end.
        child = asyncio.ensure_future(
            store.fetch_all("SELECT source FROM inbound_deliveries WHERE source = 'outer'")
        )
    assert await child in ([], [{"source": "outer"}])
