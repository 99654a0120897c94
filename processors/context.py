"""ProcessorContext: what a processor may use when its conversation changes state,
built once by the composition root (relay)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import httpx

from agent.client import AgentClient
from db.job_kinds import PermanentJobError
from db.jobs import JobQueue
from db.store import Store
from processors.credentials import Credentials
from processors.hosts import RepositoryHost, WorkspacePolicy

ApiT = TypeVar("ApiT")


class SummaryMode(StrEnum):
    """How the answer is taken from a stopped agent (processors.summary)."""

    INSTRUCTION = "instruction"
    ASK_AGENT = "ask_agent"
    FINAL_RESPONSE = "final_response"


@dataclass(frozen=True)
class ProcessorContext:
    """What processors may use; built once by the composition root (relay)."""

    store: Store
    queue: JobQueue
    agent: AgentClient
    http: httpx.AsyncClient
    summary_mode: SummaryMode = SummaryMode.INSTRUCTION
    conversation_url_template: str | None = None
    # How long an approval request waits for an answer before it is rejected
    # (CONFIRMATION_TIMEOUT, processors.approvals).
    confirmation_timeout: float = 86400.0
    # The platforms' API clients by platform name ("slack": bots.slack.api.SlackApi),
    # for the processors that deliver there; absent when the platform is disabled.
    platforms: Mapping[str, Any] = field(default_factory=dict)
    # The client for URLs API users choose (webhook receivers): guarded against
    # private networks unless WEBHOOK_ALLOW_PRIVATE_NETWORKS (processors/receiver_guard.py).
    # None: `http`.
    receiver_http: httpx.AsyncClient | None = None
    # The platforms that host repositories, by platform name, for workspaces
    # (processors.workspace); absent when the platform is disabled.
    hosts: Mapping[str, RepositoryHost] = field(default_factory=dict)
    workspace_policy: WorkspacePolicy = field(default_factory=WorkspacePolicy)
    # Mints, serves and revokes the tokens checkouts push with; None without hosts.
    credentials: Credentials | None = None

    def platform(self, name: str, client: type[ApiT], title: str) -> ApiT:
        """The API client of platform `name` (`title` as people write it), which a
        processor delivers through; a reply for a platform this process has not
        configured fails for good."""
        api = self.platforms.get(name)
        if not isinstance(api, client):
            raise PermanentJobError(f"{title} is not configured in this process")
        return api

    def receiver_client(self) -> httpx.AsyncClient:
        return self.http if self.receiver_http is None else self.receiver_http

    def conversation_url(self, conversation_id: str) -> str | None:
        if not self.conversation_url_template:
            return None
        return self.conversation_url_template.format(conversation_id=conversation_id)
