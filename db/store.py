"""The database handle every repository in db/ works through.

`databases` gives one async API over aiosqlite and asyncpg. Two things it leaves to
us: SQLite needs a busy timeout and serialised write transactions (its deferred
BEGIN lets a transaction fail when it upgrades to a write lock),
and callers need to know the dialect for the few statements that differ.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from databases import Database

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0


def now() -> float:
    """Wall-clock time as stored in every timestamp column (epoch seconds)."""
    return time.time()


class Store:
    """A connected database plus the little dialect knowledge the repositories need."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = "postgresql" if url.startswith(("postgres://", "postgresql")) else "sqlite"
        if self.dialect == "postgresql" and url.startswith("postgres://"):
            url = "postgresql://" + url.removeprefix("postgres://")
        options: dict[str, Any] = {}
        if self.is_sqlite:
            options["timeout"] = SQLITE_BUSY_TIMEOUT_SECONDS
        else:
            options["min_size"] = 1
            options["max_size"] = 10
        self.database = Database(url, **options)
        self._sqlite_write_lock = asyncio.Lock()
        self._sqlite_writer: asyncio.Task[Any] | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def connect(self) -> None:
        await self.database.connect()
        if self.is_sqlite:
            # WAL lets the web process read while a worker writes; it is a property
            # of the database file, so setting it once per start is enough.
            await self.database.execute("PRAGMA journal_mode=WAL")

    async def disconnect(self) -> None:
        await self.database.disconnect()

    async def __aenter__(self) -> Store:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """One atomic unit of work (nested: a savepoint); on SQLite, one writer at a
        time in this process."""
        if not self.is_sqlite or self._sqlite_writer is asyncio.current_task():
            async with self.database.transaction():
                yield
            return
        async with self._sqlite_write_lock:
            self._sqlite_writer = asyncio.current_task()
            try:
                async with self.database.transaction():
                    # `databases` opens a deferred transaction; one that reads before
                    # it writes fails with "database is locked" when another process
                    # wrote in between (WAL snapshot). Taking the write lock first,
                    # with a write that changes nothing, makes it wait its turn.
                    await self.database.execute(
                        "UPDATE schema_migrations SET version = version WHERE 1 = 0"
                    )
                    yield
            finally:
                self._sqlite_writer = None

    async def execute(self, query: str, values: Mapping[str, Any] | None = None) -> Any:
        return await self.database.execute(query, dict(values or {}))

    async def fetch_one(
        self, query: str, values: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any] | None:
        row = await self.database.fetch_one(query, dict(values or {}))
        return None if row is None else dict(row._mapping)

    async def fetch_all(
        self, query: str, values: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        rows = await self.database.fetch_all(query, dict(values or {}))
        return [dict(row._mapping) for row in rows]
