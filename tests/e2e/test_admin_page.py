"""End to end: an operator logs in to /admin on a phone-sized screen, sees a job that
really failed, and retries it.

`agent-relay serve` runs as a process on SQLite; its agent-server is the fake REST API
over loopback (no LLM is needed: the agent fails), and a webhook receiver refuses the
first delivery with 404, so the reply job fails for good, as in production. Debian's
headless Chromium, 390 px wide, logs in through the form, sees the counts and the
failed job, and clicks Retry; the receiver now accepts, and the job is done, on the
page and in `agent-relay jobs list`. Slack is the fake Web API on loopback, where the
relay's bot token has been revoked: the page says the credentials are not valid, and
how to fix them.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from tests.support.agent_server import free_port
from tests.support.browser import launch_chromium, needs_chromium
from tests.support.fake_agent_api import AGENT_API_KEY, FakeAgentServer, LoopbackAgentServer
from tests.support.fake_slack import FakeSlack
from tests.support.receiver import RecordingReceiver
from tests.support.relay_process import API_TOKEN, CONVERSATION_URL, RELAY_BIN, RelayProcess
from tests.support.waiting import wait_until

HOOK_PATH = "/hooks/agent-relay"
HOOK_SECRET = "e2e-admin-hook-secret"
PHONE = {"width": 390, "height": 844}
SLACK_TOKEN = "xoxb-e2e-admin-revoked-bot-token"
SLACK_SIGNING_SECRET = "e2e-admin-slack-signing-secret"

pytestmark = needs_chromium


@pytest.fixture
def agent_api() -> Iterator[LoopbackAgentServer]:
    with LoopbackAgentServer(FakeAgentServer()) as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[RecordingReceiver]:
    with RecordingReceiver() as server:
        yield server


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A workspace whose bot token was revoked: auth.test answers invalid_auth."""
    with FakeSlack() as server:
        server.add_team("T0E2E", bot_token=SLACK_TOKEN, bot_user_id="U0BOT", bot_id="B0BOT")
        server.revoke_token(SLACK_TOKEN)
        yield server


@pytest.fixture
def relay(
    tmp_path: Path, agent_api: LoopbackAgentServer, receiver: RecordingReceiver, slack: FakeSlack
) -> Iterator[RelayProcess]:
    port = free_port()
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("AGENT_", "API_TOKEN", "SLACK_", "GITHUB_", "GITLAB_", "SECRET_", "PUBLIC_URL")
        )
    }
    env = {
        **inherited,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "API_TOKEN": API_TOKEN,
        "AGENT_SERVER_URL": agent_api.url,
        "AGENT_SERVER_API_KEY": AGENT_API_KEY,
        "AGENT_CONVERSATION_URL": CONVERSATION_URL,
        "SLACK_API_URL": slack.api_url,
        "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "SLACK_BOT_TOKEN": SLACK_TOKEN,
        "LOG_LEVEL": "DEBUG",
        # The webhook receiver is on loopback.
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    }
    process = RelayProcess(tmp_path, env).start()
    try:
        yield process
    finally:
        process.stop()


def jobs_list(relay: RelayProcess, status: str | None = None) -> list[list[str]]:
    """`agent-relay jobs list` as the operator runs it, one split line per job."""
    args = [str(RELAY_BIN), "jobs", "list", *(["--status", status] if status else [])]
    done = subprocess.run(
        args, cwd=relay.workdir, env=relay.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [line.split() for line in done.stdout.splitlines() if line.strip()]


def a_reply_that_fails_for_good(
    relay: RelayProcess, agent_api: LoopbackAgentServer, receiver: RecordingReceiver
) -> int:
    """Start a conversation with a webhook callback, let the agent fail, and the receiver
    refuse the reply with 404; returns the failed reply job's id."""
    receiver.fail_next(404, times=1, path_prefix=HOOK_PATH)
    with relay.api() as api:
        started = api.post(
            "/api/conversations",
            json={
                "prompt": "Why does the nightly build fail?",
                "callback": {
                    "kind": "webhook",
                    "url": f"{receiver.url}{HOOK_PATH}",
                    "secret": HOOK_SECRET,
                },
            },
        )
    assert started.status_code == 201, started.text
    conversation_id = started.json()["conversation_id"]
    wait_until(
        lambda: uuid.UUID(conversation_id).hex in agent_api.fake.conversations,
        timeout=30,
        message=relay.log_tail,
    )
    stop = agent_api.fake.status_change(conversation_id, "error")
    delivered = httpx.post(
        f"{relay.url}/agent/events/{conversation_id}",
        json=[stop],
        headers={"X-Session-API-Key": AGENT_API_KEY},
        timeout=10,
    )
    assert delivered.status_code < 300, delivered.text
    [failed] = wait_until(lambda: jobs_list(relay, "failed"), timeout=30, message=relay.log_tail)
    assert failed[2] == "callback.reply"
    assert receiver.requests_to(HOOK_PATH)[0].status == 404
    return int(failed[0])


def fits_the_screen(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_an_operator_retries_a_failed_job_from_a_phone(
    relay: RelayProcess, agent_api: LoopbackAgentServer, receiver: RecordingReceiver
) -> None:
    job_id = a_reply_that_fails_for_good(relay, agent_api, receiver)

    with sync_playwright() as driver:
        browser = launch_chromium(driver)
        try:
            page = browser.new_page(viewport=PHONE)
            page.goto(f"{relay.url}/admin")
            assert page.url == f"{relay.url}/admin/login"
            assert fits_the_screen(page)

            page.locator("#token").fill("not-the-token")
            page.locator("#login").click()
            page.locator("#login-error").wait_for()
            page.locator("#token").fill(API_TOKEN)
            page.locator("#login").click()
            page.locator("#jobs-failed").wait_for()
            assert page.url == f"{relay.url}/admin"

            assert page.locator("#jobs-failed").inner_text() == "1"
            assert page.locator("#callbacks-error").inner_text() == "1"
            row = page.locator(f"#failed-job-{job_id}")
            assert "callback.reply" in row.inner_text()
            assert "answered 404" in row.inner_text()
            assert page.locator("#health-agent td.state").inner_text().strip() == "ok"
            slack_health = page.locator("#health-slack").inner_text()
            assert "not valid" in slack_health
            assert "token refused: slack auth.test: invalid_auth" in slack_health
            assert "Fix: set SLACK_BOT_TOKEN" in slack_health
            assert fits_the_screen(page)
            html = page.content()
            secrets = (API_TOKEN, HOOK_SECRET, AGENT_API_KEY, SLACK_TOKEN, SLACK_SIGNING_SECRET)
            for secret in secrets:
                assert secret not in html

            page.locator(f"#retry-{job_id}").click()
            page.locator("#flash").wait_for()
            assert f"Job {job_id} is queued again." in page.locator("#flash").inner_text()

            def done_in_the_cli() -> bool:
                return any(
                    line[0] == str(job_id) and line[1] == "done" for line in jobs_list(relay)
                )

            wait_until(done_in_the_cli, timeout=30, message=relay.log_tail)
            page.reload()
            page.locator("#no-failed-jobs").wait_for()
            assert page.locator("#jobs-failed").inner_text() == "0"
            assert fits_the_screen(page)
        finally:
            browser.close()

    replies = receiver.requests_to(HOOK_PATH)
    assert [r.status for r in replies] == [404, 200]
    # A retried job delivers the same reply: the receiver can drop duplicates.
    assert replies[0].headers["x-relay-delivery"] == replies[1].headers["x-relay-delivery"]
