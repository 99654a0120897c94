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
  fsync never blocks the event loop. Under steady writes those checkpoints never
  find the WAL idle, and SQLite restarts a WAL only when one did: left alone it grew
  by every commit (4 GB in a benchmark of 20,000 conversations, 62 MB of data). So
  once it passes a size, the checkpointer restarts it (`_restart_wal`);
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
# Once it has been restarted, the WAL file is cut back to this size (a burst must not
# leave a WAL of its size on disk for ever).
_WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
# A WAL holding this many frames (64 MiB of 4 KiB pages) is restarted from its start.
WAL_RESTART_FRAMES = 16384
# Before a restart, passive passes run until one found no more than this to copy:
# the restart blocks writers while it copies what is left, so little must be left.
_CATCH_UP_FRAMES = 256
_MAX_CATCH_UP_PASSES = 5
# Restarts that found no gap between this process's commits before this process
# holds its own writers back for one.
_RESTARTS_BEFORE_HOLDING_WRITERS = 3


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
    def __init__(
        self, url: str, *, busy_timeout: float, wal_restart_frames: int = WAL_RESTART_FRAMES
    ) -> None:
        self.path = sqlite_path(url)
        self.busy_timeout = busy_timeout
        self.wal_restart_frames = wal_restart_frames
        self._missed_restarts = 0
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
            await asyncio.to_thread(_checkpoint, self.path, "PASSIVE")
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
                _, frames, copied = await asyncio.to_thread(_checkpoint, self.path, "PASSIVE")
                if frames >= self.wal_restart_frames:
                    await self._restart_wal(copied)
            except sqlite3.Error as error:
                log.warning("sqlite checkpoint failed (retried later): %s", error)
                self._dirty.set()
            await asyncio.sleep(CHECKPOINT_INTERVAL_SECONDS)

    async def _restart_wal(self, copied: int) -> None:
        """Copy what is left of the WAL and have the next commit write it from its
        start (a RESTART checkpoint), so the file stops growing.

        The RESTART takes the write lock while it copies what is left, so passive
        passes first copy what commits added meanwhile until little is left. SQLite's
        busy handler polls for the lock, and under steady writes may find no gap
        between this process's commits: after a few such misses this process's
        statements wait for the restart as for a transaction (asynchronously). Only
        then: done at every restart, that hold cost a third of the relay's webhook
        throughput in bench/ingest.py, against a wait of at most the busy timeout."""
        for _ in range(_MAX_CATCH_UP_PASSES):
            _, _, now_copied = await asyncio.to_thread(_checkpoint, self.path, "PASSIVE")
            caught_up = now_copied - copied <= _CATCH_UP_FRAMES
            copied = now_copied
            if caught_up:
                break
        if self._missed_restarts < _RESTARTS_BEFORE_HOLDING_WRITERS:
            busy, frames, _ = await asyncio.to_thread(_checkpoint, self.path, "RESTART")
        else:
            async with self._lock:
                self._owner = asyncio.current_task()
                try:
                    busy, frames, _ = await asyncio.to_thread(_checkpoint, self.path, "RESTART")
                finally:
                    self._owner = None
        self._missed_restarts = self._missed_restarts + 1 if busy else 0
        if busy:
            log.debug("sqlite WAL not restarted yet (%d frames)", frames)


def _checkpoint(path: str, mode: str) -> tuple[int, int, int]:
    """Copy the WAL into the database file: (1 if it could not finish, frames in the
    WAL, frames copied so far).

    PASSIVE never waits for readers or writers; RESTART waits (up to the busy timeout)
    for the write lock, copies everything, and waits for readers to leave the WAL so
    that the next writer starts it again."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        connection.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT_BYTES}")
        busy, frames, copied = connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        return int(busy), int(frames), int(copied)
    finally:
        connection.close()
