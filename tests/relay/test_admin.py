"""The operator status page (/admin) through its routes, on both databases.

The routes run under httpx's ASGI transport over a real Store, with outbound checks
that answer what a test sets (and count the calls). The last tests build the whole app
with create_app to see the wiring: /github/setup gated by the page's login, and the
agent-server and platform lines made by relay/checks.py against the fakes of
tests/support over loopback (Slack refusing a token, GitHub refusing an app's JWT...).
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from itsdangerous.encoding import base64_decode, base64_encode, bytes_to_int, int_to_bytes
from starlette.applications import Starlette

from bots.checks import CheckResult, fail, ok, skip, warn
from bots.github.reply import GithubCallbackProcessor
from bots.gitlab.reply import GitlabCallbackProcessor
from bots.gitlab.triggers import Noteable
from bots.mentions import Turn, record_turn
from bots.slack.reply import SlackCallbackProcessor
from bots.web_session import LoginThrottle, safe_next
from db.deliveries import record_delivery
from db.jobs import JobQueue, JobStatus
from db.store import Store
from relay.admin.page import AdminPage
from relay.admin.session import (
    FLASH_COOKIE,
    LOGIN_COOKIE,
    LOGIN_FORM_SECONDS,
    SESSION_COOKIE,
    SESSION_SECONDS,
)
from relay.app import create_app
from relay.settings import Settings
from tests.support.fake_agent_api import (
    AGENT_API_KEY,
    WEBHOOK_SECRET,
    FakeAgentServer,
    LoopbackAgentServer,
    insert_webhook_callback,
)
from tests.support.fake_github import FakeGitHub, generate_private_key_pem
from tests.support.fake_gitlab import BOT_TOKEN as GITLAB_BOT_TOKEN
from tests.support.fake_gitlab import FakeGitlab
from tests.support.fake_slack import FakeSlack

PUBLIC_URL = "https://relay.example.com"
API_TOKEN = "admin-page-api-token-0123456789"
ERROR = "webhook receiver of callback 7 answered 404: no such hook"
CONVERSATION_URL = "https://agent.example.test/conversations/{conversation_id}"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


AGENT_OK = [
    ok("agent-server", "http://agent.test answers"),
    ok("agent-server key", "X-Session-API-Key accepted"),
    skip("agent-server webhooks", "the agent-server does not report where it sends them"),
]


@dataclass
class CountingChecks:
    """Outbound checks (relay.admin_status.OutboundChecks) that answer what the test
    sets, and count how often the page asks."""

    platform_results: list[CheckResult] = field(default_factory=list)
    agent_results: list[CheckResult] = field(default_factory=lambda: list(AGENT_OK))
    agent_calls: int = 0
    platform_calls: int = 0
    error: Exception | None = None

    async def agent_server(self) -> list[CheckResult]:
        self.agent_calls += 1
        return self.agent_results

    async def platforms(self) -> list[CheckResult]:
        self.platform_calls += 1
        if self.error is not None:
            raise self.error
        return self.platform_results


@dataclass
class Harness:
    client: httpx.AsyncClient
    store: Store
    queue: JobQueue
    clock: Clock
    checks: CountingChecks
    settings: Settings


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_token": API_TOKEN,
        "public_url": PUBLIC_URL,
        "agent_server_url": "http://agent.test",
        "agent_server_api_key": AGENT_API_KEY,
        "agent_conversation_url": CONVERSATION_URL,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def harness(
    store: Store,
    *,
    throttle: LoginThrottle | None = None,
    checks: CountingChecks | None = None,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    configured = settings(**overrides)
    clock = Clock()
    checks = checks or CountingChecks()
    queue = JobQueue(store)
    page = AdminPage(
        settings=configured,
        store=store,
        queue=queue,
        checks=checks,
        clock=clock,
        throttle=throttle,
    )
    app = Starlette(routes=page.routes())
    base_url = configured.public_url or "http://relay.test"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as http:
        yield Harness(http, store, queue, clock, checks, configured)


async def login(
    client: httpx.AsyncClient, token: str = API_TOKEN, next: str | None = None
) -> httpx.Response:
    """Open the login form and send it, as a browser does."""
    page = await client.get("/admin/login", params={"next": next} if next is not None else None)
    assert page.status_code == 200, page.text
    fields = {"csrf": csrf_of(page.text), "token": token}
    if next is not None:
        fields["next"] = next
    return await client.post("/admin/login", data=fields)


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match is not None, html
    return match.group(1)


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name (the whole header, attributes included)."""
    return {header.partition("=")[0]: header for header in response.headers.get_list("set-cookie")}


async def failed_job(queue: JobQueue, error: str = ERROR) -> int:
    job_id = await queue.enqueue("callback.reply", {"callback_id": 7})
    assert job_id is not None
    job = await queue.claim()
    assert job is not None and job.id == job_id
    assert await queue.fail(job, error, permanent=True) == JobStatus.FAILED
    return job_id


async def status_page(h: Harness) -> str:
    response = await h.client.get("/admin")
    assert response.status_code == 200, response.text
    return response.text


# --- the login ---------------------------------------------------------------------------


async def test_without_api_token_every_admin_route_says_to_set_it(store: Store) -> None:
    async with harness(store, api_token=None) as h:
        for method, path in [
            ("GET", "/admin"),
            ("GET", "/admin/login"),
            ("POST", "/admin/login"),
            ("POST", "/admin/logout"),
            ("POST", "/admin/jobs/1/retry"),
        ]:
            response = await h.client.request(method, path, data={"token": ""})
            assert response.status_code == 404
            assert "set API_TOKEN" in response.text
            assert "set-cookie" not in response.headers


async def test_the_status_page_sends_a_browser_without_session_to_the_login(store: Store) -> None:
    async with harness(store) as h:
        response = await h.client.get("/admin")
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/login"
        form = await h.client.get("/admin/login")
        assert form.status_code == 200
        assert 'name="token"' in form.text and 'type="password"' in form.text
        assert "http-equiv" not in form.text  # no refresh: it would lose what is typed
        cookie = set_cookies(form)[LOGIN_COOKIE].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
        assert "path=/admin" in cookie
        assert form.headers["cache-control"] == "no-store"
        assert "form-action 'self'" in form.headers["content-security-policy"]


async def test_the_right_token_opens_a_session_with_a_safe_cookie(store: Store) -> None:
    async with harness(store) as h:
        response = await login(h.client)
        assert response.status_code == 303
        assert response.headers["location"] == "/admin"
        cookie = set_cookies(response)[SESSION_COOKIE]
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "secure", "samesite=lax", "path=/"} <= flags
        assert f"max-age={SESSION_SECONDS}" in flags
        assert API_TOKEN not in cookie
        html = await status_page(h)
        assert "agent-relay status" in html
        assert '<meta http-equiv="refresh" content="15">' in html


async def test_the_session_cookie_is_not_secure_behind_a_plain_http_public_url(
    store: Store,
) -> None:
    async with harness(store, public_url="http://relay.example.com") as h:
        response = await login(h.client)
        assert response.status_code == 303
        assert "secure" not in set_cookies(response)[SESSION_COOKIE].lower()


async def test_a_wrong_token_is_401_and_opens_nothing(store: Store) -> None:
    async with harness(store) as h:
        response = await login(h.client, token="not-the-token")
        assert response.status_code == 401
        assert "That is not the API_TOKEN" in response.text
        assert SESSION_COOKIE not in set_cookies(response)
        assert (await h.client.get("/admin")).status_code == 303


async def test_failed_logins_are_throttled_per_client(store: Store) -> None:
    clock = Clock()
    throttle = LoginThrottle(allowed=2, window=600, clock=clock)
    async with harness(store, throttle=throttle) as h:
        for _ in range(2):
            assert (await login(h.client, token="guess")).status_code == 401
        blocked = await login(h.client)  # even the right token waits now
        assert blocked.status_code == 429
        assert 0 < int(blocked.headers["retry-after"]) <= 600
        assert SESSION_COOKIE not in set_cookies(blocked)
        clock.now += 601
        assert (await login(h.client)).status_code == 303


async def test_a_session_expires_on_the_server(store: Store) -> None:
    async with harness(store) as h:
        job_id = await failed_job(h.queue)
        await login(h.client)
        page = await h.client.get("/admin")
        assert page.status_code == 200
        h.clock.now += SESSION_SECONDS + 1
        # The browser would have dropped the cookie; the server does not rely on that.
        assert (await h.client.get("/admin")).status_code == 303
        retry = await h.client.post(
            f"/admin/jobs/{job_id}/retry", data={"csrf": csrf_of(page.text)}
        )
        assert retry.status_code == 403
        job = await h.queue.get(job_id)
        assert job is not None and job.status is JobStatus.FAILED


def _later(value: str) -> str:
    """The session cookie `payload.timestamp.signature` with its time an hour later."""
    payload, stamp, signature = value.split(".")
    later = base64_encode(int_to_bytes(bytes_to_int(base64_decode(stamp)) + 3600)).decode()
    return f"{payload}.{later}.{signature}"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda v: "garbage", id="garbage"),
        pytest.param(lambda v: "", id="empty"),
        pytest.param(_later, id="later"),
        pytest.param(lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"), id="signature"),
        pytest.param(lambda v: v + ".extra", id="extra-part"),
        pytest.param(lambda v: v.partition(".")[2], id="no-payload"),
    ],
)
async def test_forged_session_cookies_are_refused(store: Store, forge: Any) -> None:
    async with harness(store) as h:
        real = set_cookies(await login(h.client))[SESSION_COOKIE]
        value = real.partition("=")[2].partition(";")[0]
        async with httpx.AsyncClient(transport=h.client._transport, base_url=PUBLIC_URL) as other:
            other.cookies.set(SESSION_COOKIE, forge(value))
            assert (await other.get("/admin")).status_code == 303


async def test_a_value_signed_for_another_purpose_is_no_session(store: Store) -> None:
    """The login form's token is signed by the same key (and holds a nonce of the same
    shape), but for another purpose: as a session cookie it opens nothing."""
    async with harness(store) as h:
        login_token = csrf_of((await h.client.get("/admin/login")).text)
        h.client.cookies.set(SESSION_COOKIE, login_token)
        assert (await h.client.get("/admin")).status_code == 303


async def test_rotating_api_token_or_secret_key_ends_every_session(store: Store) -> None:
    async with harness(store) as h:
        real = set_cookies(await login(h.client))[SESSION_COOKIE]
        value = real.partition("=")[2].partition(";")[0]
    for changed in ({"api_token": "a-rotated-api-token-0123"}, {"secret_key": "x" * 32}):
        async with harness(store, **changed) as rotated:
            rotated.client.cookies.set(SESSION_COOKIE, value)
            assert (await rotated.client.get("/admin")).status_code == 303


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/github/setup?organization=acme", "/github/setup?organization=acme"),
        ("//evil.example/x", "/admin"),
        ("/\\evil.example", "/admin"),
        ("https://evil.example/", "/admin"),
        ("javascript:alert(1)", "/admin"),
        ("/admin\r\nSet-Cookie: x=1", "/admin"),
        ("", "/admin"),
    ],
)
async def test_login_goes_on_only_to_paths_of_this_relay(
    store: Store, target: str, location: str
) -> None:
    async with harness(store) as h:
        response = await login(h.client, next=target)
        assert response.status_code == 303
        assert response.headers["location"] == location


def test_safe_next() -> None:
    assert safe_next("/admin", "/admin") == "/admin"
    assert (
        safe_next("/github/setup/callback?code=1&state=2", "/admin")
        == "/github/setup/callback?code=1&state=2"
    )
    for bad in (None, "", "admin", "//x", "/\\x", "http://x/", "/a b", "/a\tb", "/a\\b"):
        assert safe_next(bad, "/admin") == "/admin"


@pytest.mark.parametrize(
    "spoil",
    ["no-cookie", "wrong-field", "no-field", "other-origin"],
)
async def test_a_login_without_its_form_token_is_403(store: Store, spoil: str) -> None:
    async with harness(store) as h:
        page = await h.client.get("/admin/login")
        fields = {"csrf": csrf_of(page.text), "token": API_TOKEN}
        headers = {}
        if spoil == "no-cookie":
            h.client.cookies.clear()
        elif spoil == "wrong-field":
            fields["csrf"] = "A" * 43
        elif spoil == "no-field":
            del fields["csrf"]
        else:
            headers["Origin"] = "https://evil.example"
        response = await h.client.post("/admin/login", data=fields, headers=headers)
        assert response.status_code == 403
        assert "Nothing was changed" in response.text
        assert SESSION_COOKIE not in set_cookies(response)


async def test_a_login_form_older_than_an_hour_is_403(store: Store) -> None:
    async with harness(store) as h:
        page = await h.client.get("/admin/login")
        h.clock.now += LOGIN_FORM_SECONDS + 1
        response = await h.client.post(
            "/admin/login", data={"csrf": csrf_of(page.text), "token": API_TOKEN}
        )
        assert response.status_code == 403
        assert SESSION_COOKIE not in set_cookies(response)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"data": {f"f{n}": "x" for n in range(11)}}, id="too-many-fields"),
        pytest.param({"data": {"csrf": "x" * 9000}}, id="a-field-too-large"),
        pytest.param({"files": {"csrf": ("csrf.txt", b"x")}}, id="a-file"),
    ],
)
async def test_forms_over_the_limits_are_400_and_change_nothing(
    store: Store, body: dict[str, Any]
) -> None:
    async with harness(store) as h:
        job_id = await failed_job(h.queue)
        await login(h.client)
        csrf = csrf_of(await status_page(h))
        if "data" in body and "csrf" not in body["data"]:
            body["data"]["csrf"] = csrf
        for path in (f"/admin/jobs/{job_id}/retry", "/admin/logout", "/admin/login"):
            response = await h.client.post(path, **body)
            assert response.status_code == 400, (path, response.text)
        job = await h.queue.get(job_id)
        assert job is not None and job.status is JobStatus.FAILED
        assert (await h.client.get("/admin")).status_code == 200  # still logged in


async def test_a_login_from_the_relays_own_origin_is_accepted(store: Store) -> None:
    async with harness(store) as h:
        page = await h.client.get("/admin/login")
        response = await h.client.post(
            "/admin/login",
            data={"csrf": csrf_of(page.text), "token": API_TOKEN},
            headers={"Origin": PUBLIC_URL},
        )
        assert response.status_code == 303


async def test_logout_ends_the_session_and_needs_the_form_token(store: Store) -> None:
    async with harness(store) as h:
        await login(h.client)
        csrf = csrf_of(await status_page(h))
        refused = await h.client.post("/admin/logout", data={"csrf": "B" * 43})
        assert refused.status_code == 403
        assert (await h.client.get("/admin")).status_code == 200
        response = await h.client.post("/admin/logout", data={"csrf": csrf})
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/login"
        assert "max-age=0" in set_cookies(response)[SESSION_COOKIE].lower()
        assert (await h.client.get("/admin")).status_code == 303


# --- retry -------------------------------------------------------------------------------


async def test_retry_queues_the_failed_job_again_and_says_so(store: Store) -> None:
    async with harness(store) as h:
        job_id = await failed_job(h.queue)
        await login(h.client)
        html = await status_page(h)
        assert f'id="failed-job-{job_id}"' in html
        assert "callback.reply" in html and "answered 404: no such hook" in html
        assert f'id="retry-{job_id}"' in html
        response = await h.client.post(f"/admin/jobs/{job_id}/retry", data={"csrf": csrf_of(html)})
        assert response.status_code == 303
        assert response.headers["location"] == "/admin"
        job = await h.queue.get(job_id)
        assert job is not None and job.status is JobStatus.QUEUED and job.attempts == 0
        after = await status_page(h)
        assert f"Job {job_id} is queued again." in after
        assert f'id="failed-job-{job_id}"' not in after
        # The message shows once; the page's own refresh does not repeat it.
        assert "queued again" not in await status_page(h)


async def test_retrying_a_job_that_is_not_failed_changes_nothing(store: Store) -> None:
    async with harness(store) as h:
        job_id = await failed_job(h.queue)
        await login(h.client)
        csrf = csrf_of(await status_page(h))
        await h.client.post(f"/admin/jobs/{job_id}/retry", data={"csrf": csrf})
        again = await h.client.post(f"/admin/jobs/{job_id}/retry", data={"csrf": csrf})
        assert again.status_code == 303
        assert "was not failed (any more)" in await status_page(h)
        missing = await h.client.post("/admin/jobs/999999/retry", data={"csrf": csrf})
        assert missing.status_code == 303


@pytest.mark.parametrize("spoil", ["no-field", "wrong", "other-session", "other-origin", "json"])
async def test_a_retry_without_the_sessions_form_token_is_403_and_changes_nothing(
    store: Store, spoil: str
) -> None:
    async with harness(store) as h:
        job_id = await failed_job(h.queue)
        await login(h.client)
        csrf = csrf_of(await status_page(h))
        kwargs: dict[str, Any] = {"data": {"csrf": csrf}}
        if spoil == "no-field":
            kwargs["data"] = {}
        elif spoil == "wrong":
            # The first character: the last one's low bits are padding, which base64
            # decoders ignore, so changing it may leave the same signature.
            kwargs["data"] = {"csrf": ("A" if csrf[0] != "A" else "B") + csrf[1:]}
        elif spoil == "other-session":
            async with httpx.AsyncClient(
                transport=h.client._transport, base_url=PUBLIC_URL
            ) as other:
                await login(other)
                kwargs["data"] = {"csrf": csrf_of((await other.get("/admin")).text)}
        elif spoil == "other-origin":
            kwargs["headers"] = {"Origin": "https://evil.example"}
        else:
            kwargs = {"json": {"csrf": csrf}}
        response = await h.client.post(f"/admin/jobs/{job_id}/retry", **kwargs)
        assert response.status_code == 403
        assert "Nothing was changed" in response.text
        job = await h.queue.get(job_id)
        assert job is not None and job.status is JobStatus.FAILED and job.attempts == 1


async def test_a_retry_without_a_session_is_403(store: Store) -> None:
    async with harness(store) as h:
        job_id = await failed_job(h.queue)
        response = await h.client.post(f"/admin/jobs/{job_id}/retry", data={"csrf": "x"})
        assert response.status_code == 403
        job = await h.queue.get(job_id)
        assert job is not None and job.status is JobStatus.FAILED


# --- what the page shows ------------------------------------------------------------------


async def mention(
    store: Store, queue: JobQueue, platform: str, thread_key: str, processor: Any, **tags: str
) -> str:
    conversation_id = uuid.uuid4().hex
    turn = Turn(
        platform=platform,
        thread_key=thread_key,
        delivery_id=uuid.uuid4().hex,
        conversation_id=conversation_id,
        text="please look",
        processor=processor,
        tags=tags,
    )
    assert await record_turn(store, queue, turn, continuing=False) is not None
    return conversation_id


async def test_the_page_shows_counts_health_and_recent_mentions(store: Store) -> None:
    async with harness(
        store,
        slack_signing_secret="slack-signing-secret",
        slack_bot_token="xoxb-slack-bot-token",
        gitlab_url="https://gitlab.example.com",
        gitlab_token="glpat-gitlab-token",
        gitlab_webhook_secret="gitlab-hook-secret",
    ) as h:
        await failed_job(h.queue)
        slack_conversation = await mention(
            store,
            h.queue,
            "slack",
            "T0001:C0002:1700000000.000100",
            SlackCallbackProcessor(
                team_id="T0001",
                channel="C0002",
                thread_ts="1700000000.000100",
                user="U1",
                trigger_ts="1700000000.000100",
            ),
        )
        processor = GithubCallbackProcessor(
            installation_id=1, repository="acme/web", number=12, asker="ada"
        )
        await mention(store, h.queue, "github", "acme/web#12", processor)
        await mention(store, h.queue, "github", "acme/web#13/r4567", processor)
        gitlab_processor = GitlabCallbackProcessor(
            project_id=42, noteable=Noteable.MERGE_REQUEST, iid=5, username="ada"
        )
        await mention(
            store, h.queue, "gitlab", "42:merge_request:5", gitlab_processor, project="grp/sub/app"
        )
        await mention(store, h.queue, "gitlab", "43:issue:6", gitlab_processor)
        await store.execute(
            "INSERT INTO agent_conversations (conversation_id, execution_status, updated_at)"
            " VALUES (:id, 'running', 1)",
            {"id": slack_conversation},
        )
        await record_delivery(store, "slack", "Ev0001")
        await login(h.client)
        html = await status_page(h)

    def cell(element_id: str) -> str:
        match = re.search(rf'id="{element_id}">([^<]*)<', html)
        assert match is not None, element_id
        return match.group(1)

    assert cell("jobs-failed") == "1"
    assert cell("jobs-queued") == "5"  # the five conversation.start jobs
    assert cell("callbacks-active") == "5"
    assert cell("callbacks-completed") == "0"
    slack_row = html[html.index('id="health-slack"') : html.index('id="health-github"')]
    assert "configured</span>: one workspace" in slack_row and "not checked" in slack_row
    assert "never" not in slack_row  # its last event is shown
    github_row = html[html.index('id="health-github"') : html.index('id="health-gitlab"')]
    assert "not configured" in github_row
    gitlab_row = html[html.index('id="health-gitlab"') : html.index("</tbody>")]
    assert "https://gitlab.example.com" in gitlab_row and "never" in gitlab_row
    agent_row = html[html.index('id="health-agent"') : html.index('id="health-slack"')]
    assert '<span class="ok">ok</span>' in agent_row and "http://agent.test" in agent_row
    assert "https://slack.com/app_redirect?team=T0001&amp;channel=C0002" in html
    assert "C0002 thread 1700000000.000100" in html
    assert 'href="https://github.com/acme/web/issues/12"' in html
    assert 'href="https://github.com/acme/web/pull/13#discussion_r4567"' in html
    assert 'href="https://gitlab.example.com/grp/sub/app/-/merge_requests/5"' in html
    assert "grp/sub/app!5" in html
    # No project path known for this one: GitLab sends /projects/{id} to the project.
    assert 'href="https://gitlab.example.com/projects/43"' in html
    assert f'href="https://agent.example.test/conversations/{slack_conversation}"' in html
    assert "running" in html


async def test_conversations_show_as_plain_ids_without_a_link_template(store: Store) -> None:
    async with harness(store, agent_conversation_url=None) as h:
        processor = GithubCallbackProcessor(
            installation_id=1, repository="acme/web", number=12, asker="ada"
        )
        conversation_id = await mention(store, h.queue, "github", "acme/web#12", processor)
        await login(h.client)
        html = await status_page(h)
        assert f"<code>{conversation_id}</code>" in html
        assert "agent.example.test" not in html


async def test_no_secret_reaches_the_page(store: Store, tmp_path: Path) -> None:
    secrets = {
        "api_token": API_TOKEN,
        "secret_key": "the-secret-key-of-this-relay-0123",
        "agent_server_api_key": AGENT_API_KEY,
        "agent_webhook_secret": "agent-webhook-secret-0123",
        "agent_llm_api_key": "sk-llm-key-0123456789",
        "slack_signing_secret": "slack-signing-secret-0123",
        "slack_bot_token": "xoxb-0123-slack-bot-token",
        "slack_client_secret": "slack-client-secret-0123",
        "github_webhook_secret": "github-webhook-secret-0123",
        "github_private_key": "-----BEGIN RSA PRIVATE KEY-----\\nMIIEkeymaterial\\n-----END",
        "gitlab_token": "glpat-gitlab-token-0123",
        "gitlab_webhook_secret": "gitlab-webhook-secret-0123",
    }
    async with harness(
        store,
        **secrets,
        github_app_id="1234",
        slack_client_id="123.456",
        agent_server_url="http://operator:agent-url-password@agent.test",
    ) as h:
        await failed_job(h.queue)
        await insert_webhook_callback(store, uuid.uuid4().hex)
        pages = [(await h.client.get("/admin/login")).text]
        await login(h.client)
        pages.append(await status_page(h))
    for page in pages:
        for name, value in [*secrets.items(), ("webhook", WEBHOOK_SECRET)]:
            assert value not in page, name
        assert "MIIEkeymaterial" not in page and "agent-url-password" not in page
    assert "http://agent.test" in pages[1]


def row(html: str, part: str) -> str:
    """The health table's row of `part` ("agent", "slack", "github", "gitlab"), with
    its text unescaped (details say "app's")."""
    match = re.search(rf'<tr id="health-{part}">(.*?)</tr>', html, re.S)
    assert match is not None, part
    return unescape(match.group(1))


async def test_outbound_checks_are_asked_at_most_once_a_minute(store: Store) -> None:
    checks = CountingChecks(
        [
            ok("slack", "bot @relay in Acme (T0ACME)"),
            skip("github", "not configured"),
            ok("gitlab", "token works as @relay-bot (user 9)"),
            skip("gitlab webhook", "no project named", "pass --gitlab-project"),
        ]
    )
    async with harness(
        store,
        checks=checks,
        slack_signing_secret="s" * 20,
        slack_bot_token="xoxb-1",
        gitlab_token="glpat-1",
        gitlab_webhook_secret="g" * 20,
    ) as h:
        await login(h.client)
        html = await status_page(h)
        await status_page(h)
        assert (checks.agent_calls, checks.platform_calls) == (1, 1)
        h.clock.now += 61
        await status_page(h)
        assert (checks.agent_calls, checks.platform_calls) == (2, 2)
    slack = row(html, "slack")
    assert '<span class="ok">valid</span>' in slack and "bot @relay in Acme (T0ACME)" in slack
    gitlab = row(html, "gitlab")
    assert '<span class="ok">valid</span>' in gitlab and "@relay-bot" in gitlab
    # A check that was not made (no project to look at) is not news on the page.
    assert "--gitlab-project" not in gitlab
    assert "not checked" not in row(html, "github")  # not configured: nothing to check
    assert re.search(r'<span class="ok">ok</span>\s*</td>', row(html, "agent"))


async def test_a_failing_check_shows_its_detail_and_its_fix(store: Store) -> None:
    checks = CountingChecks(
        [
            ok("slack workspace T1", "bot @relay in One (T1)"),
            fail("slack workspace T2", "token refused: slack auth.test: invalid_auth", "reinstall"),
            warn(
                "github app", "no app yet", "create one at https://relay.example.com/github/setup"
            ),
            skip("github installations", "the app check failed"),
        ],
        agent_results=[
            ok("agent-server", "http://agent.test answers"),
            fail("agent-server key", "refused X-Session-API-Key (HTTP 401)", "set the key"),
        ],
    )
    async with harness(
        store,
        checks=checks,
        slack_signing_secret="s" * 20,
        slack_client_id="123.456",
        slack_client_secret="c" * 20,
        secret_key="k" * 32,
        github_app_id=None,
    ) as h:
        await login(h.client)
        html = await status_page(h)
    slack = row(html, "slack")
    assert '<span class="bad">not valid</span>' in slack
    assert "slack workspace T1</span>: bot @relay in One (T1)" in slack
    assert "slack workspace T2</span>: token refused: slack auth.test: invalid_auth" in slack
    assert "Fix: reinstall" in slack
    assert "Fix:" not in slack.partition("slack workspace T2")[0]  # none for the one that works
    # github_mode is "setup" here (SECRET_KEY, no GITHUB_APP_ID): the page's app.
    github = row(html, "github")
    assert '<span class="unknown">needs attention</span>' in github
    assert "Fix: create one at https://relay.example.com/github/setup" in github
    assert "the app check failed" not in github  # a skip behind the failure says nothing
    agent = row(html, "agent")
    assert '<span class="bad">failing</span>' in agent
    assert "refused X-Session-API-Key (HTTP 401)" in agent and "Fix: set the key" in agent


async def test_failing_outbound_checks_leave_the_rest_of_the_page(store: Store) -> None:
    checks = CountingChecks(error=RuntimeError("boom with a token-123 inside"))
    async with harness(
        store, checks=checks, slack_signing_secret="s" * 20, slack_bot_token="x"
    ) as h:
        await login(h.client)
        html = await status_page(h)
    assert "The outbound checks could not run: they broke (RuntimeError)" in html
    assert "token-123" not in html
    assert 'id="jobs-failed"' in html
    assert "not checked" in row(html, "slack")


# --- wired into the app ------------------------------------------------------------------


SLACK_TOKEN = "xoxb-admin-page-slack-bot-token"
GITHUB_APP_ID = 515151


@pytest.fixture
def agent_api() -> Iterator[LoopbackAgentServer]:
    with LoopbackAgentServer(FakeAgentServer()) as server:
        yield server


@pytest.fixture(scope="module")
def github_keys() -> tuple[str, str]:
    """The fake app's private key, and another one GitHub does not know (making keys
    takes a moment: once per module)."""
    return generate_private_key_pem(), generate_private_key_pem()


@asynccontextmanager
async def whole_app(
    tmp_path: Path, agent_api: LoopbackAgentServer, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    configured = settings(
        database_url=f"sqlite:///{tmp_path / 'relay.db'}",
        secret_key="the-secret-key-of-this-relay-0123",
        **{"agent_server_url": agent_api.url, **overrides},
    )
    app: Starlette = create_app(configured, run_worker=False)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL
        ) as client:
            yield client


async def test_the_github_setup_page_needs_the_admin_session(
    tmp_path: Path, agent_api: LoopbackAgentServer
) -> None:
    async with whole_app(tmp_path, agent_api) as client:
        for path in ("/github/setup", "/github/setup/callback?code=abc&state=def"):
            response = await client.get(path)
            assert response.status_code == 303
            location = urlsplit(response.headers["location"])
            assert location.path == "/admin/login"
        first = await client.get("/github/setup?organization=acme")
        assert first.headers["location"] == "/admin/login?next=/github/setup%3Forganization%3Dacme"
        response = await login(client, next="/github/setup?organization=acme")
        assert response.headers["location"] == "/github/setup?organization=acme"
        page = await client.get("/github/setup?organization=acme")
        assert page.status_code == 200
        assert "Create the GitHub App in acme" in page.text
        assert (await client.get("/admin")).status_code == 200


async def test_without_api_token_the_github_setup_page_stays_open(
    tmp_path: Path, agent_api: LoopbackAgentServer
) -> None:
    async with whole_app(tmp_path, agent_api, api_token=None) as client:
        assert (await client.get("/github/setup")).status_code == 200
        assert (await client.get("/admin")).status_code == 404


async def test_a_flash_message_the_relay_did_not_sign_is_not_shown(store: Store) -> None:
    async with harness(store) as h:
        await login(h.client)
        h.client.cookies.set(FLASH_COOKIE, "UGF5IHRoZSBpbnZvaWNlIGF0IGV2aWwuZXhhbXBsZQ.forged")
        html = await status_page(h)
        assert 'id="flash"' not in html and "invoice" not in html


@dataclass
class Platforms:
    """Slack, GitHub and GitLab fakes on loopback, each knowing the relay's credentials."""

    slack: FakeSlack
    github: FakeGitHub
    gitlab: FakeGitlab
    github_key: str

    def settings(self) -> dict[str, Any]:
        return {
            "slack_api_url": self.slack.api_url,
            "slack_signing_secret": "admin-page-slack-signing-secret",
            "slack_bot_token": SLACK_TOKEN,
            "github_api_url": self.github.api_url,
            "github_url": self.github.web_url,
            "github_app_id": str(GITHUB_APP_ID),
            "github_private_key": self.github_key,
            "github_webhook_secret": "admin-page-github-webhook-secret",
            "gitlab_url": self.gitlab.url,
            "gitlab_token": GITLAB_BOT_TOKEN,
            "gitlab_webhook_secret": "admin-page-gitlab-webhook-secret",
        }


@pytest.fixture
def platforms(github_keys: tuple[str, str]) -> Iterator[Platforms]:
    with FakeSlack() as slack, FakeGitHub() as github, FakeGitlab() as gitlab:
        slack.add_team("T0ACME", bot_token=SLACK_TOKEN, bot_user_id="U0BOT", bot_id="B0BOT")
        github.add_app(GITHUB_APP_ID, "relay-admin", private_key_pem=github_keys[0])
        github.add_installation(81, GITHUB_APP_ID, account="acme", repositories=["acme/api"])
        gitlab.add_project(7, "acme/widgets")
        yield Platforms(slack, github, gitlab, github_keys[0])


async def test_the_page_shows_the_doctors_checks_of_working_credentials(
    tmp_path: Path, agent_api: LoopbackAgentServer, platforms: Platforms
) -> None:
    async with whole_app(tmp_path, agent_api, **platforms.settings()) as client:
        await login(client)
        response = await client.get("/admin")
    assert response.status_code == 200
    html = response.text
    assert re.search(r'<span class="ok">ok</span>\s*</td>', row(html, "agent"))
    slack = row(html, "slack")
    assert '<span class="ok">valid</span>' in slack
    assert "bot @bot-u0bot in Workspace T0ACME (T0ACME)" in slack
    github = row(html, "github")
    assert '<span class="ok">valid</span>' in github
    assert f"relay-admin (id {GITHUB_APP_ID}, from settings)" in github
    assert "1 installation(s): acme" in github
    gitlab = row(html, "gitlab")
    assert '<span class="ok">valid</span>' in gitlab and "token works as @openhands" in gitlab
    assert "Fix:" not in html
    assert [call.method for call in platforms.slack.calls()] == ["auth.test"]


async def test_credentials_a_platform_refuses_show_as_not_valid_with_the_fix(
    tmp_path: Path,
    agent_api: LoopbackAgentServer,
    platforms: Platforms,
    github_keys: tuple[str, str],
) -> None:
    platforms.slack.revoke_token(SLACK_TOKEN)  # auth.test answers invalid_auth
    refused = {
        **platforms.settings(),
        # A key GitHub never saw: GET /app answers 401 to the JWT it signs.
        "github_private_key": github_keys[1],
        "gitlab_token": "glpat-revoked-admin-page-token",
        "agent_server_api_key": "an-agent-key-nobody-accepts",
    }
    async with whole_app(tmp_path, agent_api, **refused) as client:
        await login(client)
        html = (await client.get("/admin")).text

    slack = row(html, "slack")
    assert '<span class="bad">not valid</span>' in slack
    assert "token refused: slack auth.test: invalid_auth" in slack
    assert "Fix: set SLACK_BOT_TOKEN to the app's Bot User OAuth Token" in slack
    github = row(html, "github")
    assert '<span class="bad">not valid</span>' in github
    assert "GET /app refused the app's JWT (HTTP 401)" in github
    assert "Fix: check GITHUB_APP_ID and GITHUB_PRIVATE_KEY(_PATH)" in github
    gitlab = row(html, "gitlab")
    assert '<span class="bad">not valid</span>' in gitlab
    assert "GET /user refused GITLAB_TOKEN (HTTP 401)" in gitlab
    assert "Fix: set GITLAB_TOKEN to a valid access token with scope api" in gitlab
    agent = row(html, "agent")
    assert '<span class="bad">failing</span>' in agent
    assert "refused X-Session-API-Key (HTTP 401)" in agent
    assert "Fix: set AGENT_SERVER_API_KEY" in agent
    for name, value in refused.items():
        if name.endswith(("token", "secret", "key")):
            assert value not in html, name
    for secret in (API_TOKEN, github_keys[0], "the-secret-key-of-this-relay-0123"):
        assert secret not in html
    assert "BEGIN" not in html


async def test_an_agent_server_that_does_not_answer_is_failing(
    tmp_path: Path, agent_api: LoopbackAgentServer
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with_password = closed.replace("//", "//operator:agent-url-password@")
    async with whole_app(tmp_path, agent_api, agent_server_url=with_password) as client:
        await login(client)
        html = (await client.get("/admin")).text
    assert "agent-url-password" not in html
    agent = row(html, "agent")
    assert '<span class="bad">failing</span>' in agent
    assert f"{closed} does not answer (ConnectError)" in agent
    assert "Fix: start the agent-server, or fix AGENT_SERVER_URL" in agent
