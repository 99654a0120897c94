"""Retention wired into the relay: the setting, the handler, and the first run queued
by processes that run workers (and only by them)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from db.jobs import JobQueue
from db.migrations import migrate
from db.retention import PRUNE_JOB
from db.store import Store
from relay.app import Relay, create_app
from relay.settings import Settings


def settings_for(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": database_url, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def prune_jobs(database_url: str) -> list[int]:
    async with Store(database_url) as store:
        jobs = await JobQueue(store).newest(limit=100)
    return [job.id for job in jobs if job.kind == PRUNE_JOB.name]


@pytest.fixture
async def migrated_url(database_url: str) -> str:
    async with Store(database_url) as store:
        await migrate(store)
    return database_url


def test_retention_days_defaults_to_a_week_and_zero_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(_env_file=None).retention_days == 7  # type: ignore[call-arg]
    monkeypatch.setenv("RETENTION_DAYS", "0")
    assert Settings(_env_file=None).retention_days == 0  # type: ignore[call-arg]
    monkeypatch.setenv("RETENTION_DAYS", "-1")
    with pytest.raises(ValueError):
        Settings(_env_file=None)  # type: ignore[call-arg]


async def test_workers_handle_the_prune_job_and_starting_queues_one_run(
    migrated_url: str,
) -> None:
    for _ in range(2):  # two processes starting, or one restarting
        relay = Relay.build(settings_for(migrated_url))
        assert PRUNE_JOB.name in relay.worker.handlers
        await relay.start(migrate_sqlite=False)
        await relay.close()
    assert len(await prune_jobs(migrated_url)) == 1


async def test_a_web_only_process_queues_no_run(migrated_url: str) -> None:
    app = create_app(settings_for(migrated_url), run_worker=False)
    async with app.router.lifespan_context(app):
        pass
    assert await prune_jobs(migrated_url) == []


async def test_zero_retention_days_queues_no_run(migrated_url: str) -> None:
    relay = Relay.build(settings_for(migrated_url, retention_days=0))
    await relay.start(migrate_sqlite=False)
    await relay.close()
    assert await prune_jobs(migrated_url) == []


@pytest.mark.postgres
async def test_an_unmigrated_database_does_not_stop_the_start(
    empty_postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    relay = Relay.build(settings_for(empty_postgres_url))
    with caplog.at_level(logging.WARNING, logger="relay.app"):
        await relay.start()
    await relay.close()
    assert "could not schedule the retention job" in caplog.text


async def test_serve_on_sqlite_queues_the_first_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    relay = Relay.build(settings_for(url))
    await relay.start()  # migrates SQLite first, as `serve` does
    await relay.close()
    assert len(await prune_jobs(url)) == 1


def test_the_pruning_interval_comes_from_the_settings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    assert Relay.build(settings_for(url)).retention is not None
    relay = Relay.build(settings_for(url, retention_interval_seconds=5))
    assert relay.retention is not None and relay.retention.period == 5
    with pytest.raises(ValueError):
        settings_for(url, retention_interval_seconds=0)
