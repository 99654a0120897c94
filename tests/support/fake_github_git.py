"""The fake GitHub's repository hosting: real repositories, served to git.

`RepositoryHosting` is a part of `FakeGitHub` (tests/support/fake_github.py), kept
apart because it is a subject of its own: it uses the fake's state (repositories,
issues, tokens, all under its lock) and adds

- bare repositories (tests/support/git_http.py's `GitRepositories`), one per
  repository made by `create_repository` or `fork_repository`, served over git's smart
  HTTP at ``{url}/{owner}/{name}.git`` (the API's ``clone_url``);
- git's authentication as this fake wants it: HTTP Basic with user
  ``x-access-token`` and an access token minted for THAT repository (narrowed with
  ``repositories`` at minting: stricter than GitHub, which takes any token of the
  installation, so a test notices a checkout given the relay's own token), usable
  (not expired, not revoked); a push also needs ``contents: write``. No or refused
  credentials: 401 with a Basic challenge; a token for another repository: 404
  "Repository not found."; a read-only token pushing: 403, as GitHub answers. Every
  git request is recorded (`git_requests`);
- pull requests from a branch of the same repository or from a fork, with
  ``refs/pull/{n}/head`` kept in the base repository (set up by `add_pull_request`,
  kept current after every push);
- a hold on a repository's fetches (`hold_fetches`): its git-upload-pack requests
  wait until the test releases them, so that a test can act while a clone is under
  way (kill the relay that started it, say).

The REST routes about the code are `CodeRoutes` (tests/support/fake_github_pulls.py).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tests.support.fake_github_records import Issue, allows
from tests.support.git_http import (
    GitRepositories,
    basic_auth,
    challenge,
    refuse,
    serve_git,
    split_git_path,
    wants_push,
)
from tests.support.git_repos import run_git

if TYPE_CHECKING:
    from tests.support.fake_github import FakeGitHub

# The user name GitHub documents for git over HTTPS with an installation token.
GIT_USERNAME = "x-access-token"
GIT_REALM = "GitHub"
# How long a held fetch waits at most for its release: a test that forgets to
# release does not leave the fake's threads hanging for ever.
HOLD_LIMIT_SECONDS = 300.0


@dataclass(frozen=True)
class GitRequest:
    """One request git made to a repository (refused ones included)."""

    repository: str  # as requested: "owner/name"
    push: bool  # receive-pack (or its advertisement); False: a fetch or clone
    user: str | None  # the Basic user name sent, if any
    token: str | None  # the Basic password sent, if any
    status: int  # 200 when served; 401, 403 or 404 when refused
    at: float = field(default_factory=time.time)  # when it arrived (epoch seconds)


class FetchHold:
    """Held git fetches of one repository (`RepositoryHosting.hold_fetches`): each
    authorised git-upload-pack request waits, after its access check and before git
    answers it, until `release`."""

    def __init__(self) -> None:
        self._arrived = threading.Event()
        self._released = threading.Event()

    @property
    def arrived(self) -> bool:
        """Whether a fetch has reached the hold (and waits, unless released)."""
        return self._arrived.is_set()

    def release(self) -> None:
        """Let held fetches, and every later one, through."""
        self._released.set()

    def wait_for_release(self) -> None:
        """Called by the fake for each held fetch."""
        self._arrived.set()
        self._released.wait(HOLD_LIMIT_SECONDS)


class RepositoryHosting:
    """The fake's repositories and pull requests (mixed into FakeGitHub)."""

    def _init_hosting(self: FakeGitHub, git_root: Path | None) -> None:
        self._git_root = git_root
        self._owned_git_root: Path | None = None
        self._git: GitRepositories | None = None
        self._backed: set[str] = set()  # repository keys with a bare repository
        self._default_branches: dict[str, str] = {}
        self._forks: dict[str, str] = {}  # fork key -> canonical source
        self._no_drafts: set[str] = set()
        self._git_requests: list[GitRequest] = []
        self._holds: dict[str, FetchHold] = {}  # repository key -> its hold

    # -- setup ----------------------------------------------------------------
    @property
    def git(self: FakeGitHub) -> GitRepositories:
        """The bare repositories (to read a file a push brought: `git.file_at`)."""
        with self._lock:
            return self._repositories()

    def create_repository(
        self: FakeGitHub,
        repository: str,
        files: dict[str, str] | None = None,
        *,
        default_branch: str = "main",
    ) -> str:
        """A repository backed by a bare git repository whose default branch has one
        commit of ``files``; returns its clone URL."""
        with self._lock:
            repo = self._register_repo(repository)
            self._repositories().create(
                repo, files or {"README.md": f"# {repo}\n"}, default_branch=default_branch
            )
            self._backed.add(repo.lower())
            self._default_branches[repo.lower()] = default_branch
            return self.clone_url(repo)

    def adopt_repository(self: FakeGitHub, repository: str, *, default_branch: str = "main") -> str:
        """Serve a bare repository already made under ``git_root`` (e.g. a large one
        built by `make_large_repository`); returns its clone URL."""
        with self._lock:
            repo = self._register_repo(repository)
            if not self._repositories().path(repo).is_dir():
                raise KeyError(f"no bare repository for {repo} under the git root")
            self._backed.add(repo.lower())
            self._default_branches[repo.lower()] = default_branch
            return self.clone_url(repo)

    def fork_repository(self: FakeGitHub, source: str, fork: str) -> str:
        """``fork`` ("owner/name"), a copy of ``source`` with all its branches; returns
        its clone URL."""
        with self._lock:
            original = self._backed_repo(source)
            repo = self._register_repo(fork)
            self._repositories().fork(original, repo)
            self._backed.add(repo.lower())
            self._default_branches[repo.lower()] = self._default_branches[original.lower()]
            self._forks[repo.lower()] = original
            return self.clone_url(repo)

    def commit(
        self: FakeGitHub,
        repository: str,
        branch: str,
        files: dict[str, str],
        message: str = "Change",
        *,
        parent_branch: str | None = None,
    ) -> str:
        """Commit ``files`` on ``branch`` (made from ``parent_branch``, default the
        default branch, when new); returns the sha."""
        with self._lock:
            repo = self._backed_repo(repository)
            sha = self._repositories().commit(
                repo, branch, files, message, parent_branch=parent_branch
            )
        self._sync_pull_refs(repo)
        return sha

    def add_pull_request(
        self: FakeGitHub,
        repository: str,
        number: int,
        *,
        head: str,
        title: str,
        user: str,
        body: str = "",
        base: str | None = None,
        head_repository: str | None = None,
        draft: bool = False,
    ) -> dict[str, Any]:
        """A pull request of branch ``head`` (of ``head_repository``, a fork, when given)
        into ``base`` (default: the default branch), with ``refs/pull/{number}/head``
        set in the repository; returns it as ``GET .../pulls/{n}`` shows it."""
        with self._lock:
            repo = self._backed_repo(repository)
            head_repo = self._backed_repo(head_repository) if head_repository else None
            if self._repositories().branch_head(head_repo or repo, head) is None:
                raise KeyError(f"no branch {head!r} in {head_repo or repo}")
            issue = self._new_issue(repo, int(number), title=title, body=body, user=user)
            issue.head, issue.head_repo, issue.draft = head, head_repo, draft
            issue.base = base or self._default_branches[repo.lower()]
            self._set_pull_ref(issue)
            return self._render_pull(issue)

    def close_pull_request(
        self: FakeGitHub, repository: str, number: int, *, merged: bool = False
    ) -> None:
        with self._lock:
            issue = self._issue(repository, number)
            issue.state, issue.merged = "closed", merged

    def disallow_drafts(self: FakeGitHub, repository: str) -> None:
        """Refuse draft pull requests here (422), as GitHub does on private repositories
        of plans without them."""
        with self._lock:
            self._no_drafts.add(self._register_repo(repository).lower())

    def hold_fetches(self: FakeGitHub, repository: str) -> FetchHold:
        """Hold the repository's fetches (clones included) from now on until the
        returned hold is released."""
        with self._lock:
            hold = self._holds[self._backed_repo(repository).lower()] = FetchHold()
            return hold

    def clone_url(self: FakeGitHub, repository: str) -> str:
        return f"{self.url}/{repository}.git"

    def _repositories(self: FakeGitHub) -> GitRepositories:
        if self._git is None:
            root = self._git_root
            if root is None:
                root = self._owned_git_root = Path(tempfile.mkdtemp(prefix="fake-github-git-"))
            self._git = GitRepositories(root)
        return self._git

    def _remove_repositories(self: FakeGitHub) -> None:
        if self._owned_git_root is not None:
            shutil.rmtree(self._owned_git_root, ignore_errors=True)
            self._owned_git_root = self._git = None

    def _backed_repo(self: FakeGitHub, repository: str) -> str:
        key = repository.lower()
        if key not in self._backed:
            raise KeyError(f"{repository} has no git repository; create_repository first")
        return self._repos[key]

    # -- inspection -----------------------------------------------------------
    def git_requests(self: FakeGitHub, repository: str | None = None) -> list[GitRequest]:
        with self._lock:
            return [
                r
                for r in self._git_requests
                if repository is None or r.repository.lower() == repository.lower()
            ]

    def pull_requests(self: FakeGitHub, repository: str) -> list[dict[str, Any]]:
        """The repository's pull requests, open or not, by number."""
        with self._lock:
            key = repository.lower()
            found = [i for (r, _), i in sorted(self._issues.items()) if r == key and i.head]
            return [self._render_pull(i) for i in found]

    def branch_head(self: FakeGitHub, repository: str, branch: str) -> str | None:
        with self._lock:
            return self._repositories().branch_head(self._backed_repo(repository), branch)

    # -- git over HTTP --------------------------------------------------------
    def _serve_git(self: FakeGitHub, handler: BaseHTTPRequestHandler) -> None:
        """Answer a smart-HTTP request of git (before its body is read)."""
        split = split_git_path(handler.path)
        assert split is not None
        name, path_info = split
        query = urlsplit(handler.path).query
        push = wants_push(path_info, query)
        credentials = basic_auth(handler.headers.get("Authorization"))
        user, token = credentials if credentials is not None else (None, None)
        with self._lock:
            status, message, repo = self._git_access(name, user, token, push)
            self._git_requests.append(GitRequest(name, push, user, token, status))
            directory = self._repositories().path(repo) if repo is not None else None
            hold = self._holds.get(repo.lower()) if repo is not None else None
        if status == 401:
            challenge(handler, GIT_REALM)
        elif status != 200 or directory is None:
            refuse(handler, status, message)
        else:
            if hold is not None and path_info == "/git-upload-pack":
                hold.wait_for_release()  # outside the lock: the fake keeps answering meanwhile
            serve_git(handler, directory, path_info, query, remote_user=GIT_USERNAME)
            if push and repo is not None:
                self._sync_pull_refs(repo)

    def _git_access(
        self: FakeGitHub, name: str, user: str | None, password: str | None, push: bool
    ) -> tuple[int, str, str | None]:
        """(status, message, canonical repository) of a git request."""
        token = self._tokens.get(password or "")
        if user != GIT_USERNAME or token is None or not token.usable():
            return 401, "Invalid username or token.", None
        installation = self._installations.get(token.installation_id)
        key = name.lower()
        allowed = [r for r in token.repositories or [] if r.lower() == key]
        if installation is None or not allowed or key not in self._backed:
            return 404, "Repository not found.", None
        if push and not allows(token.permissions, "contents", "write"):
            bot = self._bot(installation)
            return 403, f"Permission to {allowed[0]}.git denied to {bot}.", None
        return 200, "", allowed[0]

    def _sync_pull_refs(self: FakeGitHub, repo: str) -> None:
        """Point ``refs/pull/{n}/head`` of open pull requests whose head is in ``repo``
        at their branch, as GitHub does after a push."""
        with self._lock:
            for issue in self._issues.values():
                if issue.head and issue.state == "open":
                    if (issue.head_repo or issue.repo).lower() == repo.lower():
                        self._set_pull_ref(issue)

    def _set_pull_ref(self: FakeGitHub, issue: Issue) -> None:
        git = self._repositories()
        assert issue.head is not None
        ref = f"refs/pull/{issue.number}/head"
        if issue.head_repo is None:
            sha = git.branch_head(issue.repo, issue.head)
            if sha is not None:
                git.set_ref(issue.repo, ref, sha)
            return
        # A fork's commits are not in the base repository until fetched into it.
        source = str(git.path(issue.head_repo))
        _git(git, issue.repo, "fetch", "--quiet", source, f"+refs/heads/{issue.head}:{ref}")


def _git(git: GitRepositories, repo: str, *args: str) -> str:
    return run_git("--git-dir", str(git.path(repo)), *args)
