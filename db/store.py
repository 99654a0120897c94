"""The database handle every repository in db/ works through.

PostgreSQL goes through db/postgres.py (an asyncpg pool, used directly). SQLite, the
embedded default, goes through db/sqlite.py: one long-lived connection in WAL mode,
statements run where they are awaited. Each module says why it is not `databases`.
Callers get one async API either way, and the dialect for the few statements that
differ.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from db.postgres import PostgresDatabase
from db.sqlite import SqliteDatabase

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0

log = logging.getLogger(__name__)


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
        # The transaction frames waiting for a commit; one variable per Store, so
        # two stores used by one task keep their after-commit hooks apart.
        self._commit_frames: ContextVar[_CommitFrame | None] = ContextVar(
            f"store_after_commit_{id(self)}", default=None
        )
        self._sqlite: SqliteDatabase | None = None
        self._postgres: PostgresDatabase | None = None
        if self.is_sqlite:
            self._sqlite = SqliteDatabase(url, busy_timeout=SQLITE_BUSY_TIMEOUT_SECONDS)
        else:
            self._postgres = PostgresDatabase(url, min_size=1, max_size=10)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def connect(self) -> None:
        if self._sqlite is not None:
            await self._sqlite.connect()
        else:
            assert self._postgres is not None
            await self._postgres.connect()

    async def disconnect(self) -> None:
        if self._sqlite is not None:
            await self._sqlite.disconnect()
        else:
            assert self._postgres is not None
            await self._postgres.disconnect()

    async def __aenter__(self) -> Store:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """One atomic unit of work (nested: a savepoint); callbacks handed to
        `after_commit` inside it run once the outermost one has committed."""
        async with self._after_commit_scope(), self._transaction():
            yield

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """One atomic unit of work (nested: a savepoint); on SQLite, one writer at a
        time in this process."""
        if self._sqlite is not None:
            async with self._sqlite.transaction():
                yield
            return
        assert self._postgres is not None
        async with self._postgres.transaction():
            yield

    async def execute(self, query: str, values: Mapping[str, Any] | None = None) -> Any:
        if self._sqlite is not None:
            return await self._sqlite.execute(query, values or {})
        assert self._postgres is not None
        return await self._postgres.execute(query, values or {})

    async def fetch_one(
        self, query: str, values: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any] | None:
        if self._sqlite is not None:
            return await self._sqlite.fetch_one(query, values or {})
        assert self._postgres is not None
        return await self._postgres.fetch_one(query, values or {})

    async def fetch_all(
        self, query: str, values: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        if self._sqlite is not None:
            return await self._sqlite.fetch_all(query, values or {})
        assert self._postgres is not None
        return await self._postgres.fetch_all(query, values or {})

    # -- after-commit hooks -------------------------------------------------------------
    # Side effects that announce written data (waking workers for a job enqueued in a
    # transaction) must wait until other connections can see that data, and must not
    # happen at all when the transaction rolls back.

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once this task's outermost transaction commits (never if it
        rolls back); at once when this task is in no transaction."""
        frame = self._commit_frames.get()
        if frame is None or frame.task is not asyncio.current_task():
            # No transaction of ours: a task started inside one inherits the context
            # but not the transaction, so its writes are committed already.
            _run_callbacks([callback])
            return
        frame.callbacks.append(callback)

    @asynccontextmanager
    async def _after_commit_scope(self) -> AsyncIterator[None]:
        frames = self._commit_frames
        outer = frames.get()
        frame = _CommitFrame(asyncio.current_task())
        token = frames.set(frame)
        try:
            yield
        finally:
            frames.reset(token)
        # Reached only when the block committed; an exception skips the callbacks.
        if outer is not None and outer.task is frame.task:
            outer.callbacks.extend(frame.callbacks)  # a savepoint: the outer commit decides
        else:
            _run_callbacks(frame.callbacks)


@dataclass
class _CommitFrame:
    """The callbacks waiting for the commit of one (possibly nested) transaction."""

    task: asyncio.Task[Any] | None
    callbacks: list[Callable[[], None]] = field(default_factory=list)


def _run_callbacks(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:
            # The transaction has committed: its caller must not see it as failed.
            log.exception("an after-commit callback failed")
