"""RepositoryHost: what a platform that hosts repositories (GitHub, GitLab) does for
a conversation's workspace.

The workspace logic (processors.workspace) is written once against this Protocol;
each hosting platform implements it in its package (bots/github/host.py,
bots/gitlab/host.py) and hands it to the composition root (bots.platform.Platform.host).
Failures follow the job queue's rules: RetryableJobError when trying again may help,
PermanentJobError when it will not; `CheckoutRefused` says, in words fit for the
thread, why a repository cannot be checked out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from agent.checkout import (
    DEFAULT_BRANCH_PREFIX,
    ChangeRequest,
    RepositoryPlan,
    WorkspaceRequest,
)
from db.job_kinds import PermanentJobError
from db.workspaces import Workspace


class CheckoutRefused(PermanentJobError):
    """The repository cannot be checked out (gone, access refused, a request that is
    not open); the message is shown in the thread as it is."""


@dataclass(frozen=True)
class MintedToken:
    value: str
    # Epoch seconds; None for a token that does not expire (a GitLab access token).
    expires_at: float | None


@dataclass(frozen=True)
class Comparison:
    """A branch against another: what `head` has that `base` has not."""

    commits: int
    additions: int
    deletions: int
    files: int
    head_sha: str


@dataclass(frozen=True)
class WorkspacePolicy:
    """The settings every workspace follows (built by the composition root)."""

    # PULL_REQUESTS: "draft", "ready" or "off" (read-only checkouts, no requests).
    pull_requests: str = "draft"
    branch_prefix: str = DEFAULT_BRANCH_PREFIX
    # AGENT_RELAY_URL (default PUBLIC_URL): where the agent-server reaches the
    # credentials endpoint; None: no credentials can be served, so no checkout.
    relay_url: str | None = None

    @property
    def pushes(self) -> bool:
        return self.pull_requests != "off"


@dataclass(frozen=True)
class ChangeRequestProposal:
    """A pull (merge) request the relay asks a host to open."""

    branch: str
    title: str
    body: str
    draft: bool
    # A login of the host's, or None.
    reviewer: str | None


class RepositoryHost(Protocol):
    # The platform's name ("github", "gitlab").
    name: str
    # The secret the agent's terminal knows the token by ("GITHUB_TOKEN").
    token_name: str
    # The user name git presents with the token over HTTPS.
    git_username: str
    # How people call a change request here ("PR", "MR"), the sign before its number
    # ("#34" on GitHub, "!34" on GitLab), and what closes an issue.
    change_request_label: str
    change_request_sign: str
    closes_keyword: str

    async def locate(self, repository: str) -> str | None:
        """The host's handle of `repository` (installation id, project id) when this
        platform can serve it, else None."""

    async def list_repositories(self) -> list[str]:
        """Every repository this platform can serve ("owner/name", a GitLab project's
        full path), sorted, for people to pick from; cached briefly (RepositoryListing)."""

    async def plan(self, request: WorkspaceRequest, locator: str) -> RepositoryPlan:
        """What to clone and which branch; CheckoutRefused when it cannot be."""

    async def mint_token(self, workspace: Workspace, *, write: bool) -> MintedToken:
        """A token that reaches only this repository: contents write (or read)."""

    async def revoke_token(self, workspace: Workspace, token: str) -> None:
        """End a minted token's life now (a no-op where tokens cannot be revoked)."""

    async def branch_head(self, workspace: Workspace, branch: str) -> str | None:
        """The commit `branch` points at on the host; None when it does not exist."""

    async def compare(self, workspace: Workspace, base: str, head: str) -> Comparison | None:
        """`head` against `base` (branch names or commits); None when `head` is missing."""

    async def find_change_request(self, workspace: Workspace, branch: str) -> ChangeRequest | None:
        """The open pull or merge request whose head is `branch`, if any."""

    async def open_change_request(
        self, workspace: Workspace, proposal: ChangeRequestProposal
    ) -> ChangeRequest:
        """Open a pull or merge request of `proposal.branch` into the base branch, with
        `proposal.reviewer` (a login of this host) asked to review when it can be; an
        open one of that branch is returned instead of a second."""


# How long a host's list of repositories is reused: a picker shown a minute after a
# repository was added to an installation may miss it, and nobody waits for a long
# list twice in a row.
LISTING_SECONDS = 60.0


class RepositoryListing:
    """A host's list of repositories, loaded at most once per LISTING_SECONDS (and
    once for callers that ask together)."""

    def __init__(
        self,
        load: Callable[[], Awaitable[list[str]]],
        *,
        seconds: float = LISTING_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._seconds = seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        self._cached: tuple[list[str], float] | None = None

    async def get(self) -> list[str]:
        async with self._lock:
            cached = self._cached
            if cached is None or self._clock() >= cached[1]:
                names = sorted(set(await self._load()), key=str.lower)
                cached = self._cached = (names, self._clock() + self._seconds)
            return list(cached[0])
