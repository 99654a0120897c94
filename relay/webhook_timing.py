"""How long the webhook routes take to answer (agent_relay_webhook_ack_seconds).

A pure ASGI middleware in front of the app: for the platforms' webhook routes (and
the agent-server's event intake) it times the request from its arrival to the end of
its response; every other request passes through untouched.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from bots.github import PLATFORM as GITHUB
from bots.github.inbound import EVENTS_PATH as GITHUB_EVENTS_PATH
from bots.gitlab import PLATFORM as GITLAB
from bots.gitlab.inbound import EVENTS_PATH as GITLAB_EVENTS_PATH
from bots.slack import PLATFORM as SLACK
from bots.slack.inbound import EVENTS_PATH as SLACK_EVENTS_PATH
from db.metrics import WEBHOOK_ACK_SECONDS

AGENT_EVENTS_PREFIX = "/agent/events/"
_ROUTES = {SLACK_EVENTS_PATH: SLACK, GITHUB_EVENTS_PATH: GITHUB, GITLAB_EVENTS_PATH: GITLAB}


def platform_of(path: str) -> str | None:
    """The label of a timed route, None for routes not timed."""
    platform = _ROUTES.get(path)
    if platform is None and path.startswith(AGENT_EVENTS_PREFIX):
        return "agent"
    return platform


class WebhookTiming:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Children made once: .labels() looks its child up under a lock on every call.
        self._histograms = {
            platform: WEBHOOK_ACK_SECONDS.labels(platform=platform)
            for platform in (*_ROUTES.values(), "agent")
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        platform = platform_of(scope["path"]) if scope["type"] == "http" else None
        if platform is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self._histograms[platform].observe(time.perf_counter() - started)
