"""Cross-process job wakeups on PostgreSQL: NOTIFY on enqueue, LISTEN in workers.

Workers in the process that enqueued a job wake through the queue's asyncio event;
those in other processes would otherwise find it at their next poll (a second away).
Statements that make a job runnable now also notify one channel, inside the
enqueuing transaction, so PostgreSQL delivers the notification only on commit,
when the job is visible. Each worker process listens on a connection of its own,
outside the pool, because a listening connection must stay open and idle.

SQLite needs none of this: it is the single-node default, where the in-process
event reaches every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from db.store import Store

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "agent_relay_jobs"
# Names the listening session in pg_stat_activity, for operators (and tests).
APPLICATION_NAME = "agent-relay job wakeups"


def notifying(statement: str) -> str:
    """`statement` (an INSERT or UPDATE ... RETURNING) made to notify the job channel
    once per row it returns, so a statement that changed nothing notifies no one.

    PostgreSQL folds identical notifications of one transaction into one, so a
    transaction that enqueues a thousand jobs wakes each listener once.
    """
    return (
        f"WITH changed AS ({statement})"
        f" SELECT changed.*, pg_notify('{CHANNEL}', '') AS notified FROM changed"
    )


class JobWakeupListener:
    """Sets `wakeup` whenever any process commits a runnable job; reconnects when its
    connection is lost, with a growing, jittered delay between attempts."""

    def __init__(
        self,
        url: str,
        wakeup: asyncio.Event,
        *,
        retry_min: float = 0.1,
        retry_max: float = 10.0,
        check_interval: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.wakeup = wakeup
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.check_interval = check_interval
        self.connect_timeout = connect_timeout
        # Set while listening; counts the sessions opened (for tests and operators).
        self.listening = asyncio.Event()
        self.sessions = 0

    async def run(self) -> None:
        """Listen until cancelled. Workers keep polling meanwhile, so time without a
        listening connection delays jobs; it never loses them."""
        delay = self.retry_min
        while True:
            sessions = self.sessions
            problem = "connection lost"
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Any failure (refused connection, dropped session, a timeout) means
                # the same here: reconnect after a while, and never stop trying.
                problem = f"{type(exc).__name__}: {exc}"
            if self.sessions > sessions:
                delay = self.retry_min  # it was listening: the server is there
            pause = delay * random.uniform(0.5, 1.0)
            log.warning("job wakeups: %s; reconnecting in %.2f s", problem, pause)
            await asyncio.sleep(pause)
            delay = min(delay * 2, self.retry_max)

    async def _listen_once(self) -> None:
        """One listening session; returns when its connection is lost."""
        import asyncpg  # only PostgreSQL listens; SQLite processes never load it

        connection = await asyncpg.connect(
            self.url,
            timeout=self.connect_timeout,
            server_settings={"application_name": APPLICATION_NAME},
        )
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        try:
            await connection.add_listener(CHANNEL, self._notified)
            self.sessions += 1
            self.listening.set()
            if self.sessions > 1:
                log.info("job wakeups: listening again")
            # Jobs committed while no one listened would wait for the next poll.
            self.wakeup.set()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self.check_interval)
                if not lost.is_set():
                    # A connection cut without a FIN (a NAT timeout, a dead host) never
                    # reports itself: ask the server now and then.
                    await connection.fetchval("SELECT 1", timeout=self.check_interval)
        finally:
            self.listening.clear()
            await _close(connection)

    def _notified(self, *_args: Any) -> None:
        self.wakeup.set()


async def _close(connection: asyncpg.Connection) -> None:
    if connection.is_closed():
        return
    try:
        await asyncio.wait_for(connection.close(), 2.0)
    except asyncio.CancelledError:
        connection.terminate()
        raise
    except Exception:
        # Closing politely needs a live server; without one, just drop the socket.
        connection.terminate()


@contextlib.asynccontextmanager
async def job_wakeups(
    store: Store, wakeup: asyncio.Event
) -> AsyncIterator[JobWakeupListener | None]:
    """While open, `wakeup` is set whenever any process commits a runnable job
    (PostgreSQL). On SQLite there is nothing to do and it yields None."""
    if store.is_sqlite:
        yield None
        return
    listener = JobWakeupListener(store.url, wakeup)
    task = asyncio.create_task(listener.run(), name="job-wakeups")
    try:
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
