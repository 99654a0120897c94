"""The fake GitHub's REST routes about code: branches, commits, comparisons and pull
requests, answered from the real repositories of `RepositoryHosting`
(tests/support/fake_github_git.py).

`CodeRoutes` is a part of `FakeGitHub` (tests/support/fake_github.py); its handlers run
under the fake's lock, as all its routes do. Pull requests share the issues' numbers
and records (`Issue` with a `head`). Like GitHub, creating one refuses (422) a head
or base branch that does not exist, a head without new commits, a second open pull
request of the same head and base, and a draft where `disallow_drafts` was called;
asking a review of the author or of someone who is not a collaborator is a 422 too.
Creating pull requests and asking reviews need the token's ``pull_requests: write``
(403 "Resource not accessible by integration" otherwise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from tests.support.fake_github_records import (
    Answer,
    Failure,
    Installation,
    Issue,
    Request,
    allows,
    validation_failed,
)
from tests.support.git_http import GitRepositories
from tests.support.git_repos import run_git

if TYPE_CHECKING:
    from tests.support.fake_github import FakeGitHub

# GitHub lists at most this many commits and files in a comparison.
COMPARE_MAX_COMMITS = 250
COMPARE_MAX_FILES = 300
NOT_ACCESSIBLE = "Resource not accessible by integration"


class CodeRoutes:
    """Branches, comparisons and pull requests (mixed into FakeGitHub)."""

    # -- routes ---------------------------------------------------------------
    def _code_routes(self: FakeGitHub, repo: str) -> list[tuple[str, str, str, Any]]:
        pull = rf"{repo}/pulls/(?P<number>\d+)"
        return [
            ("GET", rf"{repo}/branches/(?P<branch>.+)", "token", self._get_branch),
            ("GET", rf"{repo}/commits/(?P<ref>.+)", "token", self._get_commit),
            ("GET", rf"{repo}/compare/(?P<basehead>.+)", "token", self._compare),
            ("GET", rf"{repo}/pulls", "token", self._list_pulls),
            ("POST", rf"{repo}/pulls", "token", self._create_pull),
            ("POST", rf"{pull}/requested_reviewers", "token", self._request_reviewers),
        ]

    def _get_branch(
        self: FakeGitHub, request: Request, installation: Installation, repo: str, branch: str
    ) -> Answer:
        branch = unquote(branch)
        sha = (
            self._repositories().branch_head(repo, branch) if repo.lower() in self._backed else None
        )
        if sha is None:
            raise Failure(404, "Branch not found")
        return Answer(
            200,
            {
                "name": branch,
                "commit": self._render_commit(repo, sha),
                "protected": False,
                "_links": {
                    "self": f"{self.api_url}/repos/{repo}/branches/{branch}",
                    "html": f"{self.web_url}/{repo}/tree/{branch}",
                },
            },
        )

    def _get_commit(
        self: FakeGitHub, request: Request, installation: Installation, repo: str, ref: str
    ) -> Answer:
        sha = self._resolve(repo, unquote(ref))
        if sha is None:
            raise Failure(422, f"No commit found for SHA: {unquote(ref)}")
        return Answer(200, self._render_commit(repo, sha))

    def _compare(
        self: FakeGitHub, request: Request, installation: Installation, repo: str, basehead: str
    ) -> Answer:
        base, dots, head = unquote(basehead).partition("...")
        if not dots:
            base, _, head = unquote(basehead).partition("..")
        base_sha, head_sha = self._resolve(repo, base), self._resolve(repo, head)
        if base_sha is None or head_sha is None:
            raise Failure(404, "Not Found")
        git = self._repositories()
        try:
            merge_base = _git(git, repo, "merge-base", base_sha, head_sha)
        except RuntimeError:
            raise Failure(404, f"No common ancestor between {base} and {head}.") from None
        ahead = git.commits(repo, base_sha, head_sha)
        behind = int(_git(git, repo, "rev-list", "--count", f"{head_sha}..{base_sha}"))
        status = (
            ("identical" if not behind else "behind")
            if not ahead
            else ("ahead" if not behind else "diverged")
        )
        html = f"{self.web_url}/{repo}/compare/{base}...{head}"
        return Answer(
            200,
            {
                "url": f"{self.api_url}/repos/{repo}/compare/{base}...{head}",
                "html_url": html,
                "base_commit": self._render_commit(repo, base_sha),
                "merge_base_commit": self._render_commit(repo, merge_base),
                "status": status,
                "ahead_by": len(ahead),
                "behind_by": behind,
                "total_commits": len(ahead),
                "commits": [
                    self._render_commit(repo, c["sha"]) for c in ahead[:COMPARE_MAX_COMMITS]
                ],
                "files": self._changed_files(repo, merge_base, head_sha)[:COMPARE_MAX_FILES],
            },
        )

    def _list_pulls(
        self: FakeGitHub, request: Request, installation: Installation, repo: str
    ) -> Answer:
        state = request.query.get("state", "open")
        head, base = request.query.get("head"), request.query.get("base")
        found = [
            issue
            for (key, _), issue in self._issues.items()
            if key == repo.lower()
            and issue.head is not None
            and state in ("all", issue.state)
            and (head is None or self._head_label(issue).lower() == head.lower())
            and (base is None or issue.base == base)
        ]
        # GitHub's default order: newest first.
        found.sort(key=lambda issue: issue.number, reverse=True)
        return self._paginate(request, [self._render_pull(issue) for issue in found])

    def _create_pull(
        self: FakeGitHub, request: Request, installation: Installation, repo: str
    ) -> Answer:
        self._require_permission(request, "pull_requests", "write")
        fields = request.body if isinstance(request.body, dict) else {}
        for name in ("title", "head", "base"):
            if not isinstance(fields.get(name), str) or not fields[name]:
                raise validation_failed(resource="PullRequest", code="missing_field", field=name)
        head_repo, branch = self._head_of(repo, str(fields["head"]))
        git = self._repositories()
        if repo.lower() not in self._backed or git.branch_head(head_repo or repo, branch) is None:
            raise validation_failed(resource="PullRequest", code="invalid", field="head")
        base = str(fields["base"])
        if git.branch_head(repo, base) is None:
            raise validation_failed(resource="PullRequest", code="invalid", field="base")
        label = f"{(head_repo or repo).split('/')[0]}:{branch}"
        for issue in self._issues.values():
            if issue.repo == repo and issue.head and issue.state == "open":
                if self._head_label(issue).lower() == label.lower() and issue.base == base:
                    raise validation_failed(
                        resource="PullRequest",
                        code="custom",
                        message=f"A pull request already exists for {label}.",
                    )
        if head_repo is None and not git.commits(repo, base, branch):
            raise validation_failed(
                resource="PullRequest",
                code="custom",
                message=f"No commits between {base} and {branch}",
            )
        draft = bool(fields.get("draft"))
        if draft and repo.lower() in self._no_drafts:
            raise validation_failed(
                resource="PullRequest",
                code="custom",
                message="Draft pull requests are not supported in this repository.",
            )
        number = 1 + max((n for (key, n) in self._issues if key == repo.lower()), default=0)
        body = fields.get("body")
        issue = self._new_issue(
            repo,
            number,
            title=str(fields["title"]),
            body=str(body or ""),
            user=self._bot(installation),
        )
        issue.head, issue.head_repo, issue.base, issue.draft = branch, head_repo, base, draft
        self._set_pull_ref(issue)
        answer = Answer(201, self._render_pull(issue))
        answer.headers["Location"] = answer.body["url"]
        return answer

    def _request_reviewers(
        self: FakeGitHub, request: Request, installation: Installation, repo: str, number: str
    ) -> Answer:
        self._require_permission(request, "pull_requests", "write")
        issue = self._issue(repo, number)
        if issue.head is None:
            raise Failure(404, "Not Found")
        wanted = request.body.get("reviewers") if isinstance(request.body, dict) else None
        if not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted):
            raise validation_failed(resource="PullRequest", code="invalid", field="reviewers")
        for login in wanted:
            if login.lower() == issue.user.lower():
                raise Failure(422, "Review cannot be requested from pull request author.")
            if self._association(repo, login) == "NONE":
                raise Failure(
                    422,
                    "Reviews may only be requested from collaborators. One or more of the users"
                    f" or teams you specified is not a collaborator of the {repo} repository.",
                )
        for login in wanted:
            if login.lower() not in (r.lower() for r in issue.requested_reviewers):
                issue.requested_reviewers.append(login)
        return Answer(201, self._render_pull(issue))

    # -- helpers (the caller holds the lock) ----------------------------------
    def _require_permission(self: FakeGitHub, request: Request, name: str, level: str) -> None:
        if not allows(self._tokens[request.credential or ""].permissions, name, level):
            raise Failure(403, NOT_ACCESSIBLE)

    def _head_of(self: FakeGitHub, repo: str, head: str) -> tuple[str | None, str]:
        """(fork or None, branch) of a pull request's ``head``: "branch" or "owner:branch"."""
        owner, colon, branch = head.partition(":")
        if not colon or owner.lower() == repo.split("/")[0].lower():
            return None, branch if colon else head
        for key, source in self._forks.items():
            if source == repo and key.split("/")[0] == owner.lower():
                return self._repos[key], branch
        raise validation_failed(resource="PullRequest", code="invalid", field="head")

    def _head_label(self, issue: Issue) -> str:
        return f"{(issue.head_repo or issue.repo).split('/')[0]}:{issue.head}"

    def _resolve(self: FakeGitHub, repo: str, ref: str) -> str | None:
        """The commit a branch name or sha means in ``repo``, if any."""
        if repo.lower() not in self._backed or not ref or ref.startswith("-"):
            return None
        try:
            return _git(
                self._repositories(), repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"
            )
        except RuntimeError:
            return None

    def _render_commit(self: FakeGitHub, repo: str, sha: str) -> dict[str, Any]:
        fields = _git(
            self._repositories(), repo, "show", "-s", "--format=%an%x1f%ae%x1f%aI%x1f%B", sha
        )
        name, email, date, message = fields.split("\x1f", 3)
        return {
            "sha": sha,
            "node_id": f"C_fake{sha[:12]}",
            "url": f"{self.api_url}/repos/{repo}/commits/{sha}",
            "html_url": f"{self.web_url}/{repo}/commit/{sha}",
            "commit": {
                "message": message.strip(),
                "author": {"name": name, "email": email, "date": date},
                "committer": {"name": name, "email": email, "date": date},
            },
        }

    def _changed_files(self: FakeGitHub, repo: str, base: str, head: str) -> list[dict[str, Any]]:
        git = self._repositories()
        statuses = {
            path: status
            for status, path in (
                line.split("\t", 1)
                for line in _git(
                    git, repo, "diff", "--no-renames", "--name-status", base, head
                ).splitlines()
            )
        }
        files = []
        for line in _git(git, repo, "diff", "--no-renames", "--numstat", base, head).splitlines():
            added, deleted, path = line.split("\t", 2)
            additions = int(added) if added != "-" else 0
            deletions = int(deleted) if deleted != "-" else 0
            kind = {"A": "added", "D": "removed"}.get(statuses.get(path, "M")[:1], "modified")
            files.append(
                {
                    "filename": path,
                    "status": kind,
                    "additions": additions,
                    "deletions": deletions,
                    "changes": additions + deletions,
                }
            )
        return files

    def _pull_sha(self: FakeGitHub, issue: Issue, side: str) -> str | None:
        """The commit of a pull request's "head" or "base" when its repository is real:
        its branch, or for a head branch gone, what refs/pull/{n}/head kept."""
        if issue.repo.lower() not in self._backed:
            return None
        git = self._repositories()
        if side == "base":
            return git.branch_head(issue.repo, issue.base or "")
        head_repo = issue.head_repo or issue.repo
        found = None
        if head_repo.lower() in self._backed:
            found = git.branch_head(head_repo, issue.head or "")
        return found or self._resolve(issue.repo, f"refs/pull/{issue.number}/head")


def _git(git: GitRepositories, repo: str, *args: str) -> str:
    return run_git("--git-dir", str(git.path(repo)), *args)
