"""The Store: transactions on both databases."""

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
