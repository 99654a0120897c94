"""The inbound-delivery ledger: each (source, delivery id) is accepted once."""

from __future__ import annotations

from db.store import Store, now


async def record_delivery(store: Store, source: str, delivery_id: str) -> bool:
    """True the first time this delivery is seen, False for every re-delivery."""
    row = await store.fetch_one(
        "INSERT INTO inbound_deliveries (source, delivery_id, received_at)"
        " VALUES (:source, :delivery_id, :now) ON CONFLICT (source, delivery_id) DO NOTHING"
        " RETURNING delivery_id",
        {"source": source, "delivery_id": delivery_id, "now": now()},
    )
    return row is not None


async def record_deliveries(store: Store, source: str, delivery_ids: list[str]) -> set[str]:
    """The ids of `delivery_ids` seen for the first time (one statement for a batch)."""
    if not delivery_ids:
        return set()
    stamp = now()
    values: dict[str, object] = {"source": source, "now": stamp}
    rows = []
    for index, delivery_id in enumerate(delivery_ids):
        values[f"id{index}"] = delivery_id
        rows.append(f"(:source, :id{index}, :now)")
    fresh = await store.fetch_all(
        "INSERT INTO inbound_deliveries (source, delivery_id, received_at) VALUES "
        + ", ".join(rows)
        + " ON CONFLICT (source, delivery_id) DO NOTHING RETURNING delivery_id",
        values,
    )
    return {str(row["delivery_id"]) for row in fresh}


async def delivery_known(store: Store, source: str, delivery_id: str) -> bool:
    """Whether the ledger holds this delivery (pruned after RETENTION_DAYS)."""
    row = await store.fetch_one(
        "SELECT 1 AS known FROM inbound_deliveries"
        " WHERE source = :source AND delivery_id = :delivery_id",
        {"source": source, "delivery_id": delivery_id},
    )
    return row is not None
