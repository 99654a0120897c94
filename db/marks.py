"""Small named records the periodic jobs keep between runs (the `relay_marks` rows):
where the reconciliation's walk stopped, when a platform's delivery log was last
read, what the last run found. One JSON object per name; a mark's `last_run` member
(run_record) is what the status page shows of it."""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from typing import Any, Protocol

from db.store import Store, now


async def read_mark(store: Store, name: str) -> dict[str, Any] | None:
    row = await store.fetch_one("SELECT value FROM relay_marks WHERE name = :name", {"name": name})
    if row is None:
        return None
    value = json.loads(row["value"])
    return value if isinstance(value, dict) else None


async def write_mark(store: Store, name: str, value: dict[str, Any]) -> None:
    await store.execute(
        "INSERT INTO relay_marks (name, value, updated_at) VALUES (:name, :value, :now)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
        " updated_at = excluded.updated_at",
        {"name": name, "value": json.dumps(value, sort_keys=True), "now": now()},
    )


class _Run(Protocol):
    at: float
    error: str | None

    def summary(self) -> str: ...


def run_record(title: str, run: _Run) -> dict[str, Any]:
    """A run of a periodic job as its mark keeps it: what the status page shows (title,
    when, a one-line summary, the error that ended it) and its own fields."""
    fields: dict[str, Any] = asdict(run) if is_dataclass(run) and not isinstance(run, type) else {}
    return {**fields, "title": title, "at": run.at, "summary": run.summary(), "error": run.error}


async def last_runs(store: Store) -> list[dict[str, Any]]:
    """The last run of each periodic job that keeps one, by mark name."""
    rows = await store.fetch_all("SELECT name, value FROM relay_marks ORDER BY name")
    runs = []
    for row in rows:
        value = json.loads(row["value"])
        last = value.get("last_run") if isinstance(value, dict) else None
        if isinstance(last, dict):
            runs.append(last)
    return runs
