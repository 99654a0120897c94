"""An in-memory RepositoryHost (processors.hosts) that records what it was asked:
for the workspace logic's own tests. The platforms' hosts are tested against the
fake GitHub and GitLab servers instead."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from agent.checkout import ChangeRequest, RepositoryPlan, WorkspaceRequest
from db.workspaces import Workspace
from processors.hosts import ChangeRequestProposal, CheckoutRefused, Comparison, MintedToken


@dataclass
class RecordingHost:
    name: str = "github"
    token_name: str = "GITHUB_TOKEN"
    git_username: str = "x-access-token"
    change_request_label: str = "PR"
    change_request_sign: str = "#"
    closes_keyword: str = "Fixes"
    # repository -> locator, for the repositories this host can serve.
    repositories: dict[str, str] = field(default_factory=lambda: {"acme/api": "42"})
    token_lifetime: float = 3600.0
    clock: float = 1_000_000.0
    # branch -> (commits ahead of the base, head sha)
    branches: dict[str, tuple[int, str]] = field(default_factory=dict)
    minted: list[tuple[str, bool]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    opened: list[dict[str, object]] = field(default_factory=list)
    requests: dict[str, ChangeRequest] = field(default_factory=dict)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(34))

    async def locate(self, repository: str) -> str | None:
        return self.repositories.get(repository)

    async def list_repositories(self) -> list[str]:
        return sorted(self.repositories)

    async def plan(self, request: WorkspaceRequest, locator: str) -> RepositoryPlan:
        if request.repository not in self.repositories:
            raise CheckoutRefused(f"{request.repository} is gone")
        return RepositoryPlan(
            clone_url=f"https://git.example.test/{request.repository}.git",
            default_branch="main",
            bot_name="acme-bot[bot]",
            bot_email="7+acme-bot[bot]@users.noreply.github.com",
        )

    async def mint_token(self, workspace: Workspace, *, write: bool) -> MintedToken:
        value = f"ghs_token{len(self.minted) + 1}"
        self.minted.append((value, write))
        return MintedToken(value, self.clock + self.token_lifetime)

    async def revoke_token(self, workspace: Workspace, token: str) -> None:
        self.revoked.append(token)

    def push(self, branch: str, commits: int) -> None:
        """The agent pushed `commits` more commits to `branch`."""
        ahead, _ = self.branches.get(branch, (0, ""))
        self.branches[branch] = (ahead + commits, f"sha{ahead + commits}")

    async def branch_head(self, workspace: Workspace, branch: str) -> str | None:
        return self.branches[branch][1] if branch in self.branches else None

    async def compare(self, workspace: Workspace, base: str, head: str) -> Comparison | None:
        if head not in self.branches:
            return None
        ahead, sha = self.branches[head]
        since = int(base[3:]) if base.startswith("sha") else 0
        commits = ahead - since
        return Comparison(
            commits, additions=10 * commits, deletions=commits, files=commits, head_sha=sha
        )

    async def find_change_request(self, workspace: Workspace, branch: str) -> ChangeRequest | None:
        return self.requests.get(branch)

    async def open_change_request(
        self, workspace: Workspace, proposal: ChangeRequestProposal
    ) -> ChangeRequest:
        number = next(self._numbers)
        request = ChangeRequest(
            number=number,
            url=f"https://git.example.test/{workspace.repository}/pull/{number}",
            title=proposal.title,
            draft=proposal.draft,
        )
        self.opened.append(dict(proposal.__dict__))
        self.requests[proposal.branch] = request
        return request
