"""`agent-relay gitlab install-webhook`: creates the project hook, mends it, and is idempotent."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from bots.gitlab.api import GitlabApi
from bots.gitlab.setup import HookChange, hook_events, install_webhook
from relay.settings import Settings
from tests.support.fake_gitlab import BOT_TOKEN, WEBHOOK_SECRET, FakeGitlab

CLI = Path(sys.executable).parent / "agent-relay"
PROJECT_ID = 7
PUBLIC_URL = "https://relay.example.test/"
HOOK_URL = "https://relay.example.test/gitlab/events"


@pytest.fixture
def gitlab() -> Iterator[FakeGitlab]:
    with FakeGitlab() as fake:
        fake.add_project(PROJECT_ID, "acme/widgets")
        yield fake


@pytest.fixture
async def api(gitlab: FakeGitlab) -> AsyncIterator[GitlabApi]:
    async with httpx.AsyncClient(timeout=5) as http:
        yield GitlabApi(http, gitlab.url, BOT_TOKEN)


def test_the_hook_asks_for_notes_issues_and_merge_requests_only() -> None:
    events = hook_events()
    enabled = {name for name, on in events.items() if on}
    assert enabled == {
        "note_events",
        "confidential_note_events",
        "issues_events",
        "confidential_issues_events",
        "merge_requests_events",
    }
    assert events["push_events"] is False


async def test_a_missing_hook_is_created_and_a_second_run_changes_nothing(
    gitlab: FakeGitlab, api: GitlabApi
) -> None:
    created = await install_webhook(
        api, "acme/widgets", public_url=PUBLIC_URL, secret=WEBHOOK_SECRET
    )
    again = await install_webhook(api, "acme/widgets", public_url=PUBLIC_URL, secret=WEBHOOK_SECRET)

    assert created.change is HookChange.CREATED
    assert again.change is HookChange.UNCHANGED
    assert again.hook_id == created.hook_id and again.url == HOOK_URL
    [hook] = gitlab.hooks(PROJECT_ID)
    assert hook["url"] == HOOK_URL
    assert {name: hook[name] for name in hook_events()} == hook_events()
    assert gitlab.hook_token(hook["id"]) == WEBHOOK_SECRET
    assert gitlab.calls("PUT") == []
    assert len(gitlab.calls("POST")) == 1


async def test_a_hook_with_other_events_is_updated_in_place(
    gitlab: FakeGitlab, api: GitlabApi
) -> None:
    other = await api.add_project_hook(PROJECT_ID, {"url": "https://ci.example.test/hook"})
    ours = await api.add_project_hook(
        PROJECT_ID, {"url": HOOK_URL, "note_events": True, "token": "old-secret"}
    )

    outcome = await install_webhook(api, "7", public_url=PUBLIC_URL, secret=WEBHOOK_SECRET)

    assert outcome.change is HookChange.UPDATED and outcome.hook_id == ours["id"]
    hooks = {hook["id"]: hook for hook in gitlab.hooks(PROJECT_ID)}
    assert len(hooks) == 2
    assert hooks[ours["id"]]["merge_requests_events"] is True
    assert hooks[ours["id"]]["push_events"] is False
    assert gitlab.hook_token(ours["id"]) == WEBHOOK_SECRET
    assert hooks[other["id"]]["push_events"] is True  # someone else's hook: untouched


async def test_the_secret_is_sent_again_only_when_asked(gitlab: FakeGitlab, api: GitlabApi) -> None:
    await install_webhook(api, "acme/widgets", public_url=PUBLIC_URL, secret="first-secret")

    kept = await install_webhook(api, "acme/widgets", public_url=PUBLIC_URL, secret="new-secret")
    resent = await install_webhook(
        api, "acme/widgets", public_url=PUBLIC_URL, secret="new-secret", resend_secret=True
    )

    assert kept.change is HookChange.UNCHANGED
    assert resent.change is HookChange.UPDATED
    assert gitlab.hook_token(resent.hook_id) == "new-secret"


def run_cli(
    tmp_path: Path, gitlab: FakeGitlab, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    return subprocess.run(
        [str(CLI), "gitlab", "install-webhook", *args],
        cwd=tmp_path,
        env={
            **inherited,
            "GITLAB_URL": gitlab.url,
            "GITLAB_TOKEN": BOT_TOKEN,
            "GITLAB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PUBLIC_URL": PUBLIC_URL,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_installs_once_and_then_says_nothing_changed(
    tmp_path: Path, gitlab: FakeGitlab
) -> None:
    first = run_cli(tmp_path, gitlab, "--project", "acme/widgets")
    second = run_cli(tmp_path, gitlab, "--project", "acme/widgets")

    assert first.returncode == 0, first.stderr
    [hook] = gitlab.hooks(PROJECT_ID)
    assert first.stdout == f"acme/widgets: hook {hook['id']} to {HOOK_URL} created\n"
    assert second.returncode == 0, second.stderr
    assert second.stdout == f"acme/widgets: hook {hook['id']} to {HOOK_URL} is set up; unchanged\n"
    for output in (first, second):
        assert BOT_TOKEN not in output.stdout + output.stderr
        assert WEBHOOK_SECRET not in output.stdout + output.stderr


def test_the_command_says_what_is_missing_or_what_gitlab_refused(
    tmp_path: Path, gitlab: FakeGitlab
) -> None:
    missing = run_cli(tmp_path, gitlab, "--project", "acme/widgets", GITLAB_WEBHOOK_SECRET="")
    unknown = run_cli(tmp_path, gitlab, "--project", "acme/nothing")

    assert missing.returncode == 2
    assert "GITLAB_WEBHOOK_SECRET" in missing.stderr
    assert unknown.returncode == 1
    assert unknown.stderr == (
        "could not install the webhook: gitlab GET /projects/acme%2Fnothing/hooks:"
        " HTTP 404 404 Project Not Found\n"
    )
