"""SQLite for the Store: one long-lived connection, used on the event loop's thread.

Written by hand because the library in the stack does SQLite slowly: `databases`
opens an aiosqlite connection (and its thread) for every statement outside a
transaction, and aiosqlite itself hops to its thread and back for each statement.
A small statement on a local file takes microseconds, less than one such hop, so
this module runs statements directly where they are awaited:

- one connection for the life of the process, in WAL mode with synchronous=NORMAL:
  a commit is a write() into the WAL, not an fsync. That survives a crash of the
  process (the fault model of this product); only an OS crash or power loss can undo
  the last commits (README "Durability");
- transactions are BEGIN IMMEDIATE, one at a time per process (an asyncio lock),
  nested ones are savepoints; a statement outside a transaction waits while another
  task holds one, so it never lands inside someone else's transaction;
- the WAL is checkpointed from a worker thread on a connection of its own, so an
  fsync never blocks the event loop;
- another process holding the write lock (the CLI, a `worker` process) makes a
  statement retry with an async back-off instead of blocking the loop in SQLite's
  busy handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long SQLite itself waits for another process's lock before raising: short,
# because it blocks the event loop while it waits; the async retry does the rest.
_BUSY_TIMEOUT_MS = 20
CHECKPOINT_INTERVAL_SECONDS = 1.0
_WAL_SIZE_LIMIT_BYTES = 8 * 1024 * 1024


def sqlite_path(url: str) -> str:
    """The file of a `sqlite:///relative` or `sqlite:////absolute` URL."""
    path = url.removeprefix("sqlite://")
    path = path.removeprefix("/") if not path.startswith("//") else path[1:]
    return path.split("?", 1)[0] or ":memory:"


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


def _is_busy(error: sqlite3.OperationalError) -> bool:
    text = str(error)
    return "locked" in text or "busy" in text


class SqliteDatabase:
    def __init__(self, url: str, *, busy_timeout: float) -> None:
        self.path = sqlite_path(url)
        self.busy_timeout = busy_timeout
        self._connection: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0
        self._dirty = asyncio.Event()
        self._changes = 0
        self._checkpointer: asyncio.Task[None] | None = None

    # -- life cycle ---------------------------------------------------------------------

    async def connect(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.row_factory = _dict_row
        connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        await self._retry_busy(lambda: connection.execute("PRAGMA journal_mode = WAL"))
        connection.execute("PRAGMA synchronous = NORMAL")
        # Checkpoints run in a thread (below), never inside a commit on the loop.
        connection.execute("PRAGMA wal_autocheckpoint = 0")
        # Once checkpointed, the WAL is cut back to this size: a burst (a retention
        # run's deletes) must not leave a WAL of its size on disk for ever.
        connection.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT_BYTES}")
        self._connection = connection
        if self.path != ":memory:":
            self._checkpointer = asyncio.create_task(self._checkpoint_now_and_then())

    async def disconnect(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await asyncio.to_thread(_checkpoint, self.path)
            connection.close()

    def _require(self) -> sqlite3.Connection:
        if self._connection is None:
            raise RuntimeError("the SQLite store is not connected")
        return self._connection

    # -- statements -----------------------------------------------------------------------

    async def execute(self, query: str, values: Mapping[str, Any]) -> Any:
        cursor = await self._statement(lambda c: c.execute(query, values))
        return cursor.lastrowid

    async def fetch_one(self, query: str, values: Mapping[str, Any]) -> dict[str, Any] | None:
        row: dict[str, Any] | None = await self._statement(
            lambda c: c.execute(query, values).fetchone()
        )
        return row

    async def fetch_all(self, query: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._statement(
            lambda c: c.execute(query, values).fetchall()
        )
        return rows

    async def _statement(self, run: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._require()
        if self._owner is asyncio.current_task():
            # Inside our own transaction: it holds the write lock already.
            return run(connection)
        if self._owner is not None:
            # Another task's transaction is open; wait for it rather than join it.
            async with self._lock:
                return await self._autocommit(connection, run)
        return await self._autocommit(connection, run)

    async def _autocommit(self, connection: sqlite3.Connection, run: Callable[..., T]) -> T:
        result = await self._retry_busy(lambda: run(connection))
        if connection.total_changes != self._changes:
            self._changes = connection.total_changes
            self._dirty.set()
        return result

    # -- transactions ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        connection = self._require()
        task = asyncio.current_task()
        if self._owner is task:
            async with self._savepoint(connection):
                yield
            return
        async with self._lock:
            await self._retry_busy(lambda: connection.execute("BEGIN IMMEDIATE"))
            self._owner = task
            try:
                yield
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            else:
                connection.execute("COMMIT")
                self._dirty.set()
            finally:
                self._owner = None

    @contextlib.asynccontextmanager
    async def _savepoint(self, connection: sqlite3.Connection) -> AsyncIterator[None]:
        self._depth += 1
        name = f"nested_{self._depth}"
        connection.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            connection.execute(f"ROLLBACK TO {name}")
            connection.execute(f"RELEASE {name}")
            raise
        else:
            connection.execute(f"RELEASE {name}")
        finally:
            self._depth -= 1

    # -- helpers --------------------------------------------------------------------------

    async def _retry_busy(self, run: Callable[[], T]) -> T:
        """Run `run`; while another process holds the lock, try again with an async
        back-off (the loop keeps serving) until the busy timeout has passed."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.002
        while True:
            try:
                return run()
            except sqlite3.OperationalError as error:
                if not _is_busy(error) or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.1)

    async def _checkpoint_now_and_then(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await asyncio.to_thread(_checkpoint, self.path)
            except sqlite3.Error as error:
                log.warning("sqlite checkpoint failed (retried later): %s", error)
                self._dirty.set()
            await asyncio.sleep(CHECKPOINT_INTERVAL_SECONDS)


def _checkpoint(path: str) -> None:
    """Copy the WAL into the database file (PASSIVE: never waits for readers or writers)."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        connection.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT_BYTES}")
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        connection.close()
