"""The inbound-delivery ledger on real SQLite and real PostgreSQL."""

from __future__ import annotations

from db.deliveries import record_deliveries, record_delivery
from db.store import Store


async def test_a_delivery_is_recorded_once_and_refused_after(store: Store) -> None:
    assert await record_delivery(store, "github", "delivery-1") is True
    assert await record_delivery(store, "github", "delivery-1") is False
    assert await record_delivery(store, "github", "delivery-1") is False


async def test_delivery_ids_are_scoped_per_source(store: Store) -> None:
    assert await record_delivery(store, "github", "shared-id") is True
    assert await record_delivery(store, "gitlab", "shared-id") is True
    assert await record_delivery(store, "agent", "shared-id") is True

    assert await record_delivery(store, "github", "shared-id") is False
    assert await record_delivery(store, "gitlab", "shared-id") is False


async def test_different_deliveries_of_one_source_are_each_recorded(store: Store) -> None:
    assert await record_delivery(store, "slack", "event-1") is True
    assert await record_delivery(store, "slack", "event-2") is True

    rows = await store.fetch_all(
        "SELECT source, delivery_id FROM inbound_deliveries ORDER BY delivery_id"
    )
    assert rows == [
        {"source": "slack", "delivery_id": "event-1"},
        {"source": "slack", "delivery_id": "event-2"},
    ]


async def test_a_batch_is_recorded_in_one_go_and_only_fresh_ids_come_back(store: Store) -> None:
    assert await record_deliveries(store, "agent", []) == set()
    assert await record_deliveries(store, "agent", ["a", "b"]) == {"a", "b"}
    assert await record_deliveries(store, "agent", ["b", "c", "c"]) == {"c"}
    assert await record_deliveries(store, "other", ["a"]) == {"a"}
