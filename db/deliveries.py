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
