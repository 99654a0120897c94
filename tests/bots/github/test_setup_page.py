"""The setup page in Debian's headless Chromium, against a fake GitHub over loopback.

uvicorn serves github_setup_routes on a real SQLite database; GITHUB_URL and
GITHUB_API_URL point at tests.support.fake_github. The browser clicks the button,
GitHub's (fake) new-app page receives the form and sends the browser back to the
callback, and the page then shows the app: the whole manifest flow, as a person
goes through it. Playwright only drives /usr/bin/chromium; it never downloads one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from starlette.applications import Starlette

from bots.github.credentials import APP_PLATFORM, GithubAppSource
from bots.github.setup import github_setup_routes
from db.migrations import migrate
from db.secrets import SecretBox
from db.store import Store
from tests.support.browser import launch_chromium, needs_chromium
from tests.support.fake_github import FakeGitHub
from tests.support.waiting import wait_until

SECRET_KEY = "a-browser-test-secret-key-long-enough"

pytestmark = needs_chromium


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RelayServer:
    url: str
    database_url: str
    github: FakeGitHub


@contextlib.contextmanager
def setup_server(tmp_path: Path, github: FakeGitHub) -> Iterator[RelayServer]:
    """uvicorn, in a thread, serving only the setup routes on a fresh SQLite file."""
    port = _free_port()
    public_url = f"http://127.0.0.1:{port}"
    database_url = f"sqlite:///{tmp_path / 'relay.db'}"
    store = Store(database_url)
    box = SecretBox(SECRET_KEY)
    http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with store:
            await migrate(store)
            try:
                yield
            finally:
                await http.aclose()

    app = Starlette(
        routes=github_setup_routes(
            source=GithubAppSource(store, box, None),
            store=store,
            http=http,
            github_url=github.web_url,
            api_url=github.api_url,
            public_url=public_url,
            secret_key_set=True,
        ),
        lifespan=lifespan,
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="setup-page-uvicorn", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, message="uvicorn did not start")
        yield RelayServer(public_url, database_url, github)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def stored_app(database_url: str) -> tuple[Any, str]:
    """The app as a separate process would load it, and the raw encrypted column."""

    async def read() -> tuple[Any, str]:
        async with Store(database_url) as store:
            app = await GithubAppSource(store, SecretBox(SECRET_KEY), None).current()
            row = await store.fetch_one(
                "SELECT credentials FROM installations WHERE platform = :platform",
                {"platform": APP_PLATFORM},
            )
            return app, "" if row is None else str(row["credentials"])

    # Playwright's sync API keeps an event loop running in this thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, read()).result()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = launch_chromium(playwright)
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # A phone-sized window: the page must work there too.
    context = browser.new_context(viewport={"width": 390, "height": 844})
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayServer]:
    with FakeGitHub() as github, setup_server(tmp_path, github) as server:
        yield server


def test_the_button_creates_the_app_on_github_and_the_page_then_shows_it(
    page: Page, relay: RelayServer
) -> None:
    page.goto(f"{relay.url}/github/setup")
    button = page.locator("#create-personal")
    button.wait_for()
    box = button.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    with page.expect_request(
        lambda r: r.method == "POST" and "/settings/apps/new" in r.url
    ) as sent:
        button.click()
    form = sent.value.post_data
    assert form is not None and form.startswith("manifest=")

    # Back from GitHub: the page now shows the new app and how to install it.
    page.locator("#app-slug").wait_for()
    assert page.url == f"{relay.url}/github/setup"
    slug = page.locator("#app-slug").inner_text()
    [posted] = relay.github.manifest_posts
    assert posted.org is None
    manifest = relay.github.received_manifests[0]
    assert manifest["hook_attributes"]["url"] == f"{relay.url}/github/events"
    assert manifest["redirect_url"] == f"{relay.url}/github/setup/callback"
    assert manifest["setup_url"] == f"{relay.url}/github/setup"
    assert manifest["default_permissions"] == {
        "issues": "write",
        "pull_requests": "write",
        "contents": "write",
        "metadata": "read",
    }
    install = page.locator("#install-link")
    assert install.get_attribute("href") == (
        f"{relay.github.web_url}/apps/{slug}/installations/new"
    )
    assert page.locator("form").count() == 0

    app, sealed = stored_app(relay.database_url)
    assert app is not None and app.slug == slug and app.source == "manifest"
    assert app.private_key.startswith("-----BEGIN")
    assert app.private_key not in sealed and app.webhook_secret not in sealed
    content = page.content()
    assert app.private_key.strip().splitlines()[1] not in content
    assert app.webhook_secret not in content
    # The state cookie was spent and dropped.
    assert [c for c in page.context.cookies() if c["name"].endswith("github_state")] == []


def test_an_organisation_is_chosen_without_script_and_gets_the_app(
    page: Page, relay: RelayServer
) -> None:
    page.goto(f"{relay.url}/github/setup")
    page.fill("#organization", "acme-corp")
    page.click("#choose-organization")
    button = page.locator("#create-organization")
    button.wait_for()
    assert "acme-corp" in button.inner_text()

    button.click()
    page.locator("#app-slug").wait_for()
    assert page.url == f"{relay.url}/github/setup"
    [posted] = relay.github.manifest_posts
    assert posted.org == "acme-corp"
    assert posted.manifest["redirect_url"] == f"{relay.url}/github/setup/callback"
    app, _ = stored_app(relay.database_url)
    assert app is not None


def test_a_callback_from_another_browser_is_refused(
    browser: Browser, page: Page, relay: RelayServer
) -> None:
    # The first browser starts the flow; its state reaches a second browser (no cookie).
    page.goto(f"{relay.url}/github/setup")
    action = page.locator("#personal-form").get_attribute("action")
    assert action is not None
    state = action.split("state=", 1)[1]
    other = browser.new_context()
    try:
        stranger = other.new_page()
        response = stranger.goto(f"{relay.url}/github/setup/callback?code=0123abcd&state={state}")
        assert response is not None and response.status == 400
        assert "not started from this browser" in stranger.locator("#problem").inner_text()
    finally:
        other.close()
    app, _ = stored_app(relay.database_url)
    assert app is None
