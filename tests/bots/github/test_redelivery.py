"""GitHub redelivery against a fake GitHub that delivers and logs the app's webhooks
(over loopback, with the app's JWT), on real SQLite and PostgreSQL: which failed
deliveries are asked for again, once, and how far back the log is read."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bots.github.api import GithubApi
from bots.github.credentials import AppCredentials, GithubAppSource
from bots.github.redelivery import GITHUB_REDELIVER_JOB, github_redelivery
from bots.redelivery import DAY_SECONDS, HOUR_SECONDS, Redelivery
from db.deliveries import record_delivery
from db.job_kinds import JobStatus
from db.jobs import JobQueue
from db.marks import last_runs
from db.secrets import SecretBox
from db.store import Store
from relay.settings import Settings
from tests.support.agent_server import free_port
from tests.support.fake_github_deliveries import DeliveringGitHub, HookAttempt
from tests.support.receiver import RecordingReceiver
from tests.support.waiting import wait_for

CLI = Path(sys.executable).parent / "agent-relay"
APP_ID = 12
SECRET = "hook-secret"


@pytest.fixture
def github() -> Iterator[DeliveringGitHub]:
    with DeliveringGitHub() as fake:
        fake.add_app(APP_ID, "relay-test")
        yield fake


@pytest.fixture
def relay() -> Iterator[RecordingReceiver]:
    """Where the app's webhooks go: stands for the relay's /github/events."""
    with RecordingReceiver() as receiver:
        yield receiver


@pytest.fixture
async def api(github: DeliveringGitHub, store: Store) -> AsyncIterator[GithubApi]:
    pem = github.app_by_slug("relay-test").private_key_pem
    app = AppCredentials(app_id=str(APP_ID), slug=None, private_key=pem, webhook_secret=SECRET)
    async with httpx.AsyncClient(timeout=10) as http:
        yield GithubApi(http, GithubAppSource(store, SecretBox(None), app), github.api_url)


def redelivery(store: Store, api: GithubApi, *, retention_days: float = 7) -> Redelivery:
    return github_redelivery(
        store, JobQueue(store), api, interval=300, retention_days=retention_days
    )


def comment_payload(number: int) -> dict[str, Any]:
    return {
        "action": "created",
        "issue": {"number": number},
        "installation": {"id": 3},
        "repository": {"id": 44},
    }


def while_down(github: DeliveringGitHub, count: int) -> list[HookAttempt]:
    """Mentions made while the relay is down: nothing listens at its URL."""
    github.set_webhook(APP_ID, f"http://127.0.0.1:{free_port()}/github/events")
    return [github.deliver(APP_ID, "issue_comment", comment_payload(n)) for n in range(count)]


async def redelivered(github: DeliveringGitHub, guids: list[str]) -> None:
    """Wait until GitHub has made its redelivery attempt of each of `guids`."""
    await wait_for(
        lambda: all(any(a.redelivery for a in github.attempts(g)) for g in guids),
        message=lambda: f"attempts: {github.attempts()}",
    )


async def test_failed_deliveries_are_redelivered_once_each(
    store: Store, api: GithubApi, github: DeliveringGitHub, relay: RecordingReceiver
) -> None:
    failed = while_down(github, 3)
    assert {a.status_code for a in failed} == {0}
    github.set_webhook(APP_ID, f"{relay.url}/github/events")  # back up

    run = await redelivery(store, api).run()

    guids = [a.guid for a in failed]
    assert sorted(run.requested_ids) == sorted(guids)
    await redelivered(github, guids)
    received = [r.headers["x-github-delivery"] for r in relay.requests_to("/github/events")]
    assert sorted(received) == sorted(guids)
    # Redelivered with the original body, signed as GitHub signs it.
    assert {r.body for r in relay.requests} == {a.body for a in failed}

    again = await redelivery(store, api).run(since=0)
    assert (again.requested, again.failed) == (0, 0)  # each now has an OK attempt
    assert len(relay.requests) == 3


async def test_a_delivery_in_the_ledger_is_not_redelivered(
    store: Store, api: GithubApi, github: DeliveringGitHub
) -> None:
    # The relay recorded it, then took too long to answer: GitHub logged a failure.
    [recorded, lost] = while_down(github, 2)
    await record_delivery(store, "github", recorded.guid)

    run = await redelivery(store, api).run()

    assert run.requested_ids == [lost.guid]
    assert (run.failed, run.in_ledger) == (2, 1)


async def test_a_delivery_the_relay_refused_is_not_retried_and_the_log_says_so(
    store: Store,
    api: GithubApi,
    github: DeliveringGitHub,
    relay: RecordingReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    github.set_webhook(APP_ID, f"{relay.url}/github/events")
    relay.fail_next(401)  # a bad signature
    refused = github.deliver(APP_ID, "issue_comment", comment_payload(1))
    relay.fail_next(502)
    broken = github.deliver(APP_ID, "issue_comment", comment_payload(2))

    with caplog.at_level(logging.WARNING, logger="bots.redelivery"):
        run = await redelivery(store, api).run()

    assert run.requested_ids == [broken.guid]
    assert run.not_retried == 1
    assert f"github delivery {refused.guid} (issue_comment.created) failed with" in caplog.text
    assert "HTTP 401" in caplog.text and "not redelivered" in caplog.text


async def test_a_redelivery_that_fails_again_is_not_asked_for_twice(
    store: Store, api: GithubApi, github: DeliveringGitHub
) -> None:
    [failed] = while_down(github, 1)
    first = await redelivery(store, api).run()
    await redelivered(github, [failed.guid])  # still down: it failed again

    second = await redelivery(store, api).run(since=0)

    assert first.requested_ids == [failed.guid]
    assert (second.requested, second.already_requested) == (0, 1)
    assert len([c for c in github.calls("POST") if "/attempts" in c.path]) == 1


async def test_every_page_of_the_log_is_read(
    store: Store, api: GithubApi, github: DeliveringGitHub, relay: RecordingReceiver
) -> None:
    github.set_webhook(APP_ID, f"{relay.url}/github/events")
    for number in range(120):
        github.deliver(APP_ID, "issue_comment", comment_payload(number))
    [failed] = while_down(github, 1)
    github.backdate(failed.guid, 60)  # the oldest: on the second page

    run = await redelivery(store, api).run()

    assert (run.read, run.requested_ids) == (121, [failed.guid])
    pages = [c for c in github.calls("GET") if c.path == "/app/hook/deliveries"]
    assert len(pages) == 2 and all(c.auth == "jwt" for c in pages)


async def test_the_first_look_reaches_back_six_hours_and_a_later_one_to_the_last(
    store: Store, api: GithubApi, github: DeliveringGitHub
) -> None:
    [old, recent] = while_down(github, 2)
    github.backdate(old.guid, 7 * HOUR_SECONDS)
    github.backdate(recent.guid, HOUR_SECONDS)

    first = await redelivery(store, api).run()
    later = await redelivery(store, api).run()

    assert first.requested_ids == [recent.guid]
    assert first.since == pytest.approx(first.at - 6 * HOUR_SECONDS, abs=1)
    assert later.since == pytest.approx(first.at - 60, abs=1)  # a minute's overlap
    assert later.read == 0  # the redelivery attempt is still on its way, or newer
    asked = await redelivery(store, api).run(since=first.at - 8 * HOUR_SECONDS)
    assert old.guid in asked.requested_ids


async def test_the_look_never_reaches_past_three_days_nor_the_ledgers_memory(
    store: Store, api: GithubApi
) -> None:
    at_most_3_days = await redelivery(store, api).run(since=0)
    one_day_ledger = await redelivery(store, api, retention_days=1).run(since=0)
    assert at_most_3_days.since == pytest.approx(at_most_3_days.at - 3 * DAY_SECONDS, abs=1)
    assert one_day_ledger.since == pytest.approx(one_day_ledger.at - DAY_SECONDS, abs=1)


async def test_an_unreachable_log_changes_nothing_and_the_next_run_reads_it_all(
    store: Store, api: GithubApi, github: DeliveringGitHub
) -> None:
    [failed] = while_down(github, 1)
    github.fail_next("GET", "/app/hook/deliveries", 502)

    broken = await redelivery(store, api).run()
    mended = await redelivery(store, api).run()

    assert broken.error is not None and "502" in broken.error
    assert mended.since == pytest.approx(broken.since, abs=1)
    assert mended.requested_ids == [failed.guid]
    [shown] = await last_runs(store)
    assert shown["title"] == "GitHub redelivery" and shown["error"] is None


async def test_the_periodic_run_queues_the_next_one_first(store: Store, api: GithubApi) -> None:
    queue = JobQueue(store)
    periodic = github_redelivery(store, queue, api, interval=300, retention_days=7)
    assert await periodic.schedule() is not None
    assert await periodic.schedule() is None
    job = await queue.claim()
    assert job is not None and job.kind == GITHUB_REDELIVER_JOB.name

    await periodic.handle(job)

    [following] = await queue.newest(status=JobStatus.QUEUED)
    assert following.payload == {"period": job.payload["period"] + 1}


# -- `agent-relay github redeliver` ------------------------------------------------------


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    database = {"DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}"}
    return subprocess.run(
        [str(CLI), *args],
        cwd=tmp_path,
        env={**inherited, **database, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_asks_now_and_prints_what_it_asked_for(
    tmp_path: Path, github: DeliveringGitHub
) -> None:
    [failed] = while_down(github, 1)
    github.backdate(failed.guid, 7 * HOUR_SECONDS)  # older than a first look reaches
    app = github.app_by_slug("relay-test")
    settings = {
        "GITHUB_APP_ID": str(APP_ID),
        "GITHUB_PRIVATE_KEY": app.private_key_pem,
        "GITHUB_WEBHOOK_SECRET": app.webhook_secret,
        "GITHUB_API_URL": github.api_url,
    }
    assert run_cli(tmp_path, "migrate").returncode == 0

    default = run_cli(tmp_path, "github", "redeliver", **settings)
    wider = run_cli(tmp_path, "github", "redeliver", "--since", "8h", **settings)

    assert default.returncode == 0, default.stderr
    assert "github: 0 deliveries read" in default.stdout
    assert wider.returncode == 0, wider.stderr
    assert "github: 1 deliveries read, 1 failed: 1 redelivered" in wider.stdout
    assert f"redelivery requested: {failed.guid}" in wider.stdout


def test_the_command_refuses_a_bad_duration_and_an_unconfigured_github(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "migrate").returncode == 0
    bad = run_cli(tmp_path, "github", "redeliver", "--since", "yesterday")
    off = run_cli(tmp_path, "github", "redeliver")
    assert bad.returncode == 2 and "not a duration like 6h" in bad.stderr
    assert off.returncode == 2 and "github is not configured" in off.stderr
