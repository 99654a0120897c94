"""Shared fixtures: a migrated Store on real SQLite and on real PostgreSQL.

PostgreSQL is TEST_POSTGRES_URL (default: the local server's `test` database); each
test session works in a database of its own that it creates there and drops at the
end. Where no server answers there, the tests that need one skip, which under CI
fails the run (tests/support/skips.py).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from db.migrations import migrate
from db.store import Store
from processors.context import ProcessorContext
from relay.platforms import register_processor_kinds
from tests.support.fake_agent_api import FakeAgentServer, FakeWebhookReceiver, processor_context

pytest_plugins = ["tests.support.skips"]


@pytest.fixture(autouse=True, scope="session")
def processor_kinds() -> None:
    """Stored callbacks load as the composition root makes them: every kind registered."""
    register_processor_kinds()


ADMIN_POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
# Seconds to wait for PostgreSQL before the tests that need it skip: a server that
# answers does so at once, an unreachable host would hold every run for asyncpg's 60.
POSTGRES_CONNECT_TIMEOUT = 5
NO_POSTGRES = (
    "no PostgreSQL answers at TEST_POSTGRES_URL ({error}); start one "
    "(`pg_ctlcluster <version> main start`, as .ci/run does) or point "
    "TEST_POSTGRES_URL at one"
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a fresh database for this test session, dropped afterwards."""
    name = f"agent_relay_test_{uuid.uuid4().hex[:12]}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(ADMIN_POSTGRES_URL, timeout=POSTGRES_CONNECT_TIMEOUT)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError) as unreachable:
        pytest.skip(NO_POSTGRES.format(error=unreachable or type(unreachable).__name__))
    base, _, _ = ADMIN_POSTGRES_URL.rpartition("/")
    yield f"{base}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def reset_postgres(url: str) -> None:
    """Empty the database of `url` (everything lives in its public schema)."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()


@pytest.fixture
def empty_postgres_url(postgres_url: str) -> str:
    """The session's PostgreSQL database, emptied for this test."""
    asyncio.run(reset_postgres(postgres_url))
    return postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind (parametrised: every test runs on both)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'relay.db'}"
    url: str = request.getfixturevalue("empty_postgres_url")
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A connected, migrated Store on the parametrised database."""
    async with Store(database_url) as connected:
        await migrate(connected)
        yield connected


# Processors (tests/processors, and each platform's reply tests in tests/bots) run
# against an in-memory agent-server and webhook receiver (httpx mocks).


@pytest.fixture
def agent_server() -> FakeAgentServer:
    return FakeAgentServer()


@pytest.fixture
def receiver() -> FakeWebhookReceiver:
    return FakeWebhookReceiver()


@pytest.fixture
async def context(
    store: Store, agent_server: FakeAgentServer, receiver: FakeWebhookReceiver
) -> AsyncIterator[ProcessorContext]:
    async with processor_context(store, agent_server, receiver) as ready:
        yield ready
