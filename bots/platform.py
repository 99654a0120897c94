"""What a platform package gives the composition root, and what it is given.

Each platform (bots/slack, bots/github, bots/gitlab) exposes one `PlatformPackage`
in its `platform` module. The composition root (relay) keeps them in one list and,
for each, registers its processor kinds and builds its `Platform` from the settings:
the routes it serves, the job handlers it runs, the API client its processors
deliver through, and what it does at start-up. A disabled platform is built too:
it serves what it serves without credentials (GitHub's setup page) and runs nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from bots.checks import PlatformCheck
from bots.features import Feature, Risk
from bots.links import ThreadLinks
from bots.redelivery import Redelivery
from bots.turns import Turns
from db.job_kinds import JobHandler
from db.jobs import JobQueue
from db.secrets import SecretBox
from db.store import Store
from processors.base import ReplyingProcessor
from processors.hosts import RepositoryHost

# The status page's login, which pages a platform serves to people (GitHub's setup
# page) put in front of themselves: None lets the request through, a Response
# (the login page, a redirect) answers instead.
AdminGate = Callable[[Request], Response | None]


@dataclass(frozen=True)
class Shared:
    """What the composition root builds once and every platform may use."""

    store: Store
    queue: JobQueue
    # The outbound client of the platforms' REST APIs (agent.http.new_http_client).
    http: httpx.AsyncClient
    secrets: SecretBox
    conversation_url: Callable[[str], str | None]
    # The platforms that host repositories, by name: filled in by the composition
    # root once every platform is built (a Slack mention may name a GitHub repository).
    hosts: dict[str, RepositoryHost] = field(default_factory=dict)

    @property
    def turns(self) -> Turns:
        return Turns(self.store, self.queue, self.conversation_url, self.hosts)


class InboundConnection(Protocol):
    """A connection to a platform that its events arrive on (bots.slack.socket_mode)."""

    name: str

    async def start(self) -> None:
        """Connect in the background; start-up does not wait for the platform."""
        ...

    async def connected(self) -> bool: ...

    async def stop(self) -> None: ...


@dataclass
class Platform:
    """One platform, built from the settings."""

    name: str
    enabled: bool
    # Its credentials' check (`agent-relay doctor`, the status page); a disabled
    # platform's says "not configured".
    check: PlatformCheck
    # How the status page shows its threads (label and link of each thread key).
    links: ThreadLinks
    # The client its processors deliver through (ProcessorContext.platforms[name]);
    # None when the platform is disabled.
    api: object | None = None
    job_handlers: Mapping[str, JobHandler] = field(default_factory=dict)
    # Routes, given the status page's login for pages people open.
    routes: Callable[[AdminGate], Sequence[BaseRoute]] = lambda gate: ()
    # Work done once when the process starts (e.g. parsing a key); failures are logged.
    start: Callable[[], Awaitable[None]] | None = None
    # What it does for workspaces when it hosts repositories (GitHub, GitLab); None
    # when it hosts none or is disabled.
    host: RepositoryHost | None = None
    # Asks the platform again for webhooks it failed to deliver (bots.redelivery):
    # periodically (its job handlers are among `job_handlers`; processes that run
    # workers schedule it) and on demand (`agent-relay <platform> redeliver`).
    redelivery: Redelivery | None = None
    # A connection `serve` holds open to receive the platform's events (Slack's
    # Socket Mode), instead of a webhook route.
    connection: InboundConnection | None = None

    def add_redelivery(self, redelivery: Redelivery) -> None:
        """Ask the platform again for what it failed to deliver: periodically (its job
        runs with the platform's) and on demand (`agent-relay <platform> redeliver`)."""
        self.job_handlers = {**self.job_handlers, **redelivery.job_handlers()}
        self.redelivery = redelivery


@dataclass(frozen=True)
class PlatformPackage:
    """A platform as the composition root lists it."""

    name: str
    # What the settings turn on of it, and the combinations of them that look wrong
    # (start-up's lines, doctor's, the status page's row).
    feature: Callable[[Any], Feature]
    risks: Callable[[Any], list[Risk]]
    # Registered by the composition root, enabled or not: stored callbacks of a
    # platform switched off still load (their replies then fail visibly).
    processor_kinds: tuple[type[ReplyingProcessor], ...]
    # Builds the platform from the settings (the relay's Settings, read through the
    # package's own Protocol of the fields it needs) and the shared parts.
    build: Callable[[Any, Shared], Platform]
