"""GitHub as a conversation's repository host (processors.hosts.RepositoryHost).

Everything goes through GithubApi: the relay's own installation token for reading
the repository and opening pull requests, the app's JWT where GitHub asks for it
(finding the installation, minting), and the agent's own token only to revoke it.
The agent's tokens are installation tokens narrowed to one repository and to
`contents` (plus the `metadata` every token has): they can push and fetch, and
cannot comment, merge, or reach another repository of the installation.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, urlencode

from agent.checkout import ChangeRequest, RepositoryPlan, WorkspaceRequest
from bots.github.api import GithubApi, GithubNotConfigured, GithubRefused, github_time
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


class GithubHost:
    name = "github"
    token_name = "GITHUB_TOKEN"
    # GitHub's documented user name for git over HTTPS with an installation token.
    git_username = "x-access-token"
    change_request_label = "PR"
    change_request_sign = "#"
    closes_keyword = "Fixes"

    def __init__(self, api: GithubApi) -> None:
        self.api = api
        # The bot's commit identity by app slug: asked once per process.
        self._identities: dict[str, tuple[str, str]] = {}
        self._listing = RepositoryListing(self._load_repositories)

    async def locate(self, repository: str) -> str | None:
        if _split(repository) is None:
            return None
        try:
            installation = await self.api.call_as_app("GET", f"/repos/{repository}/installation")
        except GithubNotConfigured:
            return None
        except GithubRefused as exc:
            if exc.status == 404:
                return None
            raise
        return str(installation["id"])

    async def list_repositories(self) -> list[str]:
        return await self._listing.get()

    async def _load_repositories(self) -> list[str]:
        """What every active installation of the app was given."""
        try:
            installations = await self.api.app_installations()
        except GithubNotConfigured:
            return []
        names: list[str] = []
        for installation in installations:
            if installation.get("suspended_at"):
                continue
            try:
                async for repo in self.api.items(
                    int(installation["id"]), "/installation/repositories", key="repositories"
                ):
                    names.append(str(repo["full_name"]))
            except GithubRefused as exc:
                # One installation that refuses (being removed) hides only its own.
                log.warning(
                    "github: installation %s lists no repositories: %s", installation["id"], exc
                )
        return names

    async def plan(self, request: WorkspaceRequest, locator: str) -> RepositoryPlan:
        repository = request.repository
        installation = _installation(locator)
        try:
            repo = await self.api.call(installation, "GET", f"/repos/{repository}")
        except GithubRefused as exc:
            if exc.status in (403, 404):
                raise CheckoutRefused(
                    f"GitHub does not let the app read {repository}: it is not installed"
                    f" there, or the repository is gone (HTTP {exc.status})."
                ) from None
            raise
        bot_name, bot_email = await self._identity(installation)
        plan = RepositoryPlan(
            clone_url=str(repo["clone_url"]),
            default_branch=str(repo["default_branch"]),
            web_url=repo.get("html_url"),
            bot_name=bot_name,
            bot_email=bot_email,
        )
        number = request.change_request_number
        if number is None:
            return plan
        pull = await self._open_pull(installation, repository, number)
        head = pull.get("head") or {}
        head_repo = head.get("repo") or {}
        plan.from_fork = str(head_repo.get("full_name") or "").lower() != repository.lower()
        plan.head_branch = str(head.get("ref") or "") or None
        plan.head_ref = f"refs/pull/{number}/head"
        plan.change_request = _change_request(pull)
        return plan

    async def _open_pull(self, installation: int, repository: str, number: int) -> Any:
        try:
            pull = await self.api.call(installation, "GET", f"/repos/{repository}/pulls/{number}")
        except GithubRefused as exc:
            if exc.status == 404:
                raise CheckoutRefused(f"{repository} has no pull request #{number}.") from None
            raise
        if pull.get("state") != "open":
            done = "merged" if pull.get("merged") or pull.get("merged_at") else "closed"
            raise CheckoutRefused(
                f"Pull request {repository}#{number} is {done}, so there is no branch to work on."
            )
        return pull

    async def _identity(self, installation: int) -> tuple[str, str]:
        """The app's bot as a commit author: `{slug}[bot]` with GitHub's noreply address
        `{user id}+{slug}[bot]@users.noreply.github.com`, which links its commits to it."""
        slug = await self.api.app_slug()
        if not slug:
            raise PermanentJobError("github: the app has no slug, so its bot cannot be named")
        if slug not in self._identities:
            login = f"{slug}[bot]"
            user = await self.api.call(installation, "GET", f"/users/{quote(login)}")
            email = f"{user['id']}+{login}@users.noreply.github.com"
            self._identities[slug] = (login, email)
        return self._identities[slug]

    async def mint_token(self, workspace: Workspace, *, write: bool) -> MintedToken:
        owner_and_name = _split(workspace.repository)
        if owner_and_name is None:
            raise PermanentJobError(f"github: {workspace.repository!r} is not owner/name")
        contents = "write" if write else "read"
        body = {
            "repositories": [owner_and_name[1]],
            "permissions": {"contents": contents, "metadata": "read"},
        }
        url = f"/app/installations/{_installation(workspace.locator)}/access_tokens"
        try:
            minted = await self.api.call_as_app("POST", url, data=body)
        except GithubRefused as exc:
            if exc.status in (403, 404, 422):
                # 422: the installation lacks the permission or the repository; 404:
                # the app was uninstalled.
                access = "read and write" if write else "read"
                reason = (exc.detail or f"HTTP {exc.status}").rstrip(".")
                raise CheckoutRefused(
                    f"GitHub refused the app a token for {workspace.repository}: {reason}."
                    f" The app needs Contents: {access} there."
                ) from None
            raise
        expires_at = github_time(str(minted["expires_at"]))
        log.info(
            "github %s: token minted for conversation %s (contents %s)",
            workspace.repository,
            workspace.conversation_id,
            contents,
        )
        return MintedToken(value=str(minted["token"]), expires_at=expires_at)

    async def revoke_token(self, workspace: Workspace, token: str) -> None:
        try:
            await self.api.call_with_token(token, "DELETE", "/installation/token")
        except GithubRefused as exc:
            # 401: the token expired or was revoked already; either way it is dead.
            if exc.status != 401:
                raise
        log.info(
            "github %s: token of conversation %s revoked",
            workspace.repository,
            workspace.conversation_id,
        )

    async def branch_head(self, workspace: Workspace, branch: str) -> str | None:
        url = f"/repos/{workspace.repository}/branches/{quote(branch, safe='/')}"
        found = await self._get_or_none(workspace, url)
        return None if found is None else str(found["commit"]["sha"])

    async def compare(self, workspace: Workspace, base: str, head: str) -> Comparison | None:
        basehead = f"{quote(base, safe='/')}...{quote(head, safe='/')}"
        url = f"/repos/{workspace.repository}/compare/{basehead}"
        found = await self._get_or_none(workspace, url)
        if found is None:
            return None
        # GitHub lists at most 300 files and the first 250 commits of a comparison:
        # enough for a count in a reply, and the head commit is asked for when cut off.
        files = found.get("files") or []
        commits = found.get("commits") or []
        ahead = int(found.get("ahead_by") or 0)
        if commits and len(commits) >= ahead:
            head_sha = str(commits[-1]["sha"])
        elif ahead == 0:
            # Nothing ahead: head is where base's history holds it.
            head_sha = str(found["merge_base_commit"]["sha"])
        else:
            commit = await self._call(
                workspace, "GET", f"/repos/{workspace.repository}/commits/{quote(head, safe='/')}"
            )
            head_sha = str(commit["sha"])
        return Comparison(
            commits=ahead,
            additions=sum(int(f.get("additions") or 0) for f in files),
            deletions=sum(int(f.get("deletions") or 0) for f in files),
            files=len(files),
            head_sha=head_sha,
        )

    async def find_change_request(self, workspace: Workspace, branch: str) -> ChangeRequest | None:
        owner = workspace.repository.split("/")[0]
        query = urlencode({"head": f"{owner}:{branch}", "state": "open"})
        pulls = await self._call(workspace, "GET", f"/repos/{workspace.repository}/pulls?{query}")
        return _change_request(pulls[0]) if pulls else None

    async def open_change_request(
        self, workspace: Workspace, proposal: ChangeRequestProposal
    ) -> ChangeRequest:
        pull = await self._create_pull(
            workspace,
            branch=proposal.branch,
            title=proposal.title,
            body=proposal.body,
            draft=proposal.draft,
        )
        if proposal.reviewer:
            await self._request_review(workspace, pull.number, proposal.reviewer)
        return pull

    async def _create_pull(
        self, workspace: Workspace, *, branch: str, title: str, body: str, draft: bool
    ) -> ChangeRequest:
        url = f"/repos/{workspace.repository}/pulls"
        data = {
            "title": title,
            "head": branch,
            "base": workspace.base_branch,
            "body": body,
            "draft": draft,
        }
        try:
            created = await self._call(workspace, "POST", url, data=data)
        except GithubRefused as exc:
            if exc.status != 422:
                raise
            # "A pull request already exists for owner:branch": an earlier attempt of
            # this job opened it (its answer lost); that one is the answer.
            existing = await self.find_change_request(workspace, branch)
            if existing is not None:
                return existing
            if draft and "draft" in exc.detail.lower():
                # Draft pull requests need a paid plan on private repositories.
                log.info("github %s: drafts refused; opening a ready PR", workspace.repository)
                created = await self._call(workspace, "POST", url, data={**data, "draft": False})
            else:
                raise
        pull = _change_request(created)
        log.info("github %s: opened PR #%s from %s", workspace.repository, pull.number, branch)
        return pull

    async def _request_review(self, workspace: Workspace, number: int, reviewer: str) -> None:
        """Ask `reviewer` to review; a courtesy, so a refusal is logged and ignored."""
        url = f"/repos/{workspace.repository}/pulls/{number}/requested_reviewers"
        try:
            await self._call(workspace, "POST", url, data={"reviewers": [reviewer]})
        except GithubRefused as exc:
            # 422: the reviewer is the author, or not a collaborator of the repository.
            level = logging.INFO if exc.status == 422 else logging.WARNING
            log.log(
                level, "github %s#%s: no review requested: %s", workspace.repository, number, exc
            )
        except RetryableJobError as exc:
            log.warning("github %s#%s: no review requested: %s", workspace.repository, number, exc)

    async def _call(self, workspace: Workspace, method: str, url: str, *, data: Any = None) -> Any:
        return await self.api.call(_installation(workspace.locator), method, url, data=data)

    async def _get_or_none(self, workspace: Workspace, url: str) -> Any | None:
        try:
            return await self._call(workspace, "GET", url)
        except GithubRefused as exc:
            if exc.status == 404:
                return None
            raise


def _installation(locator: str) -> int:
    try:
        return int(locator)
    except ValueError:
        raise PermanentJobError(f"github: {locator!r} is not an installation id") from None


def _split(repository: str) -> tuple[str, str] | None:
    owner, slash, name = repository.partition("/")
    if not slash or not owner or not name or "/" in name:
        return None
    return owner, name


def _change_request(pull: Any) -> ChangeRequest:
    return ChangeRequest(
        number=int(pull["number"]),
        url=str(pull["html_url"]),
        title=str(pull.get("title") or ""),
        draft=bool(pull.get("draft")),
    )
