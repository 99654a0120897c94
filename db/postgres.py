"""PostgreSQL for the Store: an asyncpg pool, used directly.

Written by hand because `databases` compiles every statement through SQLAlchemy and
wraps every row; on the job queue's hot path (a claim is four statements) that was
a large share of each worker's CPU. What it did for us is small and kept here:
`:name` parameters (translated to asyncpg's `$n` once per statement text), one
connection per task for the length of a transaction (nested transactions are
savepoints), and rows as dicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

# A quoted literal (left as it is: 'T1:C1' holds no parameter), or a `:name` that is
# not part of a word, a `::` cast or a literal.
_LITERAL_OR_PARAMETER = re.compile(r"'(?:[^']|'')*'|(?<![:\w\\]):([A-Za-z_]\w*)")


@dataclass(frozen=True)
class _Statement:
    sql: str
    names: tuple[str, ...]


@dataclass
class _TaskConnection:
    """The connection a task's open transaction runs on."""

    task: asyncio.Task[Any] | None
    connection: PoolConnectionProxy


class PostgresDatabase:
    def __init__(self, url: str, *, min_size: int, max_size: int) -> None:
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._statements: dict[str, _Statement] = {}
        self._current: ContextVar[_TaskConnection | None] = ContextVar(
            f"postgres_connection_{id(self)}", default=None
        )

    async def connect(self) -> None:
        import asyncpg  # only PostgreSQL deployments load it

        self._pool = await asyncpg.create_pool(
            self.url, min_size=self.min_size, max_size=self.max_size, reset=_keep_session
        )

    async def disconnect(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the PostgreSQL store is not connected")
        return self._pool

    def _prepare(self, query: str, values: Mapping[str, Any]) -> tuple[str, list[Any]]:
        statement = self._statements.get(query)
        if statement is None:
            names: list[str] = []

            def number(match: re.Match[str]) -> str:
                name = match.group(1)
                if name is None:
                    return match.group(0)
                if name not in names:
                    names.append(name)
                return f"${names.index(name) + 1}"

            statement = _Statement(_LITERAL_OR_PARAMETER.sub(number, query), tuple(names))
            self._statements[query] = statement
        return statement.sql, [values[name] for name in statement.names]

    def _own_connection(self) -> PoolConnectionProxy | None:
        current = self._current.get()
        if current is not None and current.task is asyncio.current_task():
            return current.connection
        # A task started inside another's transaction inherits the variable, not
        # the transaction: it takes a connection of its own.
        return None

    async def execute(self, query: str, values: Mapping[str, Any]) -> Any:
        sql, arguments = self._prepare(query, values)
        connection = self._own_connection()
        if connection is not None:
            return await connection.execute(sql, *arguments)
        return await self._require().execute(sql, *arguments)

    async def fetch_one(self, query: str, values: Mapping[str, Any]) -> dict[str, Any] | None:
        sql, arguments = self._prepare(query, values)
        connection = self._own_connection()
        if connection is not None:
            row = await connection.fetchrow(sql, *arguments)
        else:
            row = await self._require().fetchrow(sql, *arguments)
        return None if row is None else dict(row)

    async def fetch_all(self, query: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        sql, arguments = self._prepare(query, values)
        connection = self._own_connection()
        if connection is not None:
            rows = await connection.fetch(sql, *arguments)
        else:
            rows = await self._require().fetch(sql, *arguments)
        return [dict(row) for row in rows]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        connection = self._own_connection()
        if connection is not None:
            async with connection.transaction():  # a savepoint
                yield
            return
        async with self._require().acquire() as acquired:
            token = self._current.set(_TaskConnection(asyncio.current_task(), acquired))
            try:
                async with acquired.transaction():
                    yield
            finally:
                self._current.reset(token)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset when a connection comes back: nothing to undo.

    asyncpg's default sends `RESET ALL; UNLISTEN *; CLOSE ALL; pg_advisory_unlock_all()`
    on every release, a second round trip for every statement run outside a
    transaction. This store never changes session state: it sets no session settings,
    advisory locks are transaction-scoped, and LISTEN has its own connection
    (db/wakeups.py). asyncpg still rolls back a transaction left open before it
    calls this.
    """
