"""The database checks: it answers, its schema is current, no job has failed for good,
and the credentials stored in it open with SECRET_KEY."""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit

from bots.checks import CheckResult, fail, ok, skip, warn
from bots.github.credentials import APP_PLATFORM as GITHUB_APP_PLATFORM
from bots.slack import PLATFORM as SLACK_PLATFORM
from db.installations import get_installation, list_installations
from db.job_kinds import JobStatus
from db.migrations import LATEST_VERSION, current_version
from db.secrets import CredentialsUnreadable
from db.sqlite import sqlite_path
from relay.doctor.results import error_text
from relay.doctor.run import Run


async def probe_database(run: Run) -> CheckResult:
    """Does the database answer (connecting it first when the run is to)?"""
    store, checks = run.store, run.connector
    url = run.settings.database_url
    where = _database_place(url)
    if store.is_sqlite and checks.connect_database and not checks.connected:
        path = sqlite_path(url)
        # Connecting would create an empty file; say what is missing instead.
        if path != ":memory:" and not await asyncio.to_thread(os.path.exists, path):
            return fail("database", f"no database file at {path}", "run `agent-relay migrate`")
    try:
        await checks.connect()
        version = await current_version(store)
    except Exception as exc:
        return fail(
            "database",
            f"{where} does not answer: {error_text(exc)}",
            "check DATABASE_URL and that the database server runs",
        )
    return ok("database", f"{where} answers (schema version {version})")


async def database_checks(run: Run) -> list[CheckResult]:
    probe = await run.database_probe()
    if probe.status != "ok":
        return [
            probe,
            skip("schema", "the database does not answer"),
            skip("jobs", "the database does not answer"),
            skip("stored credentials", "the database does not answer"),
        ]
    schema = await run.bounded("schema", lambda: _schema(run), "run `agent-relay migrate`")
    if schema.status != "ok":
        return [
            probe,
            schema,
            skip("jobs", "the schema is not current"),
            skip("stored credentials", "the schema is not current"),
        ]
    jobs = await run.bounded("jobs", lambda: _failed_jobs(run), "check the database")
    stored = await run.bounded(
        "stored credentials", lambda: _stored_credentials(run), "check the database"
    )
    return [probe, schema, jobs, stored]


async def _schema(run: Run) -> CheckResult:
    version = await current_version(run.store)
    if version == LATEST_VERSION:
        return ok("schema", f"version {version}, current")
    if version < LATEST_VERSION:
        return fail(
            "schema",
            f"version {version}, this release needs {LATEST_VERSION}",
            "run `agent-relay migrate`",
        )
    return fail(
        "schema",
        f"version {version} is newer than this release knows ({LATEST_VERSION})",
        "run the agent-relay release that migrated it",
    )


async def _failed_jobs(run: Run) -> CheckResult:
    failed = (await run.relay.queue.counts()).get(JobStatus.FAILED.value, 0)
    if not failed:
        return ok("jobs", "no job has failed for good")
    return warn(
        "jobs",
        f"{failed} job(s) failed for good",
        "see `agent-relay jobs list --status failed`, fix the cause, then"
        " `agent-relay jobs retry ID`",
    )


async def _stored_credentials(run: Run) -> CheckResult:
    """Slack workspaces' tokens and the setup page's GitHub App are sealed with
    SECRET_KEY: without it, or with another one, they are lost to the relay."""
    sealed = [
        row
        for row in await list_installations(run.store)
        if row.platform in (SLACK_PLATFORM, GITHUB_APP_PLATFORM)
    ]
    if not sealed:
        return ok("stored credentials", "none stored")
    if not run.secrets.available:
        return warn(
            "stored credentials",
            f"{len(sealed)} stored credential(s) cannot be read: SECRET_KEY is unset",
            "set SECRET_KEY to the key they were stored with",
        )
    try:
        # One row tells: every row is sealed with the same key.
        await get_installation(run.store, run.secrets, sealed[0].platform, sealed[0].account_id)
    except CredentialsUnreadable:
        return fail(
            "stored credentials",
            "they do not decrypt: SECRET_KEY is not the key they were stored with",
            "set SECRET_KEY back to that key (or reinstall the Slack app and redo /github/setup)",
        )
    return ok("stored credentials", f"{len(sealed)} readable with SECRET_KEY")


def _database_place(url: str) -> str:
    if url.startswith("sqlite"):
        return f"sqlite {sqlite_path(url)}"
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"postgresql {parts.hostname or 'localhost'}{port}{parts.path}"
