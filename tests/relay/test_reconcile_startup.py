"""Reconciliation wired into the relay: its settings, its handlers, and one run queued
by processes that run workers, however many start."""

from __future__ import annotations

from typing import Any

import pytest

from db.jobs import JobQueue
from db.migrations import migrate
from db.store import Store
from processors.reconcile import LOST_JOB, RECONCILE_JOB
from relay.app import Relay
from relay.settings import Settings


def settings_for(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": database_url, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_reconciliation_defaults_to_a_minute_and_five_quiet_minutes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.reconcile_interval_seconds, settings.reconcile_after_seconds) == (60, 300)
    monkeypatch.setenv("RECONCILE_INTERVAL_SECONDS", "0")
    with pytest.raises(ValueError):
        Settings(_env_file=None)  # type: ignore[call-arg]


async def test_workers_handle_the_reconciliation_and_starting_queues_one_run(
    database_url: str,
) -> None:
    async with Store(database_url) as store:
        await migrate(store)
    for _ in range(2):  # two processes starting, or one restarting
        relay = Relay.build(settings_for(database_url, reconcile_interval_seconds=5))
        assert {RECONCILE_JOB.name, LOST_JOB.name} <= relay.worker.handlers.keys()
        await relay.start(migrate_sqlite=False)
        await relay.close()
    async with Store(database_url) as store:
        jobs = await JobQueue(store).newest(limit=100)
    assert [job.kind for job in jobs if job.kind == RECONCILE_JOB.name] == [RECONCILE_JOB.name]
