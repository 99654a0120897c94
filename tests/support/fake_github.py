"""A fake GitHub (REST API, the App-manifest web pages, and repositories served to
git) for end-to-end tests.

`FakeGitHub` serves, on 127.0.0.1 and a free port:

- ``{api_url}`` = ``{url}/api/v3``: the REST API the way a GitHub Enterprise Server
  exposes it (the app's GITHUB_API_URL; ``gidgethub`` clients take it as ``base_url``);
- ``{web_url}`` = ``{url}/web``: the two pages the App-manifest flow POSTs to (the
  app's GITHUB_URL), plus the ``html_url`` of everything the API returns;
- ``{url}/{owner}/{name}.git``: repositories made by `create_repository` (or
  `fork_repository`), real bare repositories served over git's smart HTTP to access
  tokens minted for them (tests/support/fake_github_git.py says how strictly).

Authentication works as on GitHub:

- as the app: ``Authorization: Bearer <JWT>``, RS256-signed with the app's private key,
  ``iss`` = the app id, ``exp`` at most 10 minutes after ``iat`` (60 s of clock skew
  allowed). Anything else answers 401 "A JSON web token could not be decoded".
- as an installation: ``Authorization: token <t>`` (or ``Bearer <t>``) with a token
  minted by ``POST /app/installations/{id}/access_tokens``. Unknown, expired (after
  `token_lifetime` seconds, an hour unless changed, or by `expire_tokens`) and revoked
  tokens answer 401 "Bad credentials"; a repository outside the installation, or
  outside the ``repositories`` the token was narrowed to, answers 404 "Not Found".
  A token minted with ``permissions`` has those (never more than the installation's:
  422 otherwise) plus ``metadata: read``; creating pull requests needs
  ``pull_requests: write`` (403 otherwise). Every mint is kept (`token_grants`).

Implemented API routes (paths after ``api_url``):

- JWT: ``GET /app``, ``GET /app/installations``, ``GET /app/installations/{id}``,
  ``POST /app/installations/{id}/access_tokens``, ``GET /repos/{o}/{r}/installation``;
- no auth: ``POST /app-manifests/{code}/conversions`` (a code works once);
- installation token: ``GET /installation/repositories``,
  ``GET /repos/{o}/{r}/collaborators/{login}/permission``,
  ``GET /repos/{o}/{r}/issues/{n}``, ``GET /repos/{o}/{r}/pulls/{n}``,
  ``GET|POST /repos/{o}/{r}/issues/{n}/comments``,
  ``GET|PATCH|DELETE /repos/{o}/{r}/issues/comments/{id}``,
  ``GET /repos/{o}/{r}/pulls/{n}/comments``,
  ``GET|PATCH|DELETE /repos/{o}/{r}/pulls/comments/{id}``,
  ``POST /repos/{o}/{r}/pulls/{n}/comments/{id}/replies``,
  ``GET|POST .../reactions`` + ``DELETE .../reactions/{reaction_id}`` on
  ``issues/comments/{id}``, ``pulls/comments/{id}`` and ``issues/{n}``,
  ``GET /repos/{o}/{r}`` (``default_branch``, ``clone_url``), ``GET /users/{login}``,
  ``DELETE /installation/token`` (revokes the token sent; `revoked_tokens`);
- installation token, about the code (tests/support/fake_github_pulls.py):
  ``GET /repos/{o}/{r}/branches/{branch}``, ``GET /repos/{o}/{r}/commits/{ref}``,
  ``GET /repos/{o}/{r}/compare/{base}...{head}``,
  ``GET /repos/{o}/{r}/pulls`` (``state``, ``head`` = "owner:branch", ``base``),
  ``POST /repos/{o}/{r}/pulls`` (``title``, ``head``, ``base``, ``body``, ``draft``),
  ``POST /repos/{o}/{r}/pulls/{n}/requested_reviewers``.

Lists take ``per_page`` (default 30, at most 100) and ``page`` and answer a ``Link``
header (rel="next", "last", "prev", "first") like GitHub. Every API call is recorded
as a `GithubCall`; `fail_next` injects failures (rate limits, 5xx). Comments and
reactions made through the API are authored by ``{slug}[bot]`` (type "Bot").

Set up apps, installations, repositories (`create_repository`, `fork_repository`,
`commit`), issues, pull requests (`add_pull_request` from a branch or a fork) and
comments after `start` (the returned objects carry URLs of the running server).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.fake_github_git import RepositoryHosting
from tests.support.fake_github_pulls import CodeRoutes
from tests.support.fake_github_records import PERMISSION_LEVELS, TokenGrant, allows
from tests.support.fake_github_records import Answer as _Answer
from tests.support.fake_github_records import Failure as _Failure
from tests.support.fake_github_records import Installation as _Installation
from tests.support.fake_github_records import Issue as _Issue
from tests.support.fake_github_records import Request as _Request
from tests.support.fake_github_records import Token as _Token
from tests.support.fake_github_records import error_body as _error_body
from tests.support.fake_github_records import iso as _iso
from tests.support.git_http import is_git_path
from tests.support.loopback import LoopbackServer

API_PREFIX = "/api/v3"
WEB_PREFIX = "/web"
# Who "is logged in" on the web pages: the owner of apps created for a personal account.
DEFAULT_WEB_USER = "octocat"
JWT_ERROR = "A JSON web token could not be decoded"
BAD_CREDENTIALS = "Bad credentials"
# GitHub refuses app JWTs whose lifetime (exp - iat) exceeds ten minutes.
JWT_MAX_LIFETIME = 10 * 60
JWT_LEEWAY = 60
TOKEN_LIFETIME = 60 * 60
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
RATE_LIMIT = 5000
ANONYMOUS_RATE_LIMIT = 60
# What the relay's app asks for (manifests/github-app.json): contents write, for the
# agent's pushes.
DEFAULT_INSTALLATION_PERMISSIONS: dict[str, str] = {
    "contents": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
}
REACTION_CONTENTS = frozenset(
    {"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"}
)
PERMISSIONS = ("admin", "maintain", "write", "triage", "read", "none")
# GET .../collaborators/{login}/permission: "permission" holds the legacy base role
# (maintain shows as write, triage as read); "role_name" holds the role itself.
_LEGACY_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}
_RANK = {name: rank for rank, name in enumerate(reversed(PERMISSIONS))}
REACTION_KINDS = ("issue_comment", "review_comment", "issue")
_TOKEN_ALPHABET = string.ascii_letters + string.digits
_ACCESS_TOKENS_PATH = re.compile(r"/app/installations/(\d+)/access_tokens")


@dataclass(frozen=True)
class GithubCall:
    """One API request the fake received (including failed and injected-failure ones)."""

    method: str  # "GET", "POST", ...
    path: str  # after api_url, without the query, e.g. "/repos/acme/api/issues/1"
    query: dict[str, str]  # the last value of each query parameter
    auth: str | None  # "jwt" | "token" | None (no Authorization header)
    # The installation whose token was sent (also for unknown-repository or expired
    # tokens, when known); for POST /app/installations/{id}/access_tokens, that {id}.
    installation_id: int | None
    body: Any  # the decoded JSON body; the raw text when not JSON; None when empty
    status: int
    # When it was answered (time.monotonic()), to tell how far apart calls came.
    at: float = field(default_factory=time.monotonic)


@dataclass
class FakeApp:
    """A registered GitHub App (by `FakeGitHub.add_app` or the manifest conversion)."""

    app_id: int
    slug: str
    name: str
    private_key_pem: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    client_id: str
    client_secret: str = field(repr=False)
    owner: str = DEFAULT_WEB_USER
    owner_type: str = "User"
    description: str = ""
    external_url: str = ""
    permissions: dict[str, str] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    # The manifest it was created from (None for `add_app`).
    manifest: dict[str, Any] | None = None
    created_at: str = ""
    public_key: Any = field(default=None, repr=False, compare=False)

    @property
    def bot_login(self) -> str:
        return f"{self.slug}[bot]"


@dataclass(frozen=True)
class ManifestPost:
    """One POST to a manifest page: the organization (None for a personal account)."""

    org: str | None
    state: str | None
    manifest: dict[str, Any]
    code: str


@dataclass
class _Comment:
    comment_id: int
    repo: str
    number: int
    body: str
    user: str
    created_at: str
    updated_at: str
    # review comments only
    path: str | None = None
    line: int | None = None
    diff_hunk: str | None = None
    in_reply_to_id: int | None = None


@dataclass
class _Reaction:
    reaction_id: int
    content: str
    user: str
    created_at: str


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    headers: dict[str, str]
    body: dict[str, Any] | None
    remaining: int


def _random_token(prefix: str, length: int = 36) -> str:
    return prefix + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(length))


def generate_private_key_pem() -> str:
    """A fresh 2048-bit RSA private key, PEM (PKCS#1, as GitHub hands them out)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _public_key(private_key_pem: str) -> Any:
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    return key.public_key()


def slugify(name: str) -> str:
    """How GitHub turns an app name into its slug: lowercase, dashes between words."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _split_repository(repository: str) -> tuple[str, str]:
    owner, slash, name = repository.partition("/")
    if not slash or not owner or not name or "/" in name:
        raise ValueError(f"repository must be 'owner/name', got {repository!r}")
    return owner, name


def _positive_int(value: str | None, default: int) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError:
        return default
    return number if number > 0 else default


_Handler = Callable[..., _Answer]


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    auth: str  # "jwt" | "token" | "none"
    handler: _Handler


class FakeGitHub(RepositoryHosting, CodeRoutes, LoopbackServer):
    """Threaded fake of GitHub (Enterprise-style API under /api/v3, web pages under /web,
    repositories for git at /{owner}/{name}.git)."""

    thread_name = "fake-github"

    def __init__(self, git_root: Path | None = None) -> None:
        """``git_root``: where the bare repositories go (default: a temporary directory
        removed by `stop`)."""
        super().__init__()
        self._lock = threading.Lock()
        self._apps: dict[int, FakeApp] = {}
        self._installations: dict[int, _Installation] = {}
        self._tokens: dict[str, _Token] = {}
        self._mints: dict[int, int] = {}
        self._repos: dict[str, str] = {}  # lowercase "owner/name" -> canonical
        self._repo_ids: dict[str, int] = {}
        self._permissions: dict[tuple[str, str], str] = {}  # (repo key, login lower)
        self._users: dict[str, int] = {}  # login lower -> id
        self._issues: dict[tuple[str, int], _Issue] = {}  # (repo key, number)
        self._issue_comments: dict[int, _Comment] = {}
        self._review_comments: dict[int, _Comment] = {}
        # (kind, repo key, target id) -> reactions in creation order
        self._reactions: dict[tuple[str, str, int], list[_Reaction]] = {}
        self._manifest_codes: dict[str, ManifestPost] = {}
        self._revocations: list[str] = []  # tokens, in the order they were revoked
        self._faults: list[_Fault] = []
        self._calls: list[GithubCall] = []
        self._rate_used: dict[str, int] = {}
        self._ids = itertools.count(100_001)
        self._issue_comment_ids = itertools.count(1_000_001)
        self._review_comment_ids = itertools.count(2_000_001)
        self._reaction_ids = itertools.count(3_000_001)
        self._user_ids = itertools.count(9_001)
        self._next_app_id = 800_001
        self.received_manifests: list[dict[str, Any]] = []
        self.manifest_posts: list[ManifestPost] = []
        # How long access tokens minted from now on live, in seconds (GitHub: an hour);
        # a test shortens it to see tokens expire.
        self.token_lifetime: float = TOKEN_LIFETIME
        self._init_hosting(git_root)
        self._routes = self._build_routes()

    def stop(self) -> None:
        super().stop()
        self._remove_repositories()

    # -- URLs -----------------------------------------------------------------
    @property
    def api_url(self) -> str:
        """What tests set as GITHUB_API_URL (gidgethub's base_url)."""
        return f"{self.url}{API_PREFIX}"

    @property
    def web_url(self) -> str:
        """What tests set as GITHUB_URL."""
        return f"{self.url}{WEB_PREFIX}"

    # -- HTTP -----------------------------------------------------------------
    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                if is_git_path(self.path):
                    # git's smart HTTP reads the body itself, streamed.
                    fake._serve_git(self)
                    return
                body = self._read_body()
                answer = fake._dispatch(self.command, self.path, self.headers, body)
                if answer.status in (204, 302, 304):
                    payload = b""
                elif answer.raw is not None:
                    payload = answer.raw
                else:
                    payload = json.dumps(answer.body).encode()
                self.send_response(answer.status)
                if payload or answer.status not in (204, 302, 304):
                    self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if payload:
                    self.wfile.write(payload)

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    # -- setup ----------------------------------------------------------------
    def add_app(
        self,
        app_id: int,
        slug: str,
        *,
        name: str | None = None,
        private_key_pem: str | None = None,
        permissions: dict[str, str] | None = None,
    ) -> str:
        """Register an app; returns its private key (a new 2048-bit RSA key if none given).
        Its installations get ``permissions`` (default DEFAULT_INSTALLATION_PERMISSIONS)."""
        pem = private_key_pem if private_key_pem is not None else generate_private_key_pem()
        public_key = _public_key(pem)
        with self._lock:
            self._apps[int(app_id)] = FakeApp(
                app_id=int(app_id),
                slug=slug,
                name=name if name is not None else slug,
                private_key_pem=pem,
                webhook_secret=secrets.token_hex(20),
                client_id=f"Iv1.{secrets.token_hex(8)}",
                client_secret=secrets.token_hex(20),
                permissions=dict(permissions or DEFAULT_INSTALLATION_PERMISSIONS),
                events=["issue_comment", "issues", "pull_request_review_comment"],
                created_at=_iso(),
                public_key=public_key,
            )
            self._next_app_id = max(self._next_app_id, int(app_id) + 1)
        return pem

    def add_installation(
        self, installation_id: int, app_id: int, *, account: str, repositories: list[str]
    ) -> None:
        """Install app ``app_id`` on ``account`` for ``repositories`` ("owner/name")."""
        with self._lock:
            if int(app_id) not in self._apps:
                raise KeyError(f"no app {app_id}; add_app first")
            canonical = [self._register_repo(r) for r in repositories]
            self._user_id(account)
            self._installations[int(installation_id)] = _Installation(
                installation_id=int(installation_id),
                app_id=int(app_id),
                account=account,
                repositories=canonical,
                created_at=_iso(),
            )

    def relay_settings(self, app_id: int, webhook_secret: str) -> dict[str, str]:
        """The settings agent-relay needs to act as app `app_id` against this fake,
        verifying deliveries signed with `webhook_secret`."""
        with self._lock:
            app = self._apps[app_id]
        return {
            "GITHUB_APP_ID": str(app_id),
            "GITHUB_PRIVATE_KEY": app.private_key_pem,
            "GITHUB_WEBHOOK_SECRET": webhook_secret,
            "GITHUB_API_URL": self.api_url,
            "GITHUB_URL": self.web_url,
        }

    def set_permission(self, repository: str, login: str, permission: str) -> None:
        """``login``'s role on ``repository``: admin, maintain, write, triage, read, none."""
        if permission not in PERMISSIONS:
            raise ValueError(f"permission must be one of {PERMISSIONS}, got {permission!r}")
        with self._lock:
            repo = self._register_repo(repository)
            self._user_id(login)
            self._permissions[(repo.lower(), login.lower())] = permission

    def add_issue(
        self,
        repository: str,
        number: int,
        *,
        title: str,
        body: str,
        user: str,
        pull_request: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An issue, or with ``pull_request={"head": "branch", "base": "main"}`` a pull
        request; returns it as ``GET /repos/{o}/{r}/issues/{n}`` shows it."""
        with self._lock:
            repo = self._register_repo(repository)
            issue = self._new_issue(repo, int(number), title=title, body=body, user=user)
            if pull_request is not None:
                issue.head = str(pull_request.get("head") or "feature")
                issue.base = str(pull_request.get("base") or "main")
            return self._render_issue(issue)

    def add_comment(self, repository: str, number: int, body: str, *, user: str) -> dict[str, Any]:
        """An issue comment (on an issue or a pull request) by ``user``; an unknown
        ``number`` becomes a plain issue. Returns the comment as the API shows it."""
        with self._lock:
            issue = self._issue_for_setup(repository, int(number), pull_request=False)
            comment = self._new_issue_comment(issue, body, user)
            return self._render_issue_comment(comment)

    def add_review_comment(
        self,
        repository: str,
        number: int,
        body: str,
        *,
        user: str,
        path: str,
        line: int,
        diff_hunk: str,
        in_reply_to: int | None = None,
    ) -> dict[str, Any]:
        """A pull-request review comment; an unknown ``number`` becomes a pull request.
        ``in_reply_to`` names a review comment of the same pull request (the reply joins
        that comment's thread: in_reply_to_id is the thread's first comment)."""
        with self._lock:
            issue = self._issue_for_setup(repository, int(number), pull_request=True)
            if issue.head is None:
                raise ValueError(f"{repository}#{number} is an issue, not a pull request")
            top: int | None = None
            if in_reply_to is not None:
                parent = self._review_comments.get(int(in_reply_to))
                if parent is None or (parent.repo, parent.number) != (issue.repo, issue.number):
                    raise KeyError(f"no review comment {in_reply_to} on {repository}#{number}")
                top = parent.in_reply_to_id or parent.comment_id
            comment = self._new_review_comment(
                issue, body, user, path=path, line=int(line), diff_hunk=diff_hunk, top=top
            )
            return self._render_review_comment(comment)

    # -- fault injection ------------------------------------------------------
    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        count: int = 1,
    ) -> None:
        """Answer the next ``count`` ``method`` calls whose path (after api_url, without
        the query) fullmatches ``path_pattern`` with ``status``, ``headers`` (over the
        usual ones, e.g. x-ratelimit-remaining/x-ratelimit-reset or Retry-After) and
        ``body`` (default: a GitHub-style {"message": ...}). Faults apply before auth."""
        with self._lock:
            self._faults.append(
                _Fault(
                    method=method.upper(),
                    pattern=re.compile(path_pattern),
                    status=int(status),
                    headers=dict(headers or {}),
                    body=copy.deepcopy(body),
                    remaining=int(count),
                )
            )

    def expire_tokens(self) -> None:
        """Every installation token minted so far answers 401 Bad credentials from now on
        (to git as well). To make tokens minted later expire soon, set `token_lifetime`."""
        with self._lock:
            for token in self._tokens.values():
                token.expired = True

    # -- inspection -----------------------------------------------------------
    def calls(self, method: str | None = None, path_pattern: str | None = None) -> list[GithubCall]:
        """API calls so far in arrival order, optionally of one method and/or with a path
        fullmatching ``path_pattern``."""
        pattern = re.compile(path_pattern) if path_pattern is not None else None
        with self._lock:
            return [
                c
                for c in self._calls
                if (method is None or c.method == method.upper())
                and (pattern is None or pattern.fullmatch(c.path))
            ]

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def token_mints(self, installation_id: int) -> int:
        """How many access tokens were minted for the installation."""
        with self._lock:
            return self._mints.get(int(installation_id), 0)

    def token_grants(self) -> list[TokenGrant]:
        """Every access token minted so far, oldest first."""
        with self._lock:
            return [token.grant() for token in self._tokens.values()]

    def revoked_tokens(self) -> list[str]:
        """Tokens revoked with ``DELETE /installation/token``, in order."""
        with self._lock:
            return list(self._revocations)

    def comments(self, repository: str, number: int) -> list[dict[str, Any]]:
        """The issue comments of an issue or pull request, oldest first."""
        with self._lock:
            key = repository.lower()
            return [
                self._render_issue_comment(c)
                for c in sorted(self._issue_comments.values(), key=lambda c: c.comment_id)
                if c.repo.lower() == key and c.number == int(number)
            ]

    def review_comments(self, repository: str, number: int) -> list[dict[str, Any]]:
        """The review comments of a pull request, oldest first."""
        with self._lock:
            key = repository.lower()
            return [
                self._render_review_comment(c)
                for c in sorted(self._review_comments.values(), key=lambda c: c.comment_id)
                if c.repo.lower() == key and c.number == int(number)
            ]

    def reactions(self, kind: str, repository: str, target_id: int) -> set[str]:
        """The reaction contents (e.g. {"eyes"}) on an "issue_comment", a
        "review_comment" (by comment id) or an "issue" (by number)."""
        if kind not in REACTION_KINDS:
            raise ValueError(f"kind must be one of {REACTION_KINDS}, got {kind!r}")
        with self._lock:
            found = self._reactions.get((kind, repository.lower(), int(target_id)), [])
            return {r.content for r in found}

    def app_by_slug(self, slug: str) -> FakeApp:
        """The app registered under ``slug`` (a copy)."""
        with self._lock:
            for app in self._apps.values():
                if app.slug == slug:
                    return copy.copy(app)
        raise KeyError(f"no app with slug {slug!r}")

    # -- internals: state (the caller holds the lock) -------------------------
    def _register_repo(self, repository: str) -> str:
        _split_repository(repository)
        key = repository.lower()
        if key not in self._repos:
            self._repos[key] = repository
            self._repo_ids[key] = next(self._ids)
            self._user_id(repository.split("/")[0])
        return self._repos[key]

    def _user_id(self, login: str) -> int:
        key = login.lower()
        if key not in self._users:
            self._users[key] = next(self._user_ids)
        return self._users[key]

    def _new_issue(self, repo: str, number: int, *, title: str, body: str, user: str) -> _Issue:
        self._user_id(user)
        now = _iso()
        issue = _Issue(
            repo=repo,
            number=number,
            issue_id=next(self._ids),
            title=title,
            body=body,
            user=user,
            created_at=now,
            updated_at=now,
        )
        self._issues[(repo.lower(), number)] = issue
        return issue

    def _issue_for_setup(self, repository: str, number: int, *, pull_request: bool) -> _Issue:
        repo = self._register_repo(repository)
        issue = self._issues.get((repo.lower(), number))
        if issue is None:
            kind = "Pull request" if pull_request else "Issue"
            owner = repo.split("/")[0]
            issue = self._new_issue(repo, number, title=f"{kind} #{number}", body="", user=owner)
            if pull_request:
                issue.head, issue.base = "feature", "main"
        return issue

    def _new_issue_comment(self, issue: _Issue, body: str, user: str) -> _Comment:
        self._user_id(user)
        now = _iso()
        comment = _Comment(
            comment_id=next(self._issue_comment_ids),
            repo=issue.repo,
            number=issue.number,
            body=body,
            user=user,
            created_at=now,
            updated_at=now,
        )
        self._issue_comments[comment.comment_id] = comment
        return comment

    def _new_review_comment(
        self,
        issue: _Issue,
        body: str,
        user: str,
        *,
        path: str,
        line: int,
        diff_hunk: str,
        top: int | None,
    ) -> _Comment:
        self._user_id(user)
        now = _iso()
        comment = _Comment(
            comment_id=next(self._review_comment_ids),
            repo=issue.repo,
            number=issue.number,
            body=body,
            user=user,
            created_at=now,
            updated_at=now,
            path=path,
            line=line,
            diff_hunk=diff_hunk,
            in_reply_to_id=top,
        )
        self._review_comments[comment.comment_id] = comment
        return comment

    # -- internals: rendering (the caller holds the lock) ---------------------
    def _user(self, login: str) -> dict[str, Any]:
        is_bot = login.endswith("[bot]")
        user_id = self._user_id(login)
        html_url = (
            f"{self.web_url}/apps/{login.removesuffix('[bot]')}"
            if is_bot
            else f"{self.web_url}/{login}"
        )
        return {
            "login": login,
            "id": user_id,
            "node_id": f"U_fake{user_id}",
            "type": "Bot" if is_bot else "User",
            "site_admin": False,
            "url": f"{self.api_url}/users/{login}",
            "html_url": html_url,
        }

    def _account(self, login: str, account_type: str = "Organization") -> dict[str, Any]:
        return {**self._user(login), "type": account_type}

    def _repository(self, repo: str) -> dict[str, Any]:
        owner, name = repo.split("/")
        source = self._forks.get(repo.lower())
        rendered = {
            "id": self._repo_ids[repo.lower()],
            "node_id": f"R_fake{self._repo_ids[repo.lower()]}",
            "name": name,
            "full_name": repo,
            "owner": self._account(owner),
            "private": True,
            "fork": source is not None,
            "html_url": f"{self.web_url}/{repo}",
            "url": f"{self.api_url}/repos/{repo}",
            "clone_url": self.clone_url(repo),
            "default_branch": self._default_branches.get(repo.lower(), "main"),
        }
        if source is not None:
            rendered["parent"] = {"full_name": source, "url": f"{self.api_url}/repos/{source}"}
        return rendered

    def _association(self, repo: str, login: str) -> str:
        if login.lower() == repo.split("/")[0].lower():
            return "OWNER"
        if self._permissions.get((repo.lower(), login.lower()), "none") != "none":
            return "COLLABORATOR"
        return "NONE"

    def _reaction_summary(self, kind: str, repo: str, target_id: int, url: str) -> dict[str, Any]:
        found = self._reactions.get((kind, repo.lower(), target_id), [])
        summary: dict[str, Any] = {"url": f"{url}/reactions", "total_count": len(found)}
        for content in sorted(REACTION_CONTENTS):
            summary[content] = sum(1 for r in found if r.content == content)
        return summary

    def _issue_url(self, issue: _Issue) -> str:
        return f"{self.api_url}/repos/{issue.repo}/issues/{issue.number}"

    def _issue_html_url(self, repo: str, number: int) -> str:
        issue = self._issues.get((repo.lower(), number))
        kind = "pull" if issue is not None and issue.head is not None else "issues"
        return f"{self.web_url}/{repo}/{kind}/{number}"

    def _render_issue(self, issue: _Issue) -> dict[str, Any]:
        url = self._issue_url(issue)
        comment_count = sum(
            1
            for c in self._issue_comments.values()
            if c.repo == issue.repo and c.number == issue.number
        )
        rendered: dict[str, Any] = {
            "id": issue.issue_id,
            "node_id": f"I_fake{issue.issue_id}",
            "url": url,
            "repository_url": f"{self.api_url}/repos/{issue.repo}",
            "comments_url": f"{url}/comments",
            "html_url": self._issue_html_url(issue.repo, issue.number),
            "number": issue.number,
            "state": issue.state,
            "title": issue.title,
            "body": issue.body,
            "user": self._user(issue.user),
            "labels": [],
            "assignees": [],
            "locked": False,
            "comments": comment_count,
            "created_at": issue.created_at,
            "updated_at": issue.updated_at,
            "closed_at": None,
            "author_association": self._association(issue.repo, issue.user),
            "reactions": self._reaction_summary("issue", issue.repo, issue.number, url),
        }
        if issue.head is not None:
            pull_url = f"{self.api_url}/repos/{issue.repo}/pulls/{issue.number}"
            html = f"{self.web_url}/{issue.repo}/pull/{issue.number}"
            rendered["pull_request"] = {
                "url": pull_url,
                "html_url": html,
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "merged_at": issue.updated_at if issue.merged else None,
            }
        return rendered

    def _pull_side_sha(self, issue: _Issue, side: str) -> str:
        """The commit of a pull request's "head" or "base": real for a repository with
        git behind it, else made up (the same on every call)."""
        real = self._pull_sha(issue, side)
        if real is not None:
            return real
        ref = issue.head if side == "head" else issue.base
        return hashlib.sha1(f"{issue.repo}#{issue.number}:{ref}".encode()).hexdigest()

    def _render_pull(self, issue: _Issue) -> dict[str, Any]:
        assert issue.head is not None and issue.base is not None
        url = f"{self.api_url}/repos/{issue.repo}/pulls/{issue.number}"
        html = f"{self.web_url}/{issue.repo}/pull/{issue.number}"

        def branch(side: str, ref: str, repo: str) -> dict[str, Any]:
            owner = repo.split("/")[0]
            return {
                "label": f"{owner}:{ref}",
                "ref": ref,
                "sha": self._pull_side_sha(issue, side),
                "user": self._account(owner),
                "repo": self._repository(repo),
            }

        return {
            "id": issue.issue_id,
            "node_id": f"PR_fake{issue.issue_id}",
            "url": url,
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": self._issue_url(issue),
            "comments_url": f"{self._issue_url(issue)}/comments",
            "review_comments_url": f"{url}/comments",
            "number": issue.number,
            "state": issue.state,
            "locked": False,
            "title": issue.title,
            "body": issue.body,
            "user": self._user(issue.user),
            "created_at": issue.created_at,
            "updated_at": issue.updated_at,
            "closed_at": issue.updated_at if issue.state == "closed" else None,
            "merged_at": issue.updated_at if issue.merged else None,
            "draft": issue.draft,
            "merged": issue.merged,
            "mergeable": None,
            "head": branch("head", issue.head, issue.head_repo or issue.repo),
            "base": branch("base", issue.base, issue.repo),
            "requested_reviewers": [self._user(login) for login in issue.requested_reviewers],
            "author_association": self._association(issue.repo, issue.user),
        }

    def _render_issue_comment(self, comment: _Comment) -> dict[str, Any]:
        url = f"{self.api_url}/repos/{comment.repo}/issues/comments/{comment.comment_id}"
        html = self._issue_html_url(comment.repo, comment.number)
        return {
            "id": comment.comment_id,
            "node_id": f"IC_fake{comment.comment_id}",
            "url": url,
            "html_url": f"{html}#issuecomment-{comment.comment_id}",
            "issue_url": f"{self.api_url}/repos/{comment.repo}/issues/{comment.number}",
            "body": comment.body,
            "user": self._user(comment.user),
            "created_at": comment.created_at,
            "updated_at": comment.updated_at,
            "author_association": self._association(comment.repo, comment.user),
            "reactions": self._reaction_summary(
                "issue_comment", comment.repo, comment.comment_id, url
            ),
        }

    def _render_review_comment(self, comment: _Comment) -> dict[str, Any]:
        url = f"{self.api_url}/repos/{comment.repo}/pulls/comments/{comment.comment_id}"
        issue = self._issues[(comment.repo.lower(), comment.number)]
        sha = self._pull_side_sha(issue, "head")
        rendered: dict[str, Any] = {
            "id": comment.comment_id,
            "node_id": f"PRRC_fake{comment.comment_id}",
            "url": url,
            "pull_request_review_id": comment.comment_id + 5_000_000,
            "diff_hunk": comment.diff_hunk,
            "path": comment.path,
            "line": comment.line,
            "original_line": comment.line,
            "side": "RIGHT",
            "start_line": None,
            "original_start_line": None,
            "start_side": None,
            "subject_type": "line",
            "commit_id": sha,
            "original_commit_id": sha,
            "user": self._user(comment.user),
            "body": comment.body,
            "created_at": comment.created_at,
            "updated_at": comment.updated_at,
            "html_url": (
                f"{self.web_url}/{comment.repo}/pull/{comment.number}"
                f"#discussion_r{comment.comment_id}"
            ),
            "pull_request_url": f"{self.api_url}/repos/{comment.repo}/pulls/{comment.number}",
            "author_association": self._association(comment.repo, comment.user),
            "reactions": self._reaction_summary(
                "review_comment", comment.repo, comment.comment_id, url
            ),
        }
        if comment.in_reply_to_id is not None:
            rendered["in_reply_to_id"] = comment.in_reply_to_id
        return rendered

    def _render_app(self, app: FakeApp) -> dict[str, Any]:
        return {
            "id": app.app_id,
            "slug": app.slug,
            "node_id": f"A_fake{app.app_id}",
            "client_id": app.client_id,
            "owner": self._account(app.owner, app.owner_type),
            "name": app.name,
            "description": app.description,
            "external_url": app.external_url,
            "html_url": f"{self.web_url}/apps/{app.slug}",
            "created_at": app.created_at,
            "updated_at": app.created_at,
            "permissions": dict(app.permissions),
            "events": list(app.events),
            "installations_count": sum(
                1 for i in self._installations.values() if i.app_id == app.app_id
            ),
        }

    def _render_installation(self, installation: _Installation) -> dict[str, Any]:
        app = self._apps[installation.app_id]
        base = f"{self.api_url}/app/installations/{installation.installation_id}"
        return {
            "id": installation.installation_id,
            "account": self._account(installation.account),
            "app_id": app.app_id,
            "app_slug": app.slug,
            "client_id": app.client_id,
            "target_id": self._user_id(installation.account),
            "target_type": "Organization",
            "repository_selection": "selected",
            "access_tokens_url": f"{base}/access_tokens",
            "repositories_url": f"{self.api_url}/installation/repositories",
            "html_url": (
                f"{self.web_url}/organizations/{installation.account}"
                f"/settings/installations/{installation.installation_id}"
            ),
            "permissions": self._installation_permissions(installation),
            "events": list(app.events),
            "created_at": installation.created_at,
            "updated_at": installation.created_at,
            "single_file_name": None,
            "suspended_at": None,
            "suspended_by": None,
        }

    def _installation_permissions(self, installation: _Installation) -> dict[str, str]:
        app = self._apps[installation.app_id]
        return dict(app.permissions or DEFAULT_INSTALLATION_PERMISSIONS)

    def _render_reaction(self, reaction: _Reaction) -> dict[str, Any]:
        return {
            "id": reaction.reaction_id,
            "node_id": f"REA_fake{reaction.reaction_id}",
            "user": self._user(reaction.user),
            "content": reaction.content,
            "created_at": reaction.created_at,
        }

    # -- internals: dispatch --------------------------------------------------
    def _dispatch(self, method: str, raw_path: str, headers: Any, body: bytes) -> _Answer:
        split = urlsplit(raw_path)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        if path == WEB_PREFIX or path.startswith(WEB_PREFIX + "/"):
            return self._web(method, path[len(WEB_PREFIX) :], query, headers, body)
        if not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            return _Answer(404, _error_body(404, "Not Found"))
        api_path = path[len(API_PREFIX) :] or "/"

        decoded: Any = None
        if body:
            text = body.decode("utf-8", "replace")
            try:
                decoded = json.loads(text)
            except ValueError:
                decoded = text

        auth, credential = _credentials(headers.get("Authorization") or "")
        with self._lock:
            installation_id: int | None = None
            if auth == "token" and credential is not None:
                known = self._tokens.get(credential)
                installation_id = known.installation_id if known is not None else None
            minting = _ACCESS_TOKENS_PATH.fullmatch(api_path)
            if minting is not None:
                installation_id = int(minting.group(1))
            request = _Request(
                method=method.upper(),
                path=api_path,
                query=query,
                body=decoded,
                auth=auth,
                credential=credential,
                installation_id=installation_id,
            )
            answer = self._answer(request)
            self._decorate(answer, request)
            self._calls.append(
                GithubCall(
                    method=request.method,
                    path=api_path,
                    query=dict(query),
                    auth=auth,
                    installation_id=request.installation_id,
                    body=copy.deepcopy(decoded),
                    status=answer.status,
                )
            )
            return answer

    def _answer(self, request: _Request) -> _Answer:
        for fault in self._faults:
            if fault.method == request.method and fault.pattern.fullmatch(request.path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                body = fault.body if fault.body is not None else self._fault_body(fault, request)
                return _Answer(fault.status, copy.deepcopy(body), headers=dict(fault.headers))

        for route in self._routes:
            if route.method != request.method:
                continue
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            try:
                return self._run(route, match, request)
            except _Failure as failure:
                return _Answer(
                    failure.status,
                    _error_body(failure.status, failure.message, **failure.extra),
                )
        # GitHub answers 404 for unknown paths and unsupported methods alike.
        return _Answer(404, _error_body(404, "Not Found"))

    def _run(self, route: _Route, match: re.Match[str], request: _Request) -> _Answer:
        params = match.groupdict()
        if route.auth == "none":
            return route.handler(request, **params)
        if route.auth == "jwt":
            app = self._verify_jwt(request)
            return route.handler(request, app, **params)
        # installation token
        token = self._verify_token(request)
        installation = self._installations[token.installation_id]
        if "owner" in params:
            repo = self._accessible_repo(
                token, installation, params.pop("owner"), params.pop("repo")
            )
            return route.handler(request, installation, repo, **params)
        return route.handler(request, installation, token, **params)

    def _verify_jwt(self, request: _Request) -> FakeApp:
        if request.auth != "jwt" or not request.credential:
            raise _Failure(401, JWT_ERROR)
        try:
            unverified = jwt.decode(request.credential, options={"verify_signature": False})
            app = self._apps.get(int(str(unverified.get("iss"))))
            if app is None:
                raise _Failure(401, JWT_ERROR)
            claims = jwt.decode(
                request.credential,
                app.public_key,
                algorithms=["RS256"],
                leeway=JWT_LEEWAY,
                options={"require": ["iat", "exp", "iss"]},
            )
            if int(claims["exp"]) - int(claims["iat"]) > JWT_MAX_LIFETIME:
                raise _Failure(401, JWT_ERROR)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            raise _Failure(401, JWT_ERROR) from None
        return app

    def _verify_token(self, request: _Request) -> _Token:
        if request.auth is None or not request.credential:
            raise _Failure(401, "Requires authentication")
        token = self._tokens.get(request.credential)
        if token is None or not token.usable():
            raise _Failure(401, BAD_CREDENTIALS)
        if token.installation_id not in self._installations:
            raise _Failure(401, BAD_CREDENTIALS)
        return token

    def _accessible_repo(
        self, token: _Token, installation: _Installation, owner: str, name: str
    ) -> str:
        key = f"{owner}/{name}".lower()
        allowed = (
            token.repositories if token.repositories is not None else installation.repositories
        )
        for repo in allowed:
            if repo.lower() == key:
                return repo
        raise _Failure(404, "Not Found")

    def _fault_body(self, fault: _Fault, request: _Request) -> dict[str, Any]:
        lowered = {k.lower(): v for k, v in fault.headers.items()}
        if fault.status == 403 and lowered.get("x-ratelimit-remaining") == "0":
            who = (
                f"installation ID {request.installation_id}"
                if request.installation_id is not None
                else "this client"
            )
            return _error_body(403, f"API rate limit exceeded for {who}.")
        if fault.status in (403, 429) and "retry-after" in lowered:
            return _error_body(
                fault.status,
                "You have exceeded a secondary rate limit. Please wait a few minutes "
                "before you try again.",
            )
        if fault.status >= 500:
            return _error_body(fault.status, "Server Error")
        try:
            phrase = HTTPStatus(fault.status).phrase
        except ValueError:
            phrase = "Error"
        return _error_body(fault.status, phrase)

    def _decorate(self, answer: _Answer, request: _Request) -> None:
        """The headers GitHub puts on every API answer; the answer's own win."""
        if request.auth == "token" and request.installation_id is not None:
            bucket, limit = f"installation:{request.installation_id}", RATE_LIMIT
        elif request.auth == "jwt":
            bucket, limit = "app", RATE_LIMIT
        else:
            bucket, limit = "anonymous", ANONYMOUS_RATE_LIMIT
        used = self._rate_used.get(bucket, 0) + 1
        self._rate_used[bucket] = used
        usual = {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(max(limit - used, 0)),
            "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-ratelimit-used": str(used),
            "x-ratelimit-resource": "core",
            "x-github-media-type": "github.v3; format=json",
            "x-github-request-id": secrets.token_hex(8).upper(),
        }
        own = {k.lower() for k in answer.headers}
        for name, value in usual.items():
            if name not in own:
                answer.headers[name] = value

    # -- internals: routes ----------------------------------------------------
    def _build_routes(self) -> list[_Route]:
        repo = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
        table: list[tuple[str, str, str, _Handler]] = [
            ("GET", r"/app", "jwt", self._get_app),
            ("GET", r"/app/installations", "jwt", self._list_installations),
            ("GET", r"/app/installations/(?P<installation_id>\d+)", "jwt", self._get_installation),
            (
                "POST",
                r"/app/installations/(?P<installation_id>\d+)/access_tokens",
                "jwt",
                self._mint_token,
            ),
            ("POST", r"/app-manifests/(?P<code>[^/]+)/conversions", "none", self._convert),
            ("GET", rf"{repo}/installation", "jwt", self._repo_installation),
            ("GET", r"/installation/repositories", "token", self._installation_repositories),
            (
                "GET",
                rf"{repo}/collaborators/(?P<login>[^/]+)/permission",
                "token",
                self._permission,
            ),
            ("GET", rf"{repo}/issues/(?P<number>\d+)", "token", self._get_issue),
            ("GET", rf"{repo}/pulls/(?P<number>\d+)", "token", self._get_pull),
            ("GET", rf"{repo}/issues/(?P<number>\d+)/comments", "token", self._list_comments),
            ("POST", rf"{repo}/issues/(?P<number>\d+)/comments", "token", self._create_comment),
            ("GET", rf"{repo}/issues/comments/(?P<comment_id>\d+)", "token", self._get_comment),
            (
                "PATCH",
                rf"{repo}/issues/comments/(?P<comment_id>\d+)",
                "token",
                self._edit_comment,
            ),
            (
                "DELETE",
                rf"{repo}/issues/comments/(?P<comment_id>\d+)",
                "token",
                self._delete_comment,
            ),
            (
                "GET",
                rf"{repo}/pulls/(?P<number>\d+)/comments",
                "token",
                self._list_review_comments,
            ),
            (
                "GET",
                rf"{repo}/pulls/comments/(?P<comment_id>\d+)",
                "token",
                self._get_review_comment,
            ),
            (
                "PATCH",
                rf"{repo}/pulls/comments/(?P<comment_id>\d+)",
                "token",
                self._edit_review_comment,
            ),
            (
                "DELETE",
                rf"{repo}/pulls/comments/(?P<comment_id>\d+)",
                "token",
                self._delete_review_comment,
            ),
            (
                "POST",
                rf"{repo}/pulls/(?P<number>\d+)/comments/(?P<comment_id>\d+)/replies",
                "token",
                self._reply,
            ),
            ("GET", repo, "token", self._get_repository),
            ("GET", r"/users/(?P<login>[^/]+)", "token", self._get_user),
            ("DELETE", r"/installation/token", "token", self._revoke_token),
            *self._code_routes(repo),
        ]
        targets = {
            "issue_comment": r"issues/comments/(?P<target>\d+)",
            "review_comment": r"pulls/comments/(?P<target>\d+)",
            "issue": r"issues/(?P<target>\d+)",
        }
        for kind, target in targets.items():
            reactions = rf"{repo}/{target}/reactions"

            def make(handler: Callable[..., _Answer], kind: str = kind) -> _Handler:
                return lambda *args, **kwargs: handler(*args, kind=kind, **kwargs)

            table += [
                ("GET", reactions, "token", make(self._list_reactions)),
                ("POST", reactions, "token", make(self._create_reaction)),
                (
                    "DELETE",
                    rf"{reactions}/(?P<reaction_id>\d+)",
                    "token",
                    make(self._delete_reaction),
                ),
            ]
        return [_Route(method=m, pattern=re.compile(p), auth=a, handler=h) for m, p, a, h in table]

    # -- internals: app routes (JWT) ------------------------------------------
    def _get_app(self, request: _Request, app: FakeApp) -> _Answer:
        return _Answer(200, self._render_app(app))

    def _list_installations(self, request: _Request, app: FakeApp) -> _Answer:
        mine = [
            self._render_installation(i)
            for i in sorted(self._installations.values(), key=lambda i: i.installation_id)
            if i.app_id == app.app_id
        ]
        return self._paginate(request, mine)

    def _app_installation(self, app: FakeApp, installation_id: str) -> _Installation:
        installation = self._installations.get(int(installation_id))
        if installation is None or installation.app_id != app.app_id:
            raise _Failure(404, "Not Found")
        return installation

    def _get_installation(self, request: _Request, app: FakeApp, installation_id: str) -> _Answer:
        return _Answer(200, self._render_installation(self._app_installation(app, installation_id)))

    def _mint_token(self, request: _Request, app: FakeApp, installation_id: str) -> _Answer:
        installation = self._app_installation(app, installation_id)
        body = request.body if isinstance(request.body, dict) else {}
        narrowed = self._narrowed_repositories(installation, body.get("repositories"))
        granted = self._installation_permissions(installation)
        wanted = body.get("permissions")
        if wanted is not None:
            if not isinstance(wanted, dict) or not all(
                isinstance(level, str)
                and level in PERMISSION_LEVELS
                and allows(granted, str(name), level)
                for name, level in wanted.items()
            ):
                raise _Failure(
                    422, "The permissions requested are not granted to this installation."
                )
            # Every token can read the repositories' metadata.
            granted = {"metadata": "read", **{str(k): str(v) for k, v in wanted.items()}}
        token = _Token(
            token=_random_token("ghs_"),
            installation_id=installation.installation_id,
            expires_at=time.time() + self.token_lifetime,
            repositories=narrowed,
            permissions=granted,
            requested_permissions=dict(wanted) if wanted is not None else None,
        )
        self._tokens[token.token] = token
        self._mints[installation.installation_id] = (
            self._mints.get(installation.installation_id, 0) + 1
        )
        answer: dict[str, Any] = {
            "token": token.token,
            "expires_at": _iso(token.expires_at),
            "permissions": dict(granted),
            "repository_selection": "selected",
        }
        if narrowed is not None:
            answer["repositories"] = [self._repository(r) for r in narrowed]
        return _Answer(201, answer)

    def _narrowed_repositories(self, installation: _Installation, wanted: Any) -> list[str] | None:
        """The repositories a token is narrowed to ("name" or "owner/name" each)."""
        if not wanted:
            return None
        narrowed = []
        for name in wanted:
            owner = installation.account
            key = (name if "/" in str(name) else f"{owner}/{name}").lower()
            found = [r for r in installation.repositories if r.lower() == key]
            if not found:
                raise _Failure(
                    422,
                    "There is at least one repository that does not exist or is not "
                    "accessible to the parent installation.",
                )
            narrowed.append(found[0])
        return narrowed

    def _repo_installation(self, request: _Request, app: FakeApp, owner: str, repo: str) -> _Answer:
        key = f"{owner}/{repo}".lower()
        for installation in sorted(self._installations.values(), key=lambda i: i.installation_id):
            if installation.app_id == app.app_id and any(
                r.lower() == key for r in installation.repositories
            ):
                return _Answer(200, self._render_installation(installation))
        raise _Failure(404, "Not Found")

    # -- internals: manifest --------------------------------------------------
    def _convert(self, request: _Request, code: str) -> _Answer:
        post = self._manifest_codes.pop(code, None)
        if post is None:
            raise _Failure(404, "Not Found")
        manifest = post.manifest
        app_id = self._next_app_id
        self._next_app_id += 1
        name = str(manifest.get("name") or f"app-{app_id}")
        slug = slugify(name) or f"app-{app_id}"
        taken = {a.slug for a in self._apps.values()}
        base_slug, suffix = slug, 2
        while slug in taken:
            slug, suffix = f"{base_slug}-{suffix}", suffix + 1
        pem = generate_private_key_pem()
        permissions = {
            str(k): str(v) for k, v in (manifest.get("default_permissions") or {}).items()
        }
        permissions.setdefault("metadata", "read")
        app = FakeApp(
            app_id=app_id,
            slug=slug,
            name=name,
            private_key_pem=pem,
            webhook_secret=secrets.token_hex(20),
            client_id=f"Iv1.{secrets.token_hex(8)}",
            client_secret=secrets.token_hex(20),
            owner=post.org or DEFAULT_WEB_USER,
            owner_type="Organization" if post.org else "User",
            description=str(manifest.get("description") or ""),
            external_url=str(manifest.get("url") or ""),
            permissions=permissions,
            events=[str(e) for e in manifest.get("default_events") or []],
            manifest=copy.deepcopy(manifest),
            created_at=_iso(),
            public_key=_public_key(pem),
        )
        self._apps[app_id] = app
        return _Answer(
            201,
            {
                **self._render_app(app),
                "client_secret": app.client_secret,
                "webhook_secret": app.webhook_secret,
                "pem": app.private_key_pem,
            },
        )

    def _web(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes
    ) -> _Answer:
        match = re.fullmatch(r"(?:/organizations/(?P<org>[^/]+))?/settings/apps/new", path)
        if match is None:
            return _Answer(404, raw=b"Not Found", content_type="text/plain; charset=utf-8")
        if method.upper() != "POST":
            return _Answer(
                405,
                raw=b"POST a manifest form here",
                content_type="text/plain; charset=utf-8",
                headers={"Allow": "POST"},
            )
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        state = query.get("state", form.get("state"))
        try:
            manifest = json.loads(form.get("manifest", ""))
        except ValueError:
            manifest = None
        problem = _manifest_problem(manifest)
        if problem is not None:
            return _Answer(400, raw=problem.encode(), content_type="text/plain; charset=utf-8")
        assert isinstance(manifest, dict)
        code = secrets.token_hex(10)
        post = ManifestPost(org=match.group("org"), state=state, manifest=manifest, code=code)
        with self._lock:
            self._manifest_codes[code] = post
            self.received_manifests.append(copy.deepcopy(manifest))
            self.manifest_posts.append(post)
        redirect = str(manifest["redirect_url"])
        params = {"code": code} if state is None else {"code": code, "state": state}
        location = f"{redirect}{'&' if '?' in redirect else '?'}{urlencode(params)}"
        return _Answer(302, headers={"Location": location})

    # -- internals: installation routes ---------------------------------------
    def _installation_repositories(
        self, request: _Request, installation: _Installation, token: _Token
    ) -> _Answer:
        names = token.repositories if token.repositories is not None else installation.repositories
        repositories = [self._repository(r) for r in names]
        page, headers = self._page(request, repositories)
        return _Answer(
            200,
            {
                "total_count": len(repositories),
                "repository_selection": "selected",
                "repositories": page,
            },
            headers=headers,
        )

    def _get_repository(self, request: _Request, installation: _Installation, repo: str) -> _Answer:
        return _Answer(200, self._repository(repo))

    def _get_user(
        self, request: _Request, installation: _Installation, token: _Token, login: str
    ) -> _Answer:
        login = unquote(login)
        bots = {app.bot_login.lower() for app in self._apps.values()}
        if login.lower() not in self._users and login.lower() not in bots:
            raise _Failure(404, "Not Found")
        return _Answer(200, self._user(login))

    def _revoke_token(
        self, request: _Request, installation: _Installation, token: _Token
    ) -> _Answer:
        token.revoked = True
        self._revocations.append(token.token)
        return _Answer(204)

    def _permission(
        self, request: _Request, installation: _Installation, repo: str, login: str
    ) -> _Answer:
        if login.lower() not in self._users:
            raise _Failure(404, "Not Found")
        role = self._permissions.get((repo.lower(), login.lower()), "none")
        user = self._user(login)
        rank = _RANK[role]
        user["permissions"] = {
            "admin": rank >= _RANK["admin"],
            "maintain": rank >= _RANK["maintain"],
            "push": rank >= _RANK["write"],
            "triage": rank >= _RANK["triage"],
            "pull": rank >= _RANK["read"],
        }
        user["role_name"] = role
        return _Answer(
            200, {"permission": _LEGACY_PERMISSION[role], "role_name": role, "user": user}
        )

    def _issue(self, repo: str, number: str | int) -> _Issue:
        issue = self._issues.get((repo.lower(), int(number)))
        if issue is None:
            raise _Failure(404, "Not Found")
        return issue

    def _get_issue(
        self, request: _Request, installation: _Installation, repo: str, number: str
    ) -> _Answer:
        return _Answer(200, self._render_issue(self._issue(repo, number)))

    def _get_pull(
        self, request: _Request, installation: _Installation, repo: str, number: str
    ) -> _Answer:
        issue = self._issue(repo, number)
        if issue.head is None:
            raise _Failure(404, "Not Found")
        return _Answer(200, self._render_pull(issue))

    def _bot(self, installation: _Installation) -> str:
        return self._apps[installation.app_id].bot_login

    @staticmethod
    def _text_field(request: _Request, name: str) -> str:
        value = request.body.get(name) if isinstance(request.body, dict) else None
        if not isinstance(value, str) or not value:
            raise _Failure(
                422,
                "Invalid request.",
                errors=[{"resource": "IssueComment", "code": "missing_field", "field": name}],
            )
        return value

    def _list_comments(
        self, request: _Request, installation: _Installation, repo: str, number: str
    ) -> _Answer:
        issue = self._issue(repo, number)
        found = sorted(
            (
                c
                for c in self._issue_comments.values()
                if c.repo == issue.repo and c.number == issue.number
            ),
            key=lambda c: c.comment_id,
        )
        since = request.query.get("since")
        if since:
            found = [c for c in found if c.updated_at >= since]
        return self._paginate(request, [self._render_issue_comment(c) for c in found])

    def _create_comment(
        self, request: _Request, installation: _Installation, repo: str, number: str
    ) -> _Answer:
        issue = self._issue(repo, number)
        body = self._text_field(request, "body")
        comment = self._new_issue_comment(issue, body, self._bot(installation))
        answer = _Answer(201, self._render_issue_comment(comment))
        answer.headers["Location"] = answer.body["url"]
        return answer

    def _issue_comment(self, repo: str, comment_id: str | int) -> _Comment:
        comment = self._issue_comments.get(int(comment_id))
        if comment is None or comment.repo.lower() != repo.lower():
            raise _Failure(404, "Not Found")
        return comment

    def _get_comment(
        self, request: _Request, installation: _Installation, repo: str, comment_id: str
    ) -> _Answer:
        return _Answer(200, self._render_issue_comment(self._issue_comment(repo, comment_id)))

    def _edit_comment(
        self, request: _Request, installation: _Installation, repo: str, comment_id: str
    ) -> _Answer:
        comment = self._issue_comment(repo, comment_id)
        comment.body = self._text_field(request, "body")
        comment.updated_at = _iso()
        return _Answer(200, self._render_issue_comment(comment))

    def _delete_comment(
        self, request: _Request, installation: _Installation, repo: str, comment_id: str
    ) -> _Answer:
        comment = self._issue_comment(repo, comment_id)
        del self._issue_comments[comment.comment_id]
        self._reactions.pop(("issue_comment", repo.lower(), comment.comment_id), None)
        return _Answer(204)

    def _list_review_comments(
        self, request: _Request, installation: _Installation, repo: str, number: str
    ) -> _Answer:
        issue = self._issue(repo, number)
        if issue.head is None:
            raise _Failure(404, "Not Found")
        found = sorted(
            (
                c
                for c in self._review_comments.values()
                if c.repo == issue.repo and c.number == issue.number
            ),
            key=lambda c: c.comment_id,
        )
        return self._paginate(request, [self._render_review_comment(c) for c in found])

    def _review_comment(self, repo: str, comment_id: str | int) -> _Comment:
        comment = self._review_comments.get(int(comment_id))
        if comment is None or comment.repo.lower() != repo.lower():
            raise _Failure(404, "Not Found")
        return comment

    def _get_review_comment(
        self, request: _Request, installation: _Installation, repo: str, comment_id: str
    ) -> _Answer:
        return _Answer(200, self._render_review_comment(self._review_comment(repo, comment_id)))

    def _edit_review_comment(
        self, request: _Request, installation: _Installation, repo: str, comment_id: str
    ) -> _Answer:
        comment = self._review_comment(repo, comment_id)
        comment.body = self._text_field(request, "body")
        comment.updated_at = _iso()
        return _Answer(200, self._render_review_comment(comment))

    def _delete_review_comment(
        self, request: _Request, installation: _Installation, repo: str, comment_id: str
    ) -> _Answer:
        comment = self._review_comment(repo, comment_id)
        del self._review_comments[comment.comment_id]
        self._reactions.pop(("review_comment", repo.lower(), comment.comment_id), None)
        return _Answer(204)

    def _reply(
        self,
        request: _Request,
        installation: _Installation,
        repo: str,
        number: str,
        comment_id: str,
    ) -> _Answer:
        issue = self._issue(repo, number)
        parent = self._review_comments.get(int(comment_id))
        if parent is None or (parent.repo, parent.number) != (issue.repo, issue.number):
            raise _Failure(404, "Not Found")
        body = self._text_field(request, "body")
        comment = self._new_review_comment(
            issue,
            body,
            self._bot(installation),
            path=parent.path or "",
            line=parent.line or 0,
            diff_hunk=parent.diff_hunk or "",
            top=parent.in_reply_to_id or parent.comment_id,
        )
        answer = _Answer(201, self._render_review_comment(comment))
        answer.headers["Location"] = answer.body["url"]
        return answer

    # -- internals: reactions -------------------------------------------------
    def _reaction_target(self, kind: str, repo: str, target: str) -> int:
        if kind == "issue_comment":
            return self._issue_comment(repo, target).comment_id
        if kind == "review_comment":
            return self._review_comment(repo, target).comment_id
        return self._issue(repo, target).number

    def _list_reactions(
        self, request: _Request, installation: _Installation, repo: str, target: str, kind: str
    ) -> _Answer:
        target_id = self._reaction_target(kind, repo, target)
        found = self._reactions.get((kind, repo.lower(), target_id), [])
        content = request.query.get("content")
        rendered = [self._render_reaction(r) for r in found if not content or r.content == content]
        return self._paginate(request, rendered)

    def _create_reaction(
        self, request: _Request, installation: _Installation, repo: str, target: str, kind: str
    ) -> _Answer:
        target_id = self._reaction_target(kind, repo, target)
        content = request.body.get("content") if isinstance(request.body, dict) else None
        if content not in REACTION_CONTENTS:
            raise _Failure(
                422,
                "Validation Failed",
                errors=[{"resource": "Reaction", "code": "invalid", "field": "content"}],
            )
        bot = self._bot(installation)
        found = self._reactions.setdefault((kind, repo.lower(), target_id), [])
        for reaction in found:
            if reaction.user == bot and reaction.content == content:
                return _Answer(200, self._render_reaction(reaction))
        reaction = _Reaction(
            reaction_id=next(self._reaction_ids), content=str(content), user=bot, created_at=_iso()
        )
        found.append(reaction)
        return _Answer(201, self._render_reaction(reaction))

    def _delete_reaction(
        self,
        request: _Request,
        installation: _Installation,
        repo: str,
        target: str,
        reaction_id: str,
        kind: str,
    ) -> _Answer:
        target_id = self._reaction_target(kind, repo, target)
        found = self._reactions.get((kind, repo.lower(), target_id), [])
        for reaction in found:
            if reaction.reaction_id == int(reaction_id):
                found.remove(reaction)
                return _Answer(204)
        raise _Failure(404, "Not Found")

    # -- internals: pagination ------------------------------------------------
    def _page(
        self, request: _Request, items: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        per_page = min(_positive_int(request.query.get("per_page"), DEFAULT_PER_PAGE), MAX_PER_PAGE)
        page = _positive_int(request.query.get("page"), 1)
        last = max(1, -(-len(items) // per_page))
        start = (page - 1) * per_page
        chosen = items[start : start + per_page]

        def link(number: int) -> str:
            query = {**request.query, "per_page": str(per_page), "page": str(number)}
            return f"<{self.api_url}{request.path}?{urlencode(query)}>"

        links: list[str] = []
        if page > 1:
            links.append(f'{link(min(page - 1, last))}; rel="prev"')
        if page < last:
            links.append(f'{link(page + 1)}; rel="next"')
            links.append(f'{link(last)}; rel="last"')
        if page > 1:
            links.append(f'{link(1)}; rel="first"')
        return chosen, ({"Link": ", ".join(links)} if links else {})

    def _paginate(self, request: _Request, items: list[dict[str, Any]]) -> _Answer:
        chosen, headers = self._page(request, items)
        return _Answer(200, chosen, headers=headers)


def _credentials(authorization: str) -> tuple[str | None, str | None]:
    """("jwt" | "token" | None, the credential) from an Authorization header."""
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if not scheme:
        return None, None
    if scheme.lower() == "token":
        return "token", credential or None
    if scheme.lower() == "bearer":
        # An app JWT has three dot-separated parts; installation tokens have none.
        return ("jwt" if credential.count(".") == 2 else "token"), credential or None
    return "token", credential or None


def _manifest_problem(manifest: Any) -> str | None:
    """Why a posted manifest is refused (None when it is acceptable)."""
    if not isinstance(manifest, dict):
        return "The manifest is not a JSON object."
    if not manifest.get("url"):
        return "The manifest needs a url."
    hook = manifest.get("hook_attributes")
    if not isinstance(hook, dict) or not hook.get("url"):
        return "The manifest needs hook_attributes.url."
    if not manifest.get("redirect_url"):
        return "The manifest needs a redirect_url."
    return None


# -- driving POST /github/webhooks ----------------------------------------------
def github_signature_headers(
    body: bytes, secret: str, *, event: str, delivery_id: str
) -> dict[str, str]:
    """The headers GitHub delivers a webhook with: X-Hub-Signature-256 is ``sha256=`` +
    hex HMAC-SHA256 of the body keyed by the webhook secret (X-Hub-Signature, SHA-1,
    is sent as well, as GitHub does)."""
    sha256 = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    sha1 = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return {
        "X-Hub-Signature-256": f"sha256={sha256}",
        "X-Hub-Signature": f"sha1={sha1}",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/fake0001",
    }
