"""relay/doctor/database.py: the database answers, its schema is current, no job has
failed for good, and the stored credentials open with SECRET_KEY."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.slack.installations import DatabaseInstallationStore
from db.jobs import JobQueue
from db.migrations import LATEST_VERSION, MIGRATIONS, migrate
from db.store import Store
from relay.app import Relay
from tests.support.deployment import SLACK_TOKEN, Peers
from tests.support.doctor import lines, only, run_checks, settings_of, slack_installation
from tests.support.job_kinds import AnyPayload, kind_named


async def test_a_schema_behind_this_release_fails_with_migrate(
    peers: Peers, database_url: str
) -> None:
    async with Store(database_url) as store:
        await store.execute(
            "DELETE FROM schema_migrations WHERE version = :v", {"v": LATEST_VERSION}
        )

    results = await run_checks(settings_of(peers.environment(database_url)))

    schema = only(results, "schema")
    assert schema.status == "fail"
    # The version before (numbers may skip one while branches that add one meet).
    previous = MIGRATIONS[-2][0]
    assert schema.detail == f"version {previous}, this release needs {LATEST_VERSION}"
    assert schema.fix == "run `agent-relay migrate`"


async def test_a_missing_sqlite_file_fails_and_is_not_created(peers: Peers, tmp_path: Path) -> None:
    path = tmp_path / "nothing-here.db"

    results = await run_checks(settings_of(peers.environment(f"sqlite:///{path}")))

    database = only(results, "database")
    assert (database.status, database.fix) == ("fail", "run `agent-relay migrate`")
    assert only(results, "schema").status == "skip"
    assert not path.exists()


async def test_an_unreachable_postgresql_fails(peers: Peers) -> None:
    url = "postgresql://relay:db-password-never-shown@127.0.0.1:1/relay"

    results = await run_checks(settings_of(peers.environment(url)))

    database = only(results, "database")
    assert database.status == "fail"
    assert database.detail.startswith("postgresql 127.0.0.1:1/relay does not answer")
    assert "db-password-never-shown" not in lines(results)


@pytest.mark.postgres
async def test_a_migrated_postgresql_passes(peers: Peers, empty_postgres_url: str) -> None:
    async with Store(empty_postgres_url) as store:
        await migrate(store)

    results = await run_checks(settings_of(peers.environment(empty_postgres_url)))

    assert only(results, "database").status == "ok"
    assert only(results, "schema").status == "ok"


async def test_failed_jobs_are_a_warning_pointing_at_jobs_list(
    peers: Peers, database_url: str
) -> None:
    async with Store(database_url) as store:
        queue = JobQueue(store)
        await queue.enqueue(kind_named("test.kind"), AnyPayload(), max_attempts=1)
        job = await queue.claim()
        assert job is not None
        await queue.fail(job, "broken for good", permanent=True)

    results = await run_checks(settings_of(peers.environment(database_url)))

    jobs = only(results, "jobs")
    assert (jobs.status, jobs.detail) == ("warn", "1 job(s) failed for good")
    assert jobs.fix is not None and "agent-relay jobs list --status failed" in jobs.fix


async def test_credentials_stored_with_another_secret_key_fail(
    peers: Peers, oauth_environment: dict[str, str]
) -> None:
    relay = Relay.build(settings_of(oauth_environment, SLACK_BOT_TOKEN=None))
    await relay.start(schedule_maintenance=False)
    try:
        installations = DatabaseInstallationStore(relay.store, relay.secrets)
        await installations.async_save(slack_installation("T0ACME", SLACK_TOKEN))
    finally:
        await relay.close()

    changed = await run_checks(
        settings_of(oauth_environment, SLACK_BOT_TOKEN=None, SECRET_KEY="another-secret-key-0000")
    )
    unset = await run_checks(settings_of(oauth_environment, SLACK_BOT_TOKEN=None, SECRET_KEY=None))

    stored = only(changed, "stored credentials")
    assert stored.status == "fail"
    assert stored.fix is not None and stored.fix.startswith("set SECRET_KEY back")
    workspace = only(changed, "slack workspace T0ACME")
    assert (workspace.status, workspace.detail) == (
        "fail",
        "stored bot token unreadable (CredentialsUnreadable)",
    )
    assert only(unset, "stored credentials").status == "warn"
