"""GET /github/setup and its callback, on a real database, with GitHub's API faked.

The relay's routes run under httpx's ASGI transport; their outbound HTTP client talks
to an in-process stand-in for `POST /app-manifests/{code}/conversions`.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from bots.github import PLATFORM
from bots.github.credentials import APP_PLATFORM, AppCredentials, GithubAppSource
from bots.github.setup import STATE_COOKIE, github_setup_routes
from db.oauth_states import issue_state
from db.secrets import SecretBox
from db.store import Store

PUBLIC_URL = "https://relay.example.com"
GITHUB_URL = "https://github.example.com"
# An Enterprise-style API root with a path: the conversion must land under it.
API_URL = "https://github.example.com/api/v3"
SECRET_KEY = "a-test-secret-key-that-is-long-enough"

KEY_BODY = "MIIEfakeKEYmaterial0123456789"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{KEY_BODY}\n-----END RSA PRIVATE KEY-----\n"
WEBHOOK_SECRET = "whsec-0123456789abcdef"
CLIENT_SECRET = "client-secret-fedcba9876543210"
SECRETS = (PEM, KEY_BODY, WEBHOOK_SECRET, CLIENT_SECRET)


def conversion(slug: str = "openhands-relay-acme", app_id: int = 4242) -> dict[str, Any]:
    return {
        "id": app_id,
        "slug": slug,
        "name": "OpenHands relay (acme)",
        "node_id": "A_kwDOfake",
        "owner": {"login": "acme", "type": "Organization"},
        "html_url": f"{GITHUB_URL}/apps/{slug}",
        "client_id": "Iv1.0123456789abcdef",
        "client_secret": CLIENT_SECRET,
        "webhook_secret": WEBHOOK_SECRET,
        "pem": PEM,
        "permissions": {"issues": "write"},
        "events": ["issue_comment"],
    }


@dataclass
class FakeConversions:
    """`POST /app-manifests/{code}/conversions`: each code answers as set in `answers`."""

    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    unreachable: bool = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.unreachable:
            raise httpx.ConnectError("connection refused", request=request)
        prefix = urlsplit(API_URL).path + "/app-manifests/"
        path = request.url.path
        if request.method != "POST" or not path.startswith(prefix):
            return httpx.Response(404, json={"message": "Not Found"})
        code = path.removeprefix(prefix).removesuffix("/conversions")
        status, body = self.answers.get(code, (404, {"message": "Not Found"}))
        return httpx.Response(status, json=body)


@dataclass
class Harness:
    client: httpx.AsyncClient
    github: FakeConversions
    source: GithubAppSource
    store: Store


@asynccontextmanager
async def harness(
    store: Store,
    *,
    public_url: str | None = PUBLIC_URL,
    box: SecretBox | None = None,
    configured: AppCredentials | None = None,
    answers: dict[str, tuple[int, Any]] | None = None,
) -> AsyncIterator[Harness]:
    box = box if box is not None else SecretBox(SECRET_KEY)
    source = GithubAppSource(store, box, configured)
    github = FakeConversions(answers or {"good-code": (201, conversion())})
    async with httpx.AsyncClient(transport=httpx.MockTransport(github.handle)) as http:
        app = Starlette(
            routes=github_setup_routes(
                source=source,
                store=store,
                http=http,
                github_url=GITHUB_URL,
                api_url=API_URL,
                public_url=public_url,
                secret_key_set=box.available,
            )
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL
        ) as client:
            yield Harness(client, github, source, store)


@pytest.fixture
async def relay(store: Store) -> AsyncIterator[Harness]:
    async with harness(store) as h:
        yield h


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({**values, "inputs": {}})
        elif tag == "input" and self.forms and "name" in values:
            self.forms[-1]["inputs"][values["name"]] = values.get("value", "")


def forms_of(page: str) -> dict[str, dict[str, Any]]:
    parser = _Forms()
    parser.feed(page)
    return {form.get("id", ""): form for form in parser.forms}


def state_of(action: str) -> str:
    return parse_qs(urlsplit(action).query)["state"][0]


async def open_setup(relay: Harness, query: str = "") -> tuple[str, dict[str, dict[str, Any]]]:
    """Open the setup page; the state its button carries, and its forms."""
    page = await relay.client.get("/github/setup" + query)
    assert page.status_code == 200, page.text
    forms = forms_of(page.text)
    return state_of(forms["personal-form"]["action"]), forms


async def stored_rows(store: Store) -> list[dict[str, Any]]:
    rows = await store.fetch_all(
        "SELECT details, credentials FROM installations WHERE platform = :platform",
        {"platform": APP_PLATFORM},
    )
    return [dict(row) for row in rows]


async def callback(relay: Harness, code: str, state: str) -> httpx.Response:
    return await relay.client.get("/github/setup/callback", params={"code": code, "state": state})


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert "BEGIN RSA" not in text


# --- the page before an app exists ---------------------------------------------------------


async def test_the_button_posts_the_manifest_with_a_fresh_state_to_github(
    relay: Harness,
) -> None:
    page = await relay.client.get("/github/setup")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and GITHUB_URL in policy
    assert '<meta name="viewport"' in page.text
    assert "<script" not in page.text

    form = forms_of(page.text)["personal-form"]
    assert form["method"] == "post"
    action = urlsplit(form["action"])
    assert f"{action.scheme}://{action.netloc}{action.path}" == f"{GITHUB_URL}/settings/apps/new"
    state = state_of(form["action"])
    manifest = json.loads(form["inputs"]["manifest"])
    assert manifest["hook_attributes"]["url"] == f"{PUBLIC_URL}/github/events"
    assert manifest["redirect_url"] == f"{PUBLIC_URL}/github/setup/callback"
    assert manifest["default_permissions"]["issues"] == "write"
    # The agent pushes its work with the installation's tokens.
    assert manifest["default_permissions"]["contents"] == "write"

    row = await relay.store.fetch_one(
        "SELECT platform FROM oauth_states WHERE state = :state", {"state": state}
    )
    assert row is not None and row["platform"] == PLATFORM

    cookie = page.headers["set-cookie"]
    assert cookie.startswith(f"{STATE_COOKIE}={state};")
    lowered = cookie.lower()
    for attribute in ("httponly", "samesite=lax", "path=/github/setup", "secure", "max-age=3600"):
        assert attribute in lowered
    assert "other-host" not in page.text


async def test_each_visit_issues_its_own_state(relay: Harness) -> None:
    first, _ = await open_setup(relay)
    second, _ = await open_setup(relay)
    assert first != second


async def test_an_organisation_gets_a_form_for_its_own_new_app_page(relay: Harness) -> None:
    _, forms = await open_setup(relay)
    choice = forms["organization-choice"]
    assert choice["method"] == "get" and "organization" in choice["inputs"]
    assert "organization-form" not in forms

    state, forms = await open_setup(relay, "?organization=acme-corp")
    form = forms["organization-form"]
    assert form["action"].startswith(f"{GITHUB_URL}/organizations/acme-corp/settings/apps/new?")
    assert state_of(form["action"]) == state
    assert json.loads(form["inputs"]["manifest"])["setup_url"] == f"{PUBLIC_URL}/github/setup"


async def test_a_bad_organisation_name_is_refused_and_shown_escaped(relay: Harness) -> None:
    page = await relay.client.get(
        "/github/setup", params={"organization": '"><script>alert(1)</script>'}
    )
    assert page.status_code == 200
    assert "<script>" not in page.text
    assert "&lt;script&gt;" in page.text
    forms = forms_of(page.text)
    assert "organization-form" not in forms
    assert "organization-choice" in forms


async def test_another_host_than_public_url_is_told_where_to_open_the_page(store: Store) -> None:
    async with harness(store, public_url="https://tunnel.example.net/") as relay:
        page = await relay.client.get("/github/setup")
        assert 'id="other-host"' in page.text
        assert "https://tunnel.example.net/github/setup" in page.text
        manifest = json.loads(forms_of(page.text)["personal-form"]["inputs"]["manifest"])
        assert manifest["redirect_url"] == "https://tunnel.example.net/github/setup/callback"


async def test_without_public_url_the_page_says_so_and_offers_no_button(store: Store) -> None:
    async with harness(store, public_url=None) as relay:
        page = await relay.client.get("/github/setup")
        assert page.status_code == 200
        assert "PUBLIC_URL" in page.text and 'id="needs-public-url"' in page.text
        assert forms_of(page.text) == {}
        assert "set-cookie" not in page.headers
        assert await store.fetch_all("SELECT state FROM oauth_states") == []


async def test_without_secret_key_the_page_says_so_and_the_callback_stores_nothing(
    store: Store,
) -> None:
    async with harness(store, box=SecretBox(None)) as relay:
        page = await relay.client.get("/github/setup")
        assert page.status_code == 200
        assert "SECRET_KEY" in page.text and 'id="needs-secret-key"' in page.text
        assert forms_of(page.text) == {}

        state = await issue_state(store, PLATFORM)
        relay.client.cookies.set(STATE_COOKIE, state, domain="relay.example.com")
        refused = await callback(relay, "good-code", state)
        assert refused.status_code == 400
        assert "SECRET_KEY" in refused.text
        assert relay.github.requests == []
        assert await stored_rows(store) == []


# --- the callback ----------------------------------------------------------------------------


async def test_the_callback_stores_the_app_encrypted_and_the_page_then_shows_it(
    relay: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    state, _ = await open_setup(relay)

    done = await callback(relay, "good-code", state)

    assert done.status_code == 303
    assert done.headers["location"] == f"{PUBLIC_URL}/github/setup"
    assert f'{STATE_COOKIE}=""' in done.headers["set-cookie"]
    assert_no_secret(done.text)

    [request] = relay.github.requests
    assert request.method == "POST"
    assert str(request.url) == f"{API_URL}/app-manifests/good-code/conversions"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.content == b""

    # Encrypted at rest: the raw row holds none of the secrets.
    [row] = await stored_rows(relay.store)
    assert_no_secret(row["credentials"])
    assert "Iv1.0123456789abcdef" not in row["credentials"]
    details = json.loads(row["details"])
    assert details["slug"] == "openhands-relay-acme"
    assert details["app_id"] == "4242"
    assert_no_secret(row["details"])

    # In use at once, here and for any other process reading the same database.
    current = await relay.source.current()
    assert current is not None and current.private_key == PEM
    elsewhere = GithubAppSource(relay.store, SecretBox(SECRET_KEY), None)
    fresh = await elsewhere.current()
    assert fresh is not None
    assert (fresh.app_id, fresh.slug, fresh.webhook_secret, fresh.client_secret) == (
        "4242",
        "openhands-relay-acme",
        WEBHOOK_SECRET,
        CLIENT_SECRET,
    )

    page = await relay.client.get("/github/setup")
    assert page.status_code == 200
    assert 'id="app-slug">openhands-relay-acme<' in page.text
    assert 'id="app-id">4242<' in page.text
    assert "from this setup page" in page.text
    assert f'href="{GITHUB_URL}/apps/openhands-relay-acme/installations/new"' in page.text
    assert forms_of(page.text) == {}, "no second app is offered"
    assert "manifest" not in page.text
    assert "set-cookie" not in page.headers
    assert_no_secret(page.text)
    assert_no_secret(caplog.text)


async def test_after_install_github_sends_people_back_to_a_page_that_says_so(
    relay: Harness,
) -> None:
    state, _ = await open_setup(relay)
    assert (await callback(relay, "good-code", state)).status_code == 303
    page = await relay.client.get(
        "/github/setup", params={"installation_id": "99", "setup_action": "install"}
    )
    assert 'id="installed"' in page.text


async def test_a_second_app_is_refused(relay: Harness) -> None:
    state, _ = await open_setup(relay)
    assert (await callback(relay, "good-code", state)).status_code == 303

    # A state issued before the first app finished, used afterwards.
    late_state = await issue_state(relay.store, PLATFORM)
    relay.client.cookies.set(STATE_COOKIE, late_state, domain="relay.example.com")
    relay.github.answers["other-code"] = (201, conversion("second-app", 777))
    refused = await callback(relay, "other-code", late_state)

    assert refused.status_code == 409
    assert "already set up" in refused.text
    assert len(relay.github.requests) == 1, "the second code was never exchanged"
    [row] = await stored_rows(relay.store)
    assert json.loads(row["details"])["slug"] == "openhands-relay-acme"


async def test_a_state_works_once(relay: Harness) -> None:
    relay.github.answers["gone-code"] = (404, {"message": "Not Found"})
    state, _ = await open_setup(relay)
    relay_cookie = relay.client.cookies.get(STATE_COOKIE)

    first = await callback(relay, "gone-code", state)
    assert first.status_code == 400
    assert "did not accept this setup code" in first.text
    assert await stored_rows(relay.store) == []

    # Replayed with the cookie put back, and now with a code GitHub would accept.
    assert relay_cookie is not None
    relay.client.cookies.set(STATE_COOKIE, relay_cookie, domain="relay.example.com")
    replay = await callback(relay, "good-code", state)
    assert replay.status_code == 400
    assert "expired or was already used" in replay.text
    assert len(relay.github.requests) == 1
    assert await stored_rows(relay.store) == []


async def test_a_state_must_belong_to_this_browser(store: Store) -> None:
    async with harness(store) as relay, harness(store) as stranger:
        state, _ = await open_setup(relay)

        # Another browser: no cookie at all, then a cookie of its own flow.
        no_cookie = await callback(stranger, "good-code", state)
        assert no_cookie.status_code == 400
        assert "not started from this browser" in no_cookie.text
        await open_setup(stranger)
        other_cookie = await callback(stranger, "good-code", state)
        assert other_cookie.status_code == 400
        assert stranger.github.requests == []
        assert await stored_rows(store) == []

        # The state was not spent: its own browser still finishes the setup.
        assert (await callback(relay, "good-code", state)).status_code == 303
        assert len(await stored_rows(store)) == 1


async def test_unknown_expired_and_missing_states_are_refused(relay: Harness) -> None:
    forged = "forged-state-that-was-never-issued"
    relay.client.cookies.set(STATE_COOKIE, forged, domain="relay.example.com")
    assert (await callback(relay, "good-code", forged)).status_code == 400

    expired = await issue_state(relay.store, PLATFORM, ttl_seconds=-1)
    relay.client.cookies.set(STATE_COOKIE, expired, domain="relay.example.com")
    refused = await callback(relay, "good-code", expired)
    assert refused.status_code == 400
    assert "expired" in refused.text

    slack_state = await issue_state(relay.store, "slack")
    relay.client.cookies.set(STATE_COOKIE, slack_state, domain="relay.example.com")
    assert (await callback(relay, "good-code", slack_state)).status_code == 400

    missing = await relay.client.get("/github/setup/callback", params={"code": "good-code"})
    assert missing.status_code == 400

    assert relay.github.requests == []
    assert await stored_rows(relay.store) == []


async def test_a_missing_or_odd_code_is_refused_before_calling_github(relay: Harness) -> None:
    for params in ({}, {"code": "../../app"}):
        state, _ = await open_setup(relay)
        refused = await relay.client.get(
            "/github/setup/callback", params={**params, "state": state}
        )
        assert refused.status_code == 400
        assert "no usable code" in refused.text
    assert relay.github.requests == []
    assert await stored_rows(relay.store) == []


@pytest.mark.parametrize(
    ("answer", "status", "says"),
    [
        ((422, {"message": "Validation Failed", "errors": []}), 400, "did not accept"),
        ((404, {"message": "Not Found"}), 400, "did not accept"),
        ((500, {"message": "boom"}), 502, "could not be reached"),
        ((201, {"id": 1, "slug": "half"}), 502, "lacked the app's credentials"),
    ],
)
async def test_github_refusing_the_code_gives_a_readable_page_and_stores_nothing(
    store: Store, answer: tuple[int, Any], status: int, says: str
) -> None:
    async with harness(store, answers={"the-code": answer}) as relay:
        state, _ = await open_setup(relay)
        refused = await callback(relay, "the-code", state)
        assert refused.status_code == status
        assert refused.headers["content-type"].startswith("text/html")
        assert says in html.unescape(refused.text)
        assert 'href="https://relay.example.com/github/setup"' in refused.text
        assert refused.headers["referrer-policy"] == "no-referrer"
        assert await stored_rows(store) == []
        assert await relay.source.current() is None


async def test_github_unreachable_gives_a_502_page(store: Store) -> None:
    async with harness(store) as relay:
        relay.github.unreachable = True
        state, _ = await open_setup(relay)
        refused = await callback(relay, "good-code", state)
        assert refused.status_code == 502
        assert await stored_rows(store) == []


async def test_a_slug_with_markup_is_escaped_on_the_page(store: Store) -> None:
    odd = conversion(slug='<b onmouseover="x">')
    async with harness(store, answers={"good-code": (201, odd)}) as relay:
        state, _ = await open_setup(relay)
        assert (await callback(relay, "good-code", state)).status_code == 303
        page = await relay.client.get("/github/setup")
        assert "<b onmouseover" not in page.text
        assert "&lt;b onmouseover=&#34;x&#34;&gt;" in page.text
        # The slug is a path segment of the install link, percent-encoded.
        assert "/apps/%3Cb%20onmouseover%3D%22x%22%3E/installations/new" in page.text


# --- an app from the settings, or unreadable ------------------------------------------------


@pytest.mark.parametrize(
    ("slug", "install_link"),
    [(None, None), ("hand-made", f"{GITHUB_URL}/apps/hand-made/installations/new")],
)
async def test_an_app_from_the_settings_is_shown_and_no_second_one_offered(
    store: Store, slug: str | None, install_link: str | None
) -> None:
    configured = AppCredentials(
        app_id="31337", slug=slug, private_key=PEM, webhook_secret=WEBHOOK_SECRET
    )
    async with harness(store, configured=configured, public_url=None) as relay:
        page = await relay.client.get("/github/setup")
        assert page.status_code == 200
        assert 'id="app-id">31337<' in page.text
        assert "from the settings" in page.text
        assert forms_of(page.text) == {}
        assert_no_secret(page.text)
        if install_link is None:
            assert 'id="install-link"' not in page.text
        else:
            assert f'href="{install_link}"' in page.text

        state = await issue_state(store, PLATFORM)
        relay.client.cookies.set(STATE_COOKIE, state, domain="relay.example.com")
        assert (await callback(relay, "good-code", state)).status_code == 409
        assert relay.github.requests == []
        assert await stored_rows(store) == []


async def test_credentials_sealed_with_another_secret_key_are_reported(store: Store) -> None:
    await GithubAppSource(
        store, SecretBox("the-old-secret-key-long-enough"), None
    ).save_from_manifest(conversion())
    async with harness(store) as relay:
        page = await relay.client.get("/github/setup")
        assert page.status_code == 500
        assert 'id="unreadable"' in page.text
        assert forms_of(page.text) == {}
        assert_no_secret(page.text)
