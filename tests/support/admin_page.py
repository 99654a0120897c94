"""The operator status page (/admin) as its tests drive it: its routes under httpx's
ASGI transport over a real Store, with outbound checks that answer what a test sets
(and count the calls); or the whole app built with create_app, its agent-server and
platform lines made by relay/doctor against the fakes of tests/support on loopback.
Test modules import the fixtures they use, so that pytest finds them."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from bots.checks import CheckResult, ok, skip
from bots.github.links import GithubLinks
from bots.gitlab.links import GitlabLinks
from bots.slack.links import SlackLinks
from bots.turns import Turn, record_turn
from bots.web_session import LoginThrottle
from db.job_kinds import JobStatus
from db.jobs import JobQueue
from db.store import Store
from relay.admin.page import AdminPage
from relay.app import create_app
from relay.settings import Settings
from tests.support.deployment import allow_pushes
from tests.support.fake_agent_api import AGENT_API_KEY, FakeAgentServer, LoopbackAgentServer
from tests.support.fake_github import FakeGitHub, generate_private_key_pem
from tests.support.fake_gitlab import BOT_TOKEN as GITLAB_BOT_TOKEN
from tests.support.fake_gitlab import FakeGitlab
from tests.support.fake_slack import FakeSlack
from tests.support.job_kinds import AnyPayload, kind_named

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
    """Outbound checks (relay.admin.outbound.OutboundChecks) that answer what the test
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
        links=[
            SlackLinks(),
            GithubLinks(configured.github_url),
            GitlabLinks(configured.gitlab_url),
        ],
        checks=checks,
        clock=clock,
        throttle=throttle,
    )
    app = Starlette(routes=page.routes())
    base_url = configured.public_url or "http://relay.test"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as http:
        yield Harness(http, store, queue, clock, checks, configured)


async def login(
    client: httpx.AsyncClient, token: str = API_TOKEN, then: str | None = None
) -> httpx.Response:
    """Open the login form and send it, as a browser does (`then`: the form's `next`)."""
    page = await client.get("/admin/login", params={"next": then} if then is not None else None)
    assert page.status_code == 200, page.text
    fields = {"csrf": csrf_of(page.text), "token": token}
    if then is not None:
        fields["next"] = then
    return await client.post("/admin/login", data=fields)


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match is not None, html
    return match.group(1)


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name (the whole header, attributes included)."""
    return {header.partition("=")[0]: header for header in response.headers.get_list("set-cookie")}


async def failed_job(queue: JobQueue, error: str = ERROR) -> int:
    job_id = await queue.enqueue(kind_named("callback.reply"), AnyPayload(callback_id=7))
    assert job_id is not None
    job = await queue.claim()
    assert job is not None and job.id == job_id
    assert await queue.fail(job, error, permanent=True) == JobStatus.FAILED
    return job_id


async def status_page(h: Harness) -> str:
    response = await h.client.get("/admin")
    assert response.status_code == 200, response.text
    return response.text


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


def row(html: str, part: str) -> str:
    """The health table's row of `part` ("agent", "slack", "github", "gitlab"), with
    its text unescaped (details say "app's")."""
    match = re.search(rf'<tr id="health-{part}">(.*?)</tr>', html, re.S)
    assert match is not None, part
    return unescape(match.group(1))


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
        allow_pushes(github, GITHUB_APP_ID)
        github.add_installation(81, GITHUB_APP_ID, account="acme", repositories=["acme/api"])
        gitlab.add_project(7, "acme/widgets")
        yield Platforms(slack, github, gitlab, github_keys[0])
