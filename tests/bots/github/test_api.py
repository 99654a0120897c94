"""GitHub REST calls from jobs: app auth, cached installation tokens, failures as job errors."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

import bots.github.api
from bots.github.api import GithubApi, GithubNotConfigured, GithubThread
from bots.github.credentials import AppCredentials, GithubAppSource
from bots.markers import marker
from db.job_kinds import PermanentJobError, RetryableJobError
from db.secrets import SecretBox
from db.store import Store
from tests.support.fake_github import FakeGitHub

APP_ID = 9
INSTALLATION = 31
REPO = "acme/api"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def clients(github: FakeGitHub, store: Store, clock: Clock) -> AsyncIterator[GithubApi]:
    pem = github.add_app(APP_ID, "relay-test")
    github.add_installation(INSTALLATION, APP_ID, account="acme", repositories=[REPO])
    github.clear_calls()
    app = AppCredentials(app_id=str(APP_ID), slug=None, private_key=pem, webhook_secret="s")
    async with httpx.AsyncClient(timeout=10) as http:
        yield GithubApi(
            http, GithubAppSource(store, SecretBox(None), app), github.api_url, clock=clock
        )


async def test_the_app_asks_for_its_slug_once_with_a_jwt(
    clients: GithubApi, github: FakeGitHub
) -> None:
    assert await clients.app_slug() == "relay-test"
    assert await clients.app_slug() == "relay-test"
    [call] = github.calls("GET", "/app")
    assert call.auth == "jwt"


async def test_an_installation_token_is_minted_once_and_reused(
    clients: GithubApi, github: FakeGitHub
) -> None:
    github.add_issue(REPO, 1, title="t", body="b", user="ada")
    before = github.token_mints(INSTALLATION)
    for _ in range(3):
        await clients.call(INSTALLATION, "GET", f"/repos/{REPO}/issues/1", accept="*/*")
    assert github.token_mints(INSTALLATION) == before + 1


async def test_a_refused_token_is_replaced_and_the_call_made_again(
    clients: GithubApi, github: FakeGitHub
) -> None:
    github.add_issue(REPO, 2, title="t", body="b", user="ada")
    await clients.call(INSTALLATION, "GET", f"/repos/{REPO}/issues/2")
    before = github.token_mints(INSTALLATION)
    github.expire_tokens()
    issue = await clients.call(INSTALLATION, "GET", f"/repos/{REPO}/issues/2")
    assert issue["number"] == 2
    assert github.token_mints(INSTALLATION) == before + 1


async def test_a_token_close_to_expiry_is_renewed(
    clients: GithubApi, github: FakeGitHub, clock: Clock
) -> None:
    await clients.installation_token(INSTALLATION)
    before = github.token_mints(INSTALLATION)
    clock.now += 54 * 60
    await clients.installation_token(INSTALLATION)
    assert github.token_mints(INSTALLATION) == before
    # 56 minutes on: within five minutes of the token's hour.
    clock.now += 2 * 60
    await clients.installation_token(INSTALLATION)
    assert github.token_mints(INSTALLATION) == before + 1


@pytest.mark.parametrize(
    ("status", "headers", "message", "retry_after"),
    [
        (429, {"Retry-After": "7"}, "slow down", 7.0),
        (403, {"Retry-After": "3"}, "You have exceeded a secondary rate limit.", 3.0),
        (403, {"x-ratelimit-remaining": "0"}, "API rate limit exceeded", None),
        (502, {}, "bad gateway", None),
    ],
)
async def test_rate_limits_and_outages_are_retried(
    clients: GithubApi,
    github: FakeGitHub,
    status: int,
    headers: dict[str, str],
    message: str,
    retry_after: float | None,
) -> None:
    github.add_issue(REPO, 3, title="t", body="b", user="ada")
    github.fail_next(
        "GET", rf"/repos/{REPO}/issues/3", status, headers=headers, body={"message": message}
    )
    with pytest.raises(RetryableJobError) as raised:
        await clients.call(INSTALLATION, "GET", f"/repos/{REPO}/issues/3")
    assert f"github GET /repos/{REPO}/issues/3: HTTP {status}" in str(raised.value)
    if retry_after is not None:
        assert raised.value.retry_after == retry_after


async def test_the_primary_rate_limit_waits_until_its_reset(
    clients: GithubApi, github: FakeGitHub
) -> None:
    reset = int(time.time()) + 120
    github.fail_next(
        "GET",
        rf"/repos/{REPO}/issues/4",
        403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
    )
    with pytest.raises(RetryableJobError) as raised:
        await clients.call(INSTALLATION, "GET", f"/repos/{REPO}/issues/4")
    assert raised.value.retry_after is not None
    assert 100 < raised.value.retry_after <= 120


@pytest.mark.parametrize("status", [404, 410, 422, 403])
async def test_other_refusals_are_permanent(
    clients: GithubApi, github: FakeGitHub, status: int
) -> None:
    github.fail_next(
        "POST", rf"/repos/{REPO}/issues/5/comments", status, body={"message": "Refused"}
    )
    with pytest.raises(PermanentJobError, match=f"HTTP {status}"):
        await GithubThread(clients, INSTALLATION, REPO, 5).post("hello")


async def test_no_token_appears_in_an_error(clients: GithubApi, github: FakeGitHub) -> None:
    token = await clients.installation_token(INSTALLATION)
    github.fail_next("GET", rf"/repos/{REPO}/issues/6", 404)
    with pytest.raises(PermanentJobError) as raised:
        await clients.call(INSTALLATION, "GET", f"/repos/{REPO}/issues/6")
    assert token not in str(raised.value)


async def test_without_an_app_calls_fail_with_what_to_set(store: Store) -> None:
    async with httpx.AsyncClient() as http:
        clients = GithubApi(http, GithubAppSource(store, SecretBox(None), None), "http://x")
        with pytest.raises(GithubNotConfigured, match="/github/setup"):
            await clients.installation_token(1)


async def test_a_thread_posts_edits_and_finds_marked_comments(
    clients: GithubApi, github: FakeGitHub
) -> None:
    github.add_issue(REPO, 7, title="t", body="b", user="ada")
    tag = marker("ack", "delivery-1")
    posted = await GithubThread(clients, INSTALLATION, REPO, 7).post(f"On it\n\n{tag}")
    # A thread reads its comments once: a fresh one sees the posted comment.
    thread = GithubThread(clients, INSTALLATION, REPO, 7)
    assert await thread.find_marked(tag) == posted
    assert await thread.find_marked(marker("ack", "delivery-2")) is None
    await thread.edit(posted, "Done")
    assert [c["body"] for c in github.comments(REPO, 7)] == ["Done"]


async def test_a_review_thread_replies_under_its_top_comment(
    clients: GithubApi, github: FakeGitHub
) -> None:
    top = github.add_review_comment(
        REPO, 8, "why?", user="ada", path="a.py", line=1, diff_hunk="@@ -1 +1 @@"
    )
    other = github.add_review_comment(
        REPO, 8, "unrelated", user="ada", path="b.py", line=2, diff_hunk="@@ -2 +2 @@"
    )
    thread = GithubThread(clients, INSTALLATION, REPO, 8, review_thread_id=top["id"])
    reply = await thread.post("because")
    ids = [c["id"] for c in await thread.comments()]
    assert ids == [top["id"], reply]
    [posted] = [c for c in github.review_comments(REPO, 8) if c["id"] == reply]
    assert posted["in_reply_to_id"] == top["id"]
    assert other["id"] not in ids


async def test_the_app_jwt_is_signed_again_only_every_few_minutes(
    clients: GithubApi, github: FakeGitHub, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed = []
    real_get_jwt = bots.github.api.get_jwt

    def counting_get_jwt(**kwargs: Any) -> str:
        signed.append(kwargs["app_id"])
        return real_get_jwt(**kwargs)

    monkeypatch.setattr(bots.github.api, "get_jwt", counting_get_jwt)
    github.fail_next("GET", "/app", 502, count=2)
    for _ in range(2):
        with pytest.raises(RetryableJobError):
            await clients.app_info()
    assert (await clients.app_info())["slug"] == "relay-test"
    assert len(signed) == 1
    clock.now += 9 * 60
    await clients.app_info()
    assert len(signed) == 2


@pytest.fixture
def parsed_keys(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The PEMs the clients parse, in order."""
    parsed: list[bytes] = []
    real_load = bots.github.api.load_pem_private_key

    def counting_load(data: bytes, password: bytes | None) -> Any:
        parsed.append(data)
        return real_load(data, password)

    monkeypatch.setattr(bots.github.api, "load_pem_private_key", counting_load)
    return parsed


async def test_the_private_key_is_parsed_once_for_every_jwt_and_token(
    clients: GithubApi, github: FakeGitHub, clock: Clock, parsed_keys: list[bytes]
) -> None:
    """Parsing the PEM holds the event loop for tens of milliseconds; signing with
    the parsed key, under one."""
    other = 32
    github.add_installation(other, APP_ID, account="acme", repositories=[REPO])

    await clients.app_info()
    await clients.installation_token(INSTALLATION)
    await clients.installation_token(other)
    clock.now += 9 * 60  # past the JWT's reuse
    await clients.app_info()

    assert github.token_mints(INSTALLATION) == 1 and github.token_mints(other) == 1
    assert len(parsed_keys) == 1


async def test_a_private_key_that_is_no_pem_fails_the_job_for_good_without_showing_it(
    github: FakeGitHub, store: Store
) -> None:
    github.add_app(APP_ID, "relay-test")
    not_a_key = (
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ1dC1ub3QtYS1rZXk=\n-----END PRIVATE KEY-----"
    )
    app = AppCredentials(app_id=str(APP_ID), slug=None, private_key=not_a_key, webhook_secret="s")
    async with httpx.AsyncClient(timeout=10) as http:
        clients = GithubApi(http, GithubAppSource(store, SecretBox(None), app), github.api_url)
        with pytest.raises(PermanentJobError) as failure:
            await clients.app_info()
    assert "c2VjcmV0" not in str(failure.value)
    assert "private key" in str(failure.value)


async def test_prepare_parses_the_key_before_any_job_and_logs_one_that_does_not_parse(
    github: FakeGitHub,
    store: Store,
    parsed_keys: list[bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    pem = github.add_app(APP_ID, "relay-test")
    async with httpx.AsyncClient(timeout=10) as http:
        for key in (pem, "not a key"):
            app = AppCredentials(app_id=str(APP_ID), slug=None, private_key=key, webhook_secret="s")
            clients = GithubApi(http, GithubAppSource(store, SecretBox(None), app), github.api_url)
            await clients.prepare()
    assert len(parsed_keys) == 2
    assert "not an unencrypted PEM private key" in caplog.text
    assert "not a key" not in caplog.text
