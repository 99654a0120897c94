"""GitLab as a repository host (processors.hosts.RepositoryHost): which project a
conversation checks out, the token its agent pushes with, and the merge request its
pushed work becomes.

Every REST call goes through the bot's GitlabApi (GITLAB_TOKEN), so its failures mean
what they mean for any GitLab call (bots.gitlab.api.gitlab_errors). The agent's own
token (GITLAB_AGENT_TOKEN, else GITLAB_TOKEN) is asked only who it is: its user
authors the agent's commits.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import httpx

from agent.checkout import ChangeRequest, RepositoryPlan, WorkspaceRequest
from bots.gitlab import PLATFORM
from bots.gitlab.api import GitlabApi, private_commit_email, project_ref
from db.job_kinds import PermanentJobError, RetryableJobError
from db.workspaces import Workspace
from processors.hosts import (
    ChangeRequestProposal,
    CheckoutRefused,
    Comparison,
    MintedToken,
    RepositoryListing,
)

log = logging.getLogger(__name__)

# What GitLab expects before a merge request's title to mark it as a draft.
DRAFT_PREFIX = "Draft: "


class GitlabHost:
    """Projects of one GitLab instance, as the bot user reaches them."""

    name = PLATFORM
    token_name = "GITLAB_TOKEN"
    # GitLab takes any user name with an access token over HTTPS; "oauth2" is the one
    # its documentation uses.
    git_username = "oauth2"
    change_request_label = "MR"
    change_request_sign = "!"
    closes_keyword = "Closes"

    def __init__(
        self, api: GitlabApi, http: httpx.AsyncClient, gitlab_url: str, agent_token: str
    ) -> None:
        self._api = api
        self._agent_api = GitlabApi(http, gitlab_url, agent_token)
        self._agent_token = agent_token
        self._gitlab_url = gitlab_url
        # The agent token's user as commits name it; asked once per process.
        self._identity: tuple[str, str] | None = None
        self._listing = RepositoryListing(self._load_projects)

    def __repr__(self) -> str:
        return f"GitlabHost({self._gitlab_url!r})"

    async def locate(self, repository: str) -> str | None:
        path = f"/projects/{project_ref(repository)}"
        project = await self._api.find(f"GET {path}", path)
        if not isinstance(project, dict) or "id" not in project:
            return None
        return str(project["id"])

    async def list_repositories(self) -> list[str]:
        return await self._listing.get()

    async def _load_projects(self) -> list[str]:
        """The projects the bot user is a member of (not archived ones)."""
        params: dict[str, str | bool] = {
            "membership": "true",
            "archived": "false",
            "simple": "true",
            "per_page": "100",
        }
        projects = await self._api.items("GET /projects", "/projects", params)
        return [str(p["path_with_namespace"]) for p in projects if p.get("path_with_namespace")]

    async def plan(self, request: WorkspaceRequest, locator: str) -> RepositoryPlan:
        path = f"/projects/{project_ref(locator)}"
        project = await self._api.find(f"GET {path}", path)
        if not isinstance(project, dict):
            raise CheckoutRefused(
                f"The bot cannot read the GitLab project {request.repository}:"
                " it is gone, or the bot is not a member of it."
            )
        default_branch = project.get("default_branch")
        if not default_branch:
            raise CheckoutRefused(
                f"The GitLab project {request.repository} has no commits yet,"
                " so there is nothing to check out."
            )
        bot_name, bot_email = await self._bot_identity()
        fields: dict[str, Any] = {
            "clone_url": str(project["http_url_to_repo"]),
            "default_branch": str(default_branch),
            "web_url": project.get("web_url"),
            "bot_name": bot_name,
            "bot_email": bot_email,
        }
        if request.change_request_number is not None:
            fields |= await self._merge_request_plan(
                locator, request.repository, request.change_request_number
            )
        return RepositoryPlan(**fields)

    async def _merge_request_plan(self, locator: str, repository: str, iid: int) -> dict[str, Any]:
        """The plan's fields for a merge request: its branch, whose it is, itself."""
        path = f"/projects/{project_ref(locator)}/merge_requests/{iid}"
        merge_request = await self._api.find(f"GET {path}", path)
        if not isinstance(merge_request, dict):
            raise CheckoutRefused(f"The bot cannot read merge request !{iid} of {repository}.")
        state = merge_request.get("state")
        if state != "opened":
            raise CheckoutRefused(
                f"Merge request !{iid} of {repository} is {state}, not open,"
                " so there is no branch to work on."
            )
        return {
            "from_fork": merge_request.get("source_project_id")
            != merge_request.get("target_project_id"),
            "head_branch": merge_request.get("source_branch"),
            # GitLab keeps every merge request's head, forks' included, under this
            # ref of the target project.
            "head_ref": f"refs/merge-requests/{iid}/head",
            "change_request": _change_request(merge_request),
        }

    async def _bot_identity(self) -> tuple[str, str]:
        """(name, email) of the agent token's user: who the agent's commits are by."""
        if self._identity is None:
            try:
                user = await self._agent_api.get("GET /user", "/user")
            except PermanentJobError:
                # 401 or 403: a revoked or expired token, which no retry brings back.
                raise CheckoutRefused(
                    "GitLab refuses the token the agent would push with"
                    " (GITLAB_AGENT_TOKEN, else GITLAB_TOKEN): an administrator must renew it."
                ) from None
            username = str(user["username"])
            email = user.get("commit_email") or private_commit_email(
                self._gitlab_url, int(user["id"]), username
            )
            self._identity = (str(user.get("name") or username), str(email))
        return self._identity

    async def mint_token(self, workspace: Workspace, *, write: bool) -> MintedToken:
        # GitLab has no call that narrows a token to one project or to read-only, or
        # that mints one from a personal token: the agent gets the configured token as
        # it is. README ("What the agent can do in your repository") advises a project
        # access token (role Developer, scope write_repository) as GITLAB_AGENT_TOKEN,
        # so the agent reaches only that project's repository.
        return MintedToken(self._agent_token, expires_at=None)

    async def revoke_token(self, workspace: Workspace, token: str) -> None:
        # The token is the one configured (GITLAB_AGENT_TOKEN or GITLAB_TOKEN), used
        # by every conversation and by the relay itself: revoking it would stop them.
        return None

    async def branch_head(self, workspace: Workspace, branch: str) -> str | None:
        path = f"{_project(workspace)}/repository/branches/{quote(branch, safe='')}"
        found = await self._api.find(f"GET {path}", path)
        if not isinstance(found, dict):
            return None
        return str(found["commit"]["id"])

    async def compare(self, workspace: Workspace, base: str, head: str) -> Comparison | None:
        path = f"{_project(workspace)}/repository/compare"
        # straight=false: from the merge base of the two, as `git diff base...head`.
        params: dict[str, str | bool] = {"from": base, "to": head, "straight": "false"}
        found = await self._api.find(f"GET {path}", path, params)
        if not isinstance(found, dict):
            return None
        commits = [commit for commit in found.get("commits") or [] if isinstance(commit, dict)]
        diffs = [diff for diff in found.get("diffs") or [] if isinstance(diff, dict)]
        head_commit = found.get("commit") or (commits[-1] if commits else None)
        head_sha = head_commit["id"] if isinstance(head_commit, dict) else None
        if head_sha is None:
            # Nothing new on `head`: GitLab names no commit, so ask for head's own.
            head_sha = await self._commit_sha(workspace, head)
            if head_sha is None:
                return None
        additions = deletions = 0
        for diff in diffs:
            added, deleted = _count_lines(str(diff.get("diff") or ""))
            additions, deletions = additions + added, deletions + deleted
        return Comparison(len(commits), additions, deletions, len(diffs), str(head_sha))

    async def _commit_sha(self, workspace: Workspace, ref: str) -> str | None:
        path = f"{_project(workspace)}/repository/commits/{quote(ref, safe='')}"
        commit = await self._api.find(f"GET {path}", path)
        return str(commit["id"]) if isinstance(commit, dict) else None

    async def find_change_request(self, workspace: Workspace, branch: str) -> ChangeRequest | None:
        path = f"{_project(workspace)}/merge_requests"
        params: dict[str, str | bool] = {"source_branch": branch, "state": "opened"}
        found = await self._api.get(f"GET {path}", path, params)
        for merge_request in found or []:
            # A fork's merge request into this project may use the same branch name.
            if isinstance(merge_request, dict) and str(
                merge_request.get("source_project_id")
            ) == str(workspace.locator):
                return _change_request(merge_request)
        return None

    async def open_change_request(
        self, workspace: Workspace, proposal: ChangeRequestProposal
    ) -> ChangeRequest:
        branch, title, reviewer = proposal.branch, proposal.title, proposal.reviewer
        if proposal.draft and not title.startswith(DRAFT_PREFIX):
            title = DRAFT_PREFIX + title
        fields: dict[str, Any] = {
            "source_branch": branch,
            "target_branch": workspace.base_branch,
            "title": title,
            "description": proposal.body,
        }
        reviewer_id = await self._user_id(reviewer) if reviewer else None
        if reviewer_id is not None:
            fields["reviewer_ids"] = [reviewer_id]
        created = await self._api.create(f"{_project(workspace)}/merge_requests", fields)
        if isinstance(created, dict):
            return _change_request(created)
        # 409: an open merge request of this branch exists (a retried job opened it).
        existing = await self.find_change_request(workspace, branch)
        if existing is None:
            raise RetryableJobError(
                f"gitlab: a merge request of {branch} exists, yet none was found open"
            )
        return existing

    async def _user_id(self, username: str) -> int | None:
        """The id of the user named `username`, None when GitLab knows no such user."""
        users = await self._api.get("GET /users", "/users", {"username": username})
        for user in users or []:
            if isinstance(user, dict) and str(user.get("username")).lower() == username.lower():
                return int(user["id"])
        log.info("No GitLab user %s to ask for a review", username)
        return None


def _project(workspace: Workspace) -> str:
    return f"/projects/{project_ref(workspace.locator)}"


def _change_request(merge_request: dict[str, Any]) -> ChangeRequest:
    """The merge request as replies name it: a draft's title without GitLab's marker,
    which `draft` says already."""
    draft = bool(merge_request.get("draft") or merge_request.get("work_in_progress"))
    title = str(merge_request.get("title") or "")
    return ChangeRequest(
        number=int(merge_request["iid"]),
        url=str(merge_request["web_url"]),
        title=title.removeprefix(DRAFT_PREFIX) if draft else title,
        draft=draft,
    )


def _count_lines(diff: str) -> tuple[int, int]:
    """(added, deleted) lines of one file's diff as GitLab gives it: hunks, each from
    its `@@` line (anything before the first hunk is a header, `+++`/`---` included).
    A diff GitLab left out for its size ("") counts nothing."""
    added = deleted = 0
    in_hunk = False
    for line in diff.splitlines():
        if line.startswith("@@"):
            in_hunk = True
        elif not in_hunk:
            continue
        elif line.startswith("+"):
            added += 1
        elif line.startswith("-"):
            deleted += 1
    return added, deleted
