"""End to end: a GitHub App created through /github/setup answers mentions at once.

`agent-relay serve` starts with SECRET_KEY and PUBLIC_URL and no GitHub settings.
Headless Chromium (Debian's) opens the setup page and clicks the button; the fake
GitHub creates the app from the posted manifest and sends the browser back to the
callback, which stores the credentials. Without a restart, a mention signed with
the new app's webhook secret is verified, and answered with the new app's tokens.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import sync_playwright

from tests.support import github_webhooks as hooks
from tests.support.agent_server import AgentServerProcess
from tests.support.browser import launch_chromium, needs_chromium
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import FakeLLM, finish
from tests.support.relay_process import (
    API_TOKEN,
    RelayProcess,
    database_for,
    relay_environment,
)
from tests.support.waiting import wait_until

SUMMARY = "The setup works end to end."
REPO = "acme/web"
INSTALLATION = 5150

pytestmark = [
    pytest.mark.agent_server,
    needs_chromium,
]


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM(
        [("Please write the reply to the person", finish(SUMMARY))], default=finish("Done.")
    ) as llm:
        yield llm


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture
def relay(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    relay_port: int,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    github: FakeGitHub,
) -> Iterator[RelayProcess]:
    workdir = tmp_path_factory.mktemp("relay-github-setup")
    env = relay_environment(
        workdir=workdir,
        database_url=database_for(request, "sqlite", workdir),
        port=relay_port,
        agent_server=agent_server,
        fake_llm=fake_llm,
        extra={
            "SECRET_KEY": "e2e-github-setup-secret-key",
            "PUBLIC_URL": f"http://127.0.0.1:{relay_port}",
            "GITHUB_API_URL": github.api_url,
            "GITHUB_URL": github.web_url,
        },
    )
    relay = RelayProcess(workdir, env).start()
    try:
        yield relay
    finally:
        relay.stop()


def create_app_in_the_browser(relay: RelayProcess) -> str:
    """Click through the setup page; returns the slug the page then shows."""
    with sync_playwright() as driver:
        browser = launch_chromium(driver)
        try:
            page = browser.new_page()
            page.goto(f"{relay.url}/github/setup")
            # API_TOKEN is set: the setup page asks for the operator's login first,
            # and comes back to itself after it.
            assert page.url.startswith(f"{relay.url}/admin/login?next=")
            page.locator("#token").fill(API_TOKEN)
            page.locator("#login").click()
            page.locator("#create-personal").wait_for()
            assert page.url == f"{relay.url}/github/setup"
            page.locator("#create-personal").click()
            page.locator("#app-slug").wait_for()
            return page.locator("#app-slug").inner_text()
        finally:
            browser.close()


def test_the_app_made_on_the_setup_page_answers_without_a_restart(
    relay: RelayProcess, github: FakeGitHub
) -> None:
    before = hooks.deliver(relay.url, "ping", hooks.example("ping"), "anything")
    assert before.status_code == 503  # no app yet: nothing can be verified

    slug = create_app_in_the_browser(relay)

    app = github.app_by_slug(slug)
    github.add_installation(INSTALLATION, app.app_id, account="acme", repositories=[REPO])
    github.set_permission(REPO, "ada", "admin")
    # With PUBLIC_URL set the app's conversations get a checkout: a real repository.
    github.create_repository(REPO, {"docs/index.md": "[docs](https://old.example.test)\n"})
    github.add_issue(REPO, 1, title="Broken link", body="The docs link 404s.", user="ada")
    comment = github.add_comment(REPO, 1, "@openhands fix the link", user="ada")
    payload = hooks.issue_comment(REPO, INSTALLATION, comment, sender="ada")
    wrong = hooks.deliver(relay.url, "issue_comment", payload, "not-the-app-secret")
    assert wrong.status_code == 401
    response = hooks.deliver(
        relay.url, "issue_comment", payload, app.webhook_secret, delivery_id=str(uuid.uuid4())
    )
    assert response.status_code == 202, response.text

    def answers() -> list[str]:
        return [
            c["body"]
            for c in github.comments(REPO, 1)
            if c["user"]["login"] == app.bot_login and SUMMARY in c["body"]
        ]

    wait_until(lambda: answers() and relay.idle(), timeout=90, message=relay.log_tail)
    assert len(answers()) == 1
    # The relay's own installation token, minted once; the agent's, for REPO alone.
    grants = [g for g in github.token_grants() if g.installation_id == INSTALLATION]
    assert len([g for g in grants if g.repositories is None]) == 1
    assert {tuple(g.repositories) for g in grants if g.repositories is not None} == {(REPO,)}
    [callback] = relay.callbacks(processor_type="github")
    assert callback["status"] == "COMPLETED"
    log = relay.log_path.read_text()
    assert app.webhook_secret not in log and app.client_secret not in log
    assert "PRIVATE KEY" not in log
