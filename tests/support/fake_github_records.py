"""What the fake GitHub keeps and answers with, shared by its REST API
(tests/support/fake_github.py) and its repository hosting (fake_github_git.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

DOCUMENTATION_URL = "https://docs.github.com/rest"
# A permission's levels, each including the ones below it.
PERMISSION_LEVELS = {"read": 1, "write": 2, "admin": 3}


@dataclass
class Installation:
    installation_id: int
    app_id: int
    account: str
    repositories: list[str]  # canonical "owner/name"
    created_at: str


@dataclass
class Token:
    token: str
    installation_id: int
    expires_at: float
    repositories: list[str] | None  # narrowed at minting, None = the whole installation
    # What it may do: the installation's permissions, or those asked for at minting.
    permissions: dict[str, str] = field(default_factory=dict)
    requested_permissions: dict[str, str] | None = None
    expired: bool = False  # by FakeGitHub.expire_tokens
    revoked: bool = False  # by DELETE /installation/token

    def usable(self) -> bool:
        return not (self.expired or self.revoked or self.expires_at <= time.time())

    def grant(self) -> TokenGrant:
        return TokenGrant(
            token=self.token,
            installation_id=self.installation_id,
            repositories=None if self.repositories is None else list(self.repositories),
            requested_permissions=None
            if self.requested_permissions is None
            else dict(self.requested_permissions),
            permissions=dict(self.permissions),
            expires_at=self.expires_at,
            revoked=self.revoked,
        )


@dataclass(frozen=True)
class TokenGrant:
    """One access token as minted: what it was asked for and given (for assertions)."""

    token: str
    installation_id: int
    # The canonical "owner/name" it is narrowed to; None: every repository of the
    # installation.
    repositories: list[str] | None
    # The permissions asked for in the request (None: none asked, the installation's).
    requested_permissions: dict[str, str] | None
    permissions: dict[str, str]
    expires_at: float
    revoked: bool


@dataclass
class Issue:
    repo: str  # canonical "owner/name"
    number: int
    issue_id: int
    title: str
    body: str
    user: str
    created_at: str
    updated_at: str
    head: str | None = None  # set for pull requests: the head branch
    base: str | None = None
    # Pull requests only: the repository the head branch is in (None: this one; a
    # fork's "owner/name" otherwise), and their state.
    head_repo: str | None = None
    draft: bool = False
    state: str = "open"  # "open" | "closed"
    merged: bool = False
    requested_reviewers: list[str] = field(default_factory=list)


@dataclass
class Answer:
    status: int
    body: Any = None  # JSON-encoded unless raw is set; nothing is sent for 204/302
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json; charset=utf-8"


@dataclass
class Request:
    method: str
    path: str  # after api_url
    query: dict[str, str]
    body: Any
    auth: str | None
    credential: str | None
    installation_id: int | None


class Failure(Exception):
    """Raised by handlers to answer an error."""

    def __init__(self, status: int, message: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message or HTTPStatus(status).phrase
        self.extra = extra


def validation_failed(**error: Any) -> Failure:
    """GitHub's 422 "Validation Failed" with one entry in `errors` ({"resource",
    "code", and "field" or "message"})."""
    return Failure(422, "Validation Failed", errors=[error])


def allows(permissions: dict[str, str], name: str, level: str) -> bool:
    """Whether ``permissions`` ({"contents": "write", ...}) include ``name`` at ``level``."""
    return PERMISSION_LEVELS.get(permissions.get(name, ""), 0) >= PERMISSION_LEVELS[level]


def iso(epoch: float | None = None) -> str:
    when = datetime.fromtimestamp(time.time() if epoch is None else epoch, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "message": message,
        "documentation_url": DOCUMENTATION_URL,
        "status": str(status),
        **extra,
    }
