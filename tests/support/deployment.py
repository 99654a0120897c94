"""A deployment's peers for doctor's checks: fake Slack, GitHub, GitLab and agent-server,
a PUBLIC_URL that answers /healthz, and the settings of a deployment that works
against them. Shared by doctor's tests (tests/relay/doctor, tests/bots/*/test_checks.py),
which import the fixtures so that pytest finds them."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from bots.gitlab.api import GitlabApi
from bots.gitlab.setup import install_webhook
from db.migrations import migrate
from db.store import Store
from tests.support.fake_agent_api import AGENT_API_KEY, FakeAgentServer, LoopbackAgentServer
from tests.support.fake_github import FakeGitHub, generate_private_key_pem
from tests.support.fake_gitlab import BOT_TOKEN, FakeGitlab
from tests.support.fake_slack import FakeSlack
from tests.support.loopback import LoopbackServer

SLACK_TOKEN = "xoxb-doctor-test-bot-token"
SLACK_SIGNING_SECRET = "doctor-slack-signing-secret"
GITHUB_APP_ID = 424242
GITHUB_WEBHOOK_SECRET = "doctor-github-webhook-secret"
GITLAB_WEBHOOK_SECRET = "doctor-gitlab-webhook-secret"
GITLAB_PROJECT = "acme/widgets"
API_TOKEN = "doctor-api-token-0123456789"
SECRET_KEY = "doctor-secret-key-0123456789abcdef"


class HealthzServer(LoopbackServer):
    """agent-relay's GET /healthz as PUBLIC_URL would reach it: 200, or `status`."""

    thread_name = "fake-public-url"

    def __init__(self, status: int = 200) -> None:
        super().__init__()
        self.status = status

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                status = server.status if self.path == "/healthz" else 404
                payload = b'{"status": "ok"}' if status == 200 else b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


class SilentPeer:
    """A port that accepts connections (the kernel does) and never answers."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def close(self) -> None:
        self._socket.close()


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class Peers:
    slack: FakeSlack
    github: FakeGitHub
    github_key: str
    gitlab: FakeGitlab
    agent: FakeAgentServer
    agent_url: str
    public: HealthzServer

    def environment(self, database_url: str) -> dict[str, str]:
        """Every setting of a deployment that works, pointing at the fakes."""
        return {
            "DATABASE_URL": database_url,
            "PUBLIC_URL": self.public.url,
            "API_TOKEN": API_TOKEN,
            "SECRET_KEY": SECRET_KEY,
            "AGENT_SERVER_URL": self.agent_url,
            "AGENT_SERVER_API_KEY": AGENT_API_KEY,
            "SLACK_API_URL": self.slack.api_url,
            "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
            "SLACK_BOT_TOKEN": SLACK_TOKEN,
            "GITHUB_API_URL": self.github.api_url,
            "GITHUB_URL": self.github.web_url,
            "GITHUB_APP_ID": str(GITHUB_APP_ID),
            "GITHUB_PRIVATE_KEY": self.github_key,
            "GITHUB_WEBHOOK_SECRET": GITHUB_WEBHOOK_SECRET,
            "GITLAB_URL": self.gitlab.url,
            "GITLAB_TOKEN": BOT_TOKEN,
            "GITLAB_WEBHOOK_SECRET": GITLAB_WEBHOOK_SECRET,
        }


def allow_pushes(github: FakeGitHub, app_id: int) -> None:
    """Give the app `contents: write`, as manifests/github-app.json asks for (the fake
    registers apps with the permissions of the manifest before, and has no setter)."""
    github._apps[app_id].permissions["contents"] = "write"


@pytest.fixture(scope="module")
def github_key() -> str:
    """The fake app's private key (making one takes a moment: once per module)."""
    return generate_private_key_pem()


@pytest.fixture
def peers(github_key: str) -> Iterator[Peers]:
    agent = FakeAgentServer()
    with (
        FakeSlack() as slack,
        FakeGitHub() as github,
        FakeGitlab() as gitlab,
        LoopbackAgentServer(agent) as agent_server,
        HealthzServer() as public,
    ):
        slack.add_team("T0ACME", bot_token=SLACK_TOKEN, bot_user_id="U0BOT", bot_id="B0BOT")
        key = github.add_app(GITHUB_APP_ID, "relay-doctor", private_key_pem=github_key)
        allow_pushes(github, GITHUB_APP_ID)
        github.add_installation(71, GITHUB_APP_ID, account="acme", repositories=["acme/api"])
        gitlab.add_project(7, GITLAB_PROJECT)
        yield Peers(slack, github, key, gitlab, agent, agent_server.url, public)


@pytest.fixture
async def database_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    async with Store(url) as store:
        await migrate(store)
    return url


async def install_gitlab_hook(peers: Peers) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        await install_webhook(
            GitlabApi(http, peers.gitlab.url, BOT_TOKEN),
            GITLAB_PROJECT,
            public_url=peers.public.url,
            secret=GITLAB_WEBHOOK_SECRET,
        )
