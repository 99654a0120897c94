"""The `agent-relay` console script, run as operators run it, on a temporary SQLite file.

Independent commands run concurrently to keep the wall time down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from db.callbacks import CallbackStatus, save_callback
from db.job_kinds import JobStatus
from db.jobs import JobQueue
from db.migrations import MIGRATIONS, migrate
from db.store import Store
from relay.settings import Settings
from tests.support.fake_agent_api import WEBHOOK_SECRET, insert_webhook_callback
from tests.support.job_kinds import AnyPayload, kind_named

CLI = Path(sys.executable).parent / "agent-relay"
CONVERSATION_ID = "35d77258005d458983a8431e1722da40"


def cli_environment(database_url: str, **extra: str) -> dict[str, str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in Settings.model_fields
    }
    return {**environment, "DATABASE_URL": database_url, **extra}


def run_cli(
    cwd: Path, database_url: str, *args: str, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        cwd=cwd,
        env=cli_environment(database_url, **extra_env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_all(
    cwd: Path, database_url: str, *commands: list[str]
) -> list[subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        return list(pool.map(lambda args: run_cli(cwd, database_url, *args), commands))


@pytest.fixture
def database_file_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'relay.db'}"


@pytest.fixture
async def migrated_store(database_file_url: str) -> Store:
    async with Store(database_file_url) as store:
        await migrate(store)
    return Store(database_file_url)


def test_console_script_is_installed() -> None:
    assert CLI.exists(), f"{CLI} missing: pip install -e . in the venv"


def test_migrate_twice(tmp_path: Path, database_file_url: str) -> None:
    first = run_cli(tmp_path, database_file_url, "migrate")
    second = run_cli(tmp_path, database_file_url, "migrate")
    assert first.returncode == 0, first.stderr
    versions = [version for version, _, _ in MIGRATIONS]
    assert f"applied migrations: {versions}" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout
    assert (tmp_path / "relay.db").exists()


async def test_callbacks_list_and_show(
    tmp_path: Path, database_file_url: str, migrated_store: Store
) -> None:
    async with migrated_store as store:
        active = await insert_webhook_callback(store, CONVERSATION_ID)
        closed = await insert_webhook_callback(store, CONVERSATION_ID)
        closed.status, closed.status_reason = CallbackStatus.ERROR, "agent state error"
        await save_callback(store, closed)

    listing, errors_only, shown, missing = run_all(
        tmp_path,
        database_file_url,
        ["callbacks", "list"],
        ["callbacks", "list", "--status", "error"],
        ["callbacks", "show", str(active.id)],
        ["callbacks", "show", "999999"],
    )

    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[:3] == [str(closed.id), "ERROR", "webhook"]
    assert lines[1].split()[:3] == [str(active.id), "ACTIVE", "webhook"]
    assert all(CONVERSATION_ID in line for line in lines)
    assert "agent state error" in lines[0]

    assert errors_only.returncode == 0, errors_only.stderr
    assert [line.split()[0] for line in errors_only.stdout.splitlines()] == [str(closed.id)]

    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["id"] == active.id
    assert view["conversation_id"] == CONVERSATION_ID
    assert view["status"] == "ACTIVE"
    assert view["processor_type"] == "webhook"

    assert missing.returncode == 1
    assert "no callback 999999" in missing.stderr

    for result in (listing, shown):
        assert WEBHOOK_SECRET not in result.stdout + result.stderr


async def test_jobs_list_and_retry(
    tmp_path: Path, database_file_url: str, migrated_store: Store
) -> None:
    async with migrated_store as store:
        queue = JobQueue(store)
        failed_id = await queue.enqueue(
            kind_named("callback.reply"), AnyPayload(n=1), max_attempts=3
        )
        queued_id = await queue.enqueue(kind_named("agent.state_changed"), AnyPayload(n=2))
        job = await queue.claim()
        assert job is not None and job.id == failed_id
        await queue.fail(job, "receiver answered 500", permanent=True)

    listing, failed_only = run_all(
        tmp_path, database_file_url, ["jobs", "list"], ["jobs", "list", "--status", "failed"]
    )
    assert listing.returncode == 0, listing.stderr
    assert {line.split()[0] for line in listing.stdout.splitlines()} == {
        str(failed_id),
        str(queued_id),
    }
    [failed_line] = failed_only.stdout.splitlines()
    assert failed_line.split()[:3] == [str(failed_id), "failed", "callback.reply"]
    assert "receiver answered 500" in failed_line

    retried, unknown, not_failed = run_all(
        tmp_path,
        database_file_url,
        ["jobs", "retry", str(failed_id)],
        ["jobs", "retry", "999999"],
        ["jobs", "retry", str(queued_id)],
    )
    assert retried.returncode == 0, retried.stderr
    assert f"job {failed_id} queued again" in retried.stdout
    assert unknown.returncode == 1
    assert "999999" in unknown.stderr
    assert not_failed.returncode == 1

    async with Store(database_file_url) as store:
        [again] = [job for job in await JobQueue(store).newest() if job.id == failed_id]
    assert again.status is JobStatus.QUEUED
    assert again.attempts == 0


def test_invalid_setting_exits_naming_the_variable(tmp_path: Path, database_file_url: str) -> None:
    result = run_cli(tmp_path, database_file_url, "migrate", PORT="abc")
    assert result.returncode != 0
    assert "PORT" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "relay.db").exists()


def test_slack_manifest_prints_the_filled_in_manifest(
    tmp_path: Path, database_file_url: str
) -> None:
    result = run_cli(
        tmp_path,
        database_file_url,
        "slack",
        "manifest",
        "--public-url",
        "https://relay.example.com",
    )
    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load(result.stdout)
    assert manifest["settings"]["event_subscriptions"]["request_url"] == (
        "https://relay.example.com/slack/events"
    )
    assert manifest["oauth_config"]["redirect_urls"] == [
        "https://relay.example.com/slack/oauth_redirect"
    ]
    assert "${" not in result.stdout
    assert "# chat.postMessage" in result.stdout


def test_slack_manifest_without_a_public_url_exits_2(
    tmp_path: Path, database_file_url: str
) -> None:
    result = run_cli(tmp_path, database_file_url, "slack", "manifest")
    assert result.returncode == 2
    assert "set PUBLIC_URL or pass --public-url" in result.stderr
    assert result.stdout == ""


async def test_callbacks_list_filters_by_conversation_and_processor_type(
    tmp_path: Path, database_file_url: str, migrated_store: Store
) -> None:
    other_conversation_id = "0c4a9a1e2f7b4c0e9d3a5b6c7d8e9f00"
    async with migrated_store as store:
        ours = await insert_webhook_callback(store, CONVERSATION_ID)
        await insert_webhook_callback(store, other_conversation_id)

    dashed, by_type, no_such_type, malformed = run_all(
        tmp_path,
        database_file_url,
        ["callbacks", "list", "--conversation-id", str(uuid.UUID(CONVERSATION_ID))],
        ["callbacks", "list", "--processor-type", "webhook"],
        ["callbacks", "list", "--processor-type", "carrier-pigeon"],
        ["callbacks", "list", "--conversation-id", "junk"],
    )
    assert dashed.returncode == 0, dashed.stderr
    assert [line.split()[0] for line in dashed.stdout.splitlines()] == [str(ours.id)]
    assert len(by_type.stdout.splitlines()) == 2
    assert no_such_type.returncode == 0
    assert no_such_type.stdout == ""
    assert malformed.returncode == 2
    assert "not a UUID" in malformed.stderr
