"""GitLab redelivery against a fake GitLab that delivers its project hooks' events and
keeps their log (over loopback), on real SQLite and PostgreSQL: which failed events
are resent, once, within GitLab's 5 resends a minute, and what doctor says of it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bots.checks import CheckResult
from bots.gitlab.api import GitlabApi
from bots.gitlab.hooks import InstalledHook, installed_hooks, remember_hook
from bots.gitlab.redelivery import GitlabHookLog, ResendBudget, gitlab_redelivery
from bots.gitlab.redelivery_check import redelivery_check
from bots.redelivery import Redelivery
from db.deliveries import record_delivery
from db.jobs import JobQueue
from db.store import Store
from relay.settings import Settings
from tests.support.agent_server import free_port
from tests.support.fake_gitlab import BOT_TOKEN, WEBHOOK_SECRET, note_hook
from tests.support.fake_gitlab_deliveries import DeliveringGitlab
from tests.support.receiver import RecordingReceiver

CLI = Path(sys.executable).parent / "agent-relay"
PROJECT_ID = 7
PROJECT = "acme/widgets"
AUTHOR = 41


@pytest.fixture
def relay() -> Iterator[RecordingReceiver]:
    """Where the hook sends: stands for the relay's /gitlab/events."""
    with RecordingReceiver() as receiver:
        yield receiver


@pytest.fixture
def gitlab(relay: RecordingReceiver) -> Iterator[DeliveringGitlab]:
    with DeliveringGitlab() as fake:
        fake.add_project(PROJECT_ID, PROJECT)
        fake.add_user(AUTHOR, "ada")
        fake.add_issue(PROJECT_ID, 3, title="Broken", author_id=AUTHOR)
        yield fake


@pytest.fixture
async def api(gitlab: DeliveringGitlab) -> AsyncIterator[GitlabApi]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield GitlabApi(http, gitlab.url, BOT_TOKEN)


@pytest.fixture
async def hook(api: GitlabApi, store: Store, relay: RecordingReceiver) -> InstalledHook:
    url = f"{relay.url}/gitlab/events"
    created = await api.add_project_hook(PROJECT, {"url": url, "note_events": True, "token": "t"})
    installed = InstalledHook(PROJECT_ID, PROJECT, int(created["id"]), url)
    await remember_hook(store, installed)
    return installed


def redelivery(store: Store, api: GitlabApi) -> Redelivery:
    return gitlab_redelivery(store, JobQueue(store), api, interval=300, retention_days=7)


def mentions(gitlab: DeliveringGitlab, count: int) -> list[dict[str, Any]]:
    """Notes on issue 3, each delivered once; the logged events."""
    events = []
    for number in range(count):
        note = gitlab.add_note(
            PROJECT_ID, "issue", 3, author_id=AUTHOR, body=f"@openhands {number}"
        )
        events += gitlab.deliver(PROJECT_ID, "Note Hook", note_hook(gitlab, note))
    return events


def key_of(event: dict[str, Any]) -> str:
    return str(event["request_headers"]["Idempotency-Key"])


def down(gitlab: DeliveringGitlab, hook: InstalledHook) -> None:
    gitlab._hooks[PROJECT_ID][0]["url"] = f"http://127.0.0.1:{free_port()}/gitlab/events"


def up(gitlab: DeliveringGitlab, hook: InstalledHook) -> None:
    gitlab._hooks[PROJECT_ID][0]["url"] = hook.url


async def test_failed_events_are_resent_once_with_their_idempotency_key(
    store: Store,
    api: GitlabApi,
    gitlab: DeliveringGitlab,
    hook: InstalledHook,
    relay: RecordingReceiver,
) -> None:
    down(gitlab, hook)
    failed = mentions(gitlab, 3)
    assert {event["response_status"] for event in failed} == {"internal error"}
    up(gitlab, hook)

    run = await redelivery(store, api).run()

    assert sorted(run.requested_ids) == sorted(key_of(event) for event in failed)
    received = relay.requests_to("/gitlab/events")
    assert sorted(r.headers["idempotency-key"] for r in received) == sorted(run.requested_ids)
    # A resend is a new delivery: a new X-Gitlab-Event-UUID, the hook's secret token.
    old_uuids = {event["request_headers"]["X-Gitlab-Event-UUID"] for event in failed}
    assert not old_uuids & {r.headers["x-gitlab-event-uuid"] for r in received}
    assert {r.headers["x-gitlab-token"] for r in received} == {"t"}

    again = await redelivery(store, api).run(since=0)
    assert (again.requested, again.failed) == (0, 0)  # each now has a 200


async def test_an_event_in_the_ledger_under_either_id_is_not_resent(
    store: Store, api: GitlabApi, gitlab: DeliveringGitlab, hook: InstalledHook
) -> None:
    down(gitlab, hook)
    by_key, by_uuid, lost = mentions(gitlab, 3)
    await record_delivery(store, "gitlab", key_of(by_key))
    await record_delivery(store, "gitlab", by_uuid["request_headers"]["X-Gitlab-Event-UUID"])

    run = await redelivery(store, api).run()

    assert run.requested_ids == [key_of(lost)]
    assert run.in_ledger == 2


async def test_an_event_the_relay_refused_is_not_resent(
    store: Store,
    api: GitlabApi,
    gitlab: DeliveringGitlab,
    hook: InstalledHook,
    relay: RecordingReceiver,
) -> None:
    relay.fail_next(401)  # a wrong X-Gitlab-Token
    mentions(gitlab, 1)

    run = await redelivery(store, api).run()

    assert (run.failed, run.not_retried, run.requested) == (1, 1, 0)


async def test_at_most_five_resends_a_minute_per_hook_the_rest_later(
    store: Store, api: GitlabApi, gitlab: DeliveringGitlab, hook: InstalledHook
) -> None:
    down(gitlab, hook)
    failed = mentions(gitlab, 7)
    clock = gitlab.clock = Clock()
    log = GitlabHookLog(api, hook, ResendBudget(clock))
    periodic = Redelivery(
        store,
        JobQueue(store),
        platform="gitlab",
        title="GitLab redelivery",
        kind=redelivery(store, api).kind,
        interval=300,
        window=redelivery(store, api).window,
        logs=lambda scope: _just(log),
    )

    first = await periodic.run()
    clock.now += 61
    second = await periodic.run()

    assert (first.requested, first.deferred) == (5, 2)
    # The two left over are still found: the last look did not pass them by.
    assert second.requested == 2
    assert sorted(first.requested_ids + second.requested_ids) == sorted(map(key_of, failed))


async def test_a_project_can_be_looked_at_alone(
    store: Store, api: GitlabApi, gitlab: DeliveringGitlab, hook: InstalledHook
) -> None:
    other = await redelivery(store, api).run(scope="acme/other")
    mine = await redelivery(store, api).run(scope=PROJECT)
    assert (other.read, mine.error) == (0, None)
    assert [c for c in gitlab.calls("GET") if c.path.endswith("/events")] != []


async def test_a_token_without_the_maintainer_role_breaks_nothing(
    store: Store, api: GitlabApi, gitlab: DeliveringGitlab, hook: InstalledHook
) -> None:
    gitlab.fail_next("GET", r"/hooks/\d+/events", status=403, message="403 Forbidden")

    run = await redelivery(store, api).run()

    assert run.error is not None and "HTTP 403" in run.error
    assert run.requested == 0


# -- doctor ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Run:
    """What redelivery_check uses of a doctor run."""

    def __init__(self, store: Store) -> None:
        self.store = store


async def check(store: Store, api: GitlabApi) -> CheckResult:
    return await redelivery_check(Run(store), api)  # type: ignore[arg-type]


async def test_doctor_says_when_redelivery_works(
    store: Store, api: GitlabApi, hook: InstalledHook
) -> None:
    result = await check(store, api)
    assert (result.status, result.detail) == (
        "ok",
        f"GitLab 17.4.0-ee; the hooks of {PROJECT} can be read",
    )


async def test_doctor_says_when_gitlab_is_older_than_17_4(
    store: Store, api: GitlabApi, gitlab: DeliveringGitlab, hook: InstalledHook
) -> None:
    gitlab.version = "17.3.2"
    result = await check(store, api)
    assert result.status == "warn"
    assert "GitLab 17.3.2 cannot resend hook events (17.4 and later can)" in result.detail


async def test_doctor_says_when_the_token_lacks_the_role(
    store: Store, api: GitlabApi, gitlab: DeliveringGitlab, hook: InstalledHook
) -> None:
    gitlab.fail_next("GET", r"/hooks/\d+/events", status=403)
    result = await check(store, api)
    assert result.status == "warn"
    assert result.fix == f"give the token's user the Maintainer role in {PROJECT}"


async def test_doctor_skips_without_a_recorded_hook(store: Store, api: GitlabApi) -> None:
    result = await check(store, api)
    assert result.status == "skip" and "no project hook recorded" in result.detail


# -- the commands ---------------------------------------------------------------------


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


def test_install_webhook_records_the_hook_and_redeliver_resends_for_it(
    tmp_path: Path, gitlab: DeliveringGitlab, relay: RecordingReceiver
) -> None:
    settings = {
        "GITLAB_URL": gitlab.url,
        "GITLAB_TOKEN": BOT_TOKEN,
        "GITLAB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PUBLIC_URL": relay.url,
    }
    assert run_cli(tmp_path, "migrate").returncode == 0
    installed = run_cli(tmp_path, "gitlab", "install-webhook", "--project", PROJECT, **settings)
    assert installed.returncode == 0, installed.stderr
    [hook] = gitlab.hooks(PROJECT_ID)
    relay.fail_next(503)
    [failed] = mentions(gitlab, 1)

    redelivered = run_cli(tmp_path, "gitlab", "redeliver", "--project", PROJECT, **settings)

    assert redelivered.returncode == 0, redelivered.stderr
    assert "gitlab: 1 deliveries read, 1 failed: 1 redelivered" in redelivered.stdout
    assert f"redelivery requested: {key_of(failed)}" in redelivered.stdout
    assert [e["response_status"] for e in gitlab.hook_events(hook["id"])] == ["503", "200"]


async def test_install_webhook_s_record_is_what_redelivery_reads(store: Store) -> None:
    await remember_hook(store, InstalledHook(7, PROJECT, 11, "https://relay.test/gitlab/events"))
    await remember_hook(store, InstalledHook(7, PROJECT, 11, "https://relay.test/gitlab/events"))
    assert await installed_hooks(store) == [
        InstalledHook(7, PROJECT, 11, "https://relay.test/gitlab/events")
    ]


async def _just(log: GitlabHookLog) -> list[GitlabHookLog]:
    return [log]
