"""A fake GitLab REST API (v4) for tests, its projects' repositories over git's smart
HTTP, and the webhook deliveries GitLab would send.

`FakeGitlab` serves ``{url}/api/v4/...`` on loopback (point GITLAB_URL at ``fake.url``)
for the calls agent-relay makes, the way GitLab answers them:

- ``GET /user``: the token's own user (``commit_email`` included);
- ``GET /users?username=``: the users of that name (none, or one);
- ``GET /projects/:id``: the project (``default_branch``, ``http_url_to_repo``,
  ``web_url``), or 404 unless the token's user is a member;
- ``GET /projects/:id/members/all/:user_id``: a member with ``access_level``, or 404;
- ``GET /projects/:id/(issues|merge_requests)/:iid``: the issue or merge request;
- ``GET /projects/:id/merge_requests`` (``source_branch``, ``state``) and
  ``POST /projects/:id/merge_requests {"source_branch", "target_branch", "title",
  "description", "reviewer_ids"}``: 409 while an open one of the same branches exists,
  a ``Draft:`` title makes a draft;
- ``GET /projects/:id/repository/branches/:branch``, ``.../repository/commits/:sha``
  and ``.../repository/compare?from=&to=&straight=false`` (tests/support/gitlab_repository.py),
  for a Reporter or above (else 404);
- ``GET .../notes`` (``sort``, ``order_by=created_at``, ``per_page``, ``page``) and
  ``POST .../notes {"body"}``: notes, a new note starts a discussion of its own;
- ``PUT .../notes/:note_id {"body"}``: the note's author edits it (else 403);
- ``GET .../discussions/:discussion_id`` and ``POST .../discussions/:id/notes``;
- ``POST .../award_emoji`` and ``POST .../notes/:note_id/award_emoji {"name"}``:
  an award the same user already gave answers 404 "Award Emoji Name has already
  been taken", as GitLab does;
- ``GET|POST /projects/:id/hooks`` and ``PUT /projects/:id/hooks/:hook_id``.

``:id`` is a project id or its URL-encoded path (``group%2Fname``). Every request must
carry a token the fake knows (the bot's, or one `add_token` gave a user) as
``PRIVATE-TOKEN`` or ``Authorization: Bearer`` (else 401). Every request is recorded as
a `GitlabCall`; `fail_next` injects 429/5xx/4xx answers.

Given `GitRepositories`, a project added with ``files`` (or ``fork_of``) has a real bare
repository, served at ``{url}/{path}.git`` (its ``http_url_to_repo``) by `git
http-backend` (tests/support/git_http.py). Git sends the token as the password of Basic
auth, any user name: a Reporter's token may fetch, a Developer's may push (else 404 and
403 as GitLab answers; no or an unknown token: 401, so git asks its credential helper).
Every git request is recorded as a `GitRequest`. A merge request's head commit is kept
at ``refs/merge-requests/:iid/head`` of its target project, forks' included, and moves
when its branch is pushed.

The module-level builders make the webhook bodies GitLab sends (shaped as GitLab's
"Webhook events" documentation shows them) from the fake's state, and the headers
of a delivery.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import uuid
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

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
from tests.support.gitlab_repository import branch_json, commit_json, compare_json, resolve
from tests.support.loopback import LoopbackServer

BOT_TOKEN = "glpat-fake-bot-token-0123456789"
BOT_USER_ID = 900
BOT_USERNAME = "openhands"
WEBHOOK_SECRET = "gitlab-webhook-secret-of-the-test"
TIMESTAMP = "2026-01-05T10:00:00.000Z"
# GitLab's access levels: what a token's user needs to fetch, and to push.
REPORTER, DEVELOPER = 20, 30
_NO_PROJECT = (
    "The project you were looking for could not be found or you don't have permission to view it."
)
# Titles GitLab takes to mean a draft (compared in lower case).
_DRAFT_PREFIXES = ("draft:", "[draft]", "(draft)")
_KINDS = {"issues": "issue", "merge_requests": "merge_request"}
_NOTEABLE_TYPES = {"issue": "Issue", "merge_request": "MergeRequest"}


@dataclass(frozen=True)
class GitlabCall:
    """One request the fake received (injected failures included)."""

    method: str
    path: str  # decoded, without /api/v4 and the query, e.g. /projects/7/issues/3/notes
    query: dict[str, str]
    body: Any
    token: str | None
    status: int


@dataclass(frozen=True)
class GitRequest:
    """One git request over HTTP, and the fake's answer to its credentials: 200 when git
    was let through, else 401, 403 or 404."""

    project: str  # the path in the URL, e.g. acme/widgets
    push: bool
    user: str | None  # the Basic auth user name git sent
    token: str | None  # the Basic auth password
    status: int


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    headers: dict[str, str]
    message: str
    remaining: int


@dataclass
class _Item:
    """An issue or a merge request."""

    project_id: int
    kind: str  # "issue" | "merge_request"
    iid: int
    id: int
    title: str
    description: str
    author_id: int
    source_branch: str | None = None
    target_branch: str | None = None
    labels: list[str] = field(default_factory=list)
    awards: list[tuple[str, int]] = field(default_factory=list)
    state: str = "opened"
    # A merge request's: the project its branch is in (a fork's, or its own).
    source_project_id: int | None = None
    draft: bool = False
    reviewer_ids: list[int] = field(default_factory=list)


@dataclass
class _Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def _not_found(what: str = "Not found") -> _Answer:
    return _Answer(404, {"message": f"404 {what}"})


class FakeGitlab(LoopbackServer):
    """Threaded fake of a GitLab instance's REST API; use as a context manager."""

    thread_name = "fake-gitlab"

    def __init__(
        self,
        *,
        token: str = BOT_TOKEN,
        bot_user_id: int = BOT_USER_ID,
        bot_username: str = BOT_USERNAME,
        repositories: GitRepositories | None = None,
    ) -> None:
        super().__init__()
        self.token = token
        self.bot_user_id = bot_user_id
        self.repositories = repositories
        self._lock = threading.Lock()
        # Every token the fake takes, and whose it is.
        self._tokens: dict[str, int] = {token: bot_user_id}
        self._commit_emails: dict[int, str | None] = {}
        self._git_requests: list[GitRequest] = []
        self._users: dict[int, dict[str, Any]] = {}
        self._projects: dict[int, dict[str, Any]] = {}
        self._members: dict[tuple[int, int], int] = {}
        self._items: dict[tuple[int, str, int], _Item] = {}
        self._notes: dict[int, dict[str, Any]] = {}
        self._note_awards: dict[int, list[tuple[str, int]]] = {}
        self._hooks: dict[int, list[dict[str, Any]]] = {}
        self._hook_tokens: dict[int, str] = {}
        self._faults: list[_Fault] = []
        self._calls: list[GitlabCall] = []
        self._ids = itertools.count(5000)
        self.add_user(bot_user_id, bot_username, name="OpenHands")

    def _git_path(self, handler: BaseHTTPRequestHandler) -> bool:
        """Answer a git smart-HTTP request, if this is one (before its body is read)."""
        found = split_git_path(handler.path)
        if found is None:
            return False
        project, path_info = found
        self._serve_git(handler, project, path_info, urlsplit(handler.path).query)
        return True

    # -- HTTP -----------------------------------------------------------------
    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                if fake._git_path(self):
                    return
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                answer = fake._dispatch(self.command, self.path, self.headers, raw)
                payload = json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    # -- set-up ---------------------------------------------------------------
    def add_user(
        self,
        user_id: int,
        username: str,
        *,
        name: str | None = None,
        commit_email: str | None = None,
    ) -> None:
        """A user; `commit_email` is what `GET /user` shows to the user's own token."""
        with self._lock:
            self._commit_emails[user_id] = commit_email
            self._users[user_id] = {
                "id": user_id,
                "username": username,
                "name": name or username.title(),
                "state": "active",
                "avatar_url": f"https://www.gravatar.com/avatar/{user_id}",
                "web_url": f"{self._base()}/{username}",
            }

    def add_token(self, token: str, user_id: int) -> None:
        """A token of `user_id` (a person's, or a project access token's bot user)."""
        with self._lock:
            self._tokens[token] = user_id

    def remove_token(self, token: str) -> None:
        """Revoke a token: it is refused from now on (401)."""
        with self._lock:
            self._tokens.pop(token, None)

    def add_project(
        self,
        project_id: int,
        path: str,
        *,
        default_branch: str = "main",
        files: dict[str, str] | None = None,
        fork_of: int | None = None,
    ) -> None:
        """A project; with `files` (a first commit on `default_branch`) or `fork_of` (a
        copy of that project's repository) it has a real repository in `repositories`."""
        if files is not None or fork_of is not None:
            assert self.repositories is not None, "pass repositories= to serve repositories"
            if fork_of is not None:
                self.repositories.fork(self.project(fork_of)["path_with_namespace"], path)
            else:
                self.repositories.create(path, dict(files or {}), default_branch=default_branch)
        with self._lock:
            self._projects[project_id] = {
                "id": project_id,
                "name": path.rsplit("/", 1)[-1],
                "path_with_namespace": path,
                "_default_branch": default_branch,
                "_fork_of": fork_of,
            }

    def set_access(self, project_id: int, user_id: int, access_level: int) -> None:
        """Make `user_id` a member of the project (30 Developer, 20 Reporter...)."""
        with self._lock:
            self._members[(project_id, user_id)] = access_level

    def add_issue(
        self, project_id: int, iid: int, *, title: str, description: str = "", author_id: int
    ) -> None:
        with self._lock:
            self._items[(project_id, "issue", iid)] = _Item(
                project_id, "issue", iid, next(self._ids), title, description, author_id
            )

    def add_merge_request(
        self,
        project_id: int,
        iid: int,
        *,
        title: str,
        description: str = "",
        author_id: int,
        source_branch: str,
        target_branch: str = "main",
        source_project_id: int | None = None,
        state: str = "opened",
        draft: bool = False,
    ) -> None:
        """A merge request of `source_branch` (in `source_project_id`, a fork, when given)
        into `target_branch`; when the project has a repository, its head commit is kept
        at refs/merge-requests/:iid/head, as GitLab keeps it."""
        with self._lock:
            item = _Item(
                project_id,
                "merge_request",
                iid,
                next(self._ids),
                title,
                description,
                author_id,
                source_branch=source_branch,
                target_branch=target_branch,
                state=state,
                source_project_id=source_project_id or project_id,
                draft=draft,
            )
            self._items[(project_id, "merge_request", iid)] = item
            self._keep_head(item)

    def add_note(
        self,
        project_id: int,
        kind: str,
        iid: int,
        *,
        author_id: int,
        body: str,
        discussion_id: str | None = None,
        system: bool = False,
    ) -> dict[str, Any]:
        """A note by a person (a new discussion, or a reply in `discussion_id`)."""
        with self._lock:
            return copy.deepcopy(
                self._create_note(
                    project_id, kind, iid, author_id, body, discussion_id, system=system
                )
            )

    # -- fault injection ------------------------------------------------------
    def fail_next(
        self,
        method: str,
        path_pattern: str,
        *,
        status: int,
        count: int = 1,
        retry_after: int | None = None,
        ratelimit_reset: float | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next `count` `method` calls whose path matches `path_pattern` (a
        regex searched in the decoded path) with `status`, before they do anything."""
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if ratelimit_reset is not None:
            headers |= {"RateLimit-Remaining": "0", "RateLimit-Reset": str(int(ratelimit_reset))}
        default = {429: "Retry later", 403: "403 Forbidden", 404: "404 Not found"}
        with self._lock:
            self._faults.append(
                _Fault(
                    method,
                    re.compile(path_pattern),
                    status,
                    headers,
                    message or default.get(status, "500 Internal Server Error"),
                    count,
                )
            )

    # -- inspection -----------------------------------------------------------
    def calls(self, method: str | None = None, path_pattern: str | None = None) -> list[GitlabCall]:
        with self._lock:
            return [
                call
                for call in self._calls
                if method in (None, call.method)
                and (path_pattern is None or re.search(path_pattern, call.path))
            ]

    def notes(self, project_id: int, kind: str, iid: int) -> list[dict[str, Any]]:
        """Every note of an issue or MR, oldest first."""
        with self._lock:
            return [
                copy.deepcopy(note)
                for note in self._notes.values()
                if (note["_project_id"], note["_kind"], note["noteable_iid"])
                == (project_id, kind, iid)
            ]

    def bot_notes(self, project_id: int, kind: str, iid: int) -> list[dict[str, Any]]:
        return [
            note
            for note in self.notes(project_id, kind, iid)
            if note["author"]["id"] == self.bot_user_id
        ]

    def note_awards(self, note_id: int) -> list[tuple[str, int]]:
        """(emoji name, user id) of the awards on a note."""
        with self._lock:
            return list(self._note_awards.get(note_id, []))

    def item_awards(self, project_id: int, kind: str, iid: int) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._items[(project_id, kind, iid)].awards)

    def hooks(self, project_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._hooks.get(project_id, []))

    def hook_token(self, hook_id: int) -> str | None:
        with self._lock:
            return self._hook_tokens.get(hook_id)

    def project(self, project_id: int) -> dict[str, Any]:
        with self._lock:
            return self._project_json(project_id)

    def item(self, project_id: int, kind: str, iid: int) -> _Item:
        with self._lock:
            return copy.deepcopy(self._items[(project_id, kind, iid)])

    def user(self, user_id: int) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._users[user_id])

    def merge_requests(self, project_id: int) -> list[_Item]:
        """The project's merge requests, oldest first."""
        with self._lock:
            return [
                copy.deepcopy(item)
                for (pid, kind, _), item in sorted(self._items.items())
                if pid == project_id and kind == "merge_request"
            ]

    def git_requests(self, project: str | None = None) -> list[GitRequest]:
        """The git requests received (for the project of that path, when given)."""
        with self._lock:
            return [r for r in self._git_requests if project in (None, r.project)]

    # -- internals: state -----------------------------------------------------
    def _base(self) -> str:
        return self.url if self._server is not None else "http://gitlab.invalid"

    def _project_json(self, project_id: int) -> dict[str, Any]:
        project = self._projects[project_id]
        path = project["path_with_namespace"]
        web_url = f"{self._base()}/{path}"
        return {
            **{key: value for key, value in project.items() if not key.startswith("_")},
            "description": "",
            "web_url": web_url,
            "avatar_url": None,
            "git_ssh_url": f"git@gitlab.invalid:{path}.git",
            "git_http_url": f"{web_url}.git",
            "namespace": path.split("/", 1)[0],
            "visibility_level": 0,
            "default_branch": project["_default_branch"],
            "homepage": web_url,
            "url": f"{web_url}.git",
            "ssh_url": f"git@gitlab.invalid:{path}.git",
            "http_url": f"{web_url}.git",
        }

    def _rest_project_json(self, project_id: int) -> dict[str, Any]:
        """The project as `GET /projects/:id` shows it (webhooks show it otherwise)."""
        project = self._projects[project_id]
        path = project["path_with_namespace"]
        has_repository = self._has_repository(project_id)
        shown: dict[str, Any] = {
            "id": project_id,
            "name": project["name"],
            "path": project["name"],
            "path_with_namespace": path,
            "namespace": {"full_path": path.rsplit("/", 1)[0]},
            # GitLab names none while the repository is empty.
            "default_branch": project["_default_branch"] if has_repository else None,
            "visibility": "private",
            "web_url": f"{self._base()}/{path}",
            "http_url_to_repo": f"{self._base()}/{path}.git",
            "ssh_url_to_repo": f"git@gitlab.invalid:{path}.git",
            "empty_repo": not has_repository,
        }
        if project["_fork_of"] is not None:
            shown["forked_from_project"] = {"id": project["_fork_of"]}
        return shown

    def _item_url(self, item: _Item) -> str:
        path = self._projects[item.project_id]["path_with_namespace"]
        segment = "issues" if item.kind == "issue" else "merge_requests"
        return f"{self._base()}/{path}/-/{segment}/{item.iid}"

    def _item_json(self, item: _Item) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "id": item.id,
            "iid": item.iid,
            "project_id": item.project_id,
            "title": item.title,
            "description": item.description,
            "state": item.state,
            "author": self._author(item.author_id),
            "labels": list(item.labels),
            "web_url": self._item_url(item),
        }
        if item.kind == "merge_request":
            shown |= {
                "source_branch": item.source_branch,
                "target_branch": item.target_branch,
                "source_project_id": item.source_project_id,
                "target_project_id": item.project_id,
                "draft": item.draft,
                "work_in_progress": item.draft,
                "reviewers": [self._author(user_id) for user_id in item.reviewer_ids],
            }
        return shown

    def _author(self, user_id: int) -> dict[str, Any]:
        user = self._users[user_id]
        return {key: user[key] for key in ("id", "username", "name", "state", "avatar_url")}

    def _create_note(
        self,
        project_id: int,
        kind: str,
        iid: int,
        author_id: int,
        body: str,
        discussion_id: str | None,
        *,
        system: bool = False,
    ) -> dict[str, Any]:
        item = self._items[(project_id, kind, iid)]
        note_id = next(self._ids)
        note = {
            "id": note_id,
            "type": "DiscussionNote" if discussion_id else None,
            "body": body,
            "author": self._author(author_id),
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "system": system,
            "noteable_id": item.id,
            "noteable_type": _NOTEABLE_TYPES[kind],
            "noteable_iid": iid,
            "project_id": project_id,
            "resolvable": False,
            "confidential": False,
            "internal": False,
            "discussion_id": discussion_id or uuid.uuid4().hex + uuid.uuid4().hex[:8],
            "_project_id": project_id,
            "_kind": kind,
        }
        self._notes[note_id] = note
        return note

    @staticmethod
    def _public_note(note: dict[str, Any]) -> dict[str, Any]:
        return {
            key: value
            for key, value in note.items()
            if not key.startswith("_") and key != "discussion_id"
        }

    def _has_repository(self, project_id: int) -> bool:
        path = self._projects[project_id]["path_with_namespace"]
        return self.repositories is not None and self.repositories.path(path).is_dir()

    def _keep_head(self, item: _Item) -> None:
        """Point refs/merge-requests/:iid/head of the target project at the head of the
        merge request's branch (fetched from the fork, for a fork's), as GitLab does."""
        source_id = item.source_project_id or item.project_id
        if not (self._has_repository(item.project_id) and self._has_repository(source_id)):
            return
        assert self.repositories is not None and item.source_branch is not None
        target = self._projects[item.project_id]["path_with_namespace"]
        source = self._projects[source_id]["path_with_namespace"]
        ref = f"refs/merge-requests/{item.iid}/head"
        if source_id == item.project_id:
            sha = self.repositories.branch_head(target, item.source_branch)
            if sha is not None:
                self.repositories.set_ref(target, ref, sha)
            return
        run_git(
            "--git-dir",
            str(self.repositories.path(target)),
            "fetch",
            "--quiet",
            "--no-tags",
            str(self.repositories.path(source)),
            f"+refs/heads/{item.source_branch}:{ref}",
        )

    # -- internals: git over HTTP ---------------------------------------------
    def _serve_git(
        self, handler: BaseHTTPRequestHandler, project: str, path_info: str, query: str
    ) -> None:
        credentials = basic_auth(handler.headers.get("Authorization"))
        user, token = credentials if credentials else (None, None)
        push = wants_push(path_info, query)
        with self._lock:
            project_id = self._project_id(project)
            user_id = self._tokens.get(token or "") if user else None
            if user_id is None:
                status = 401
            elif project_id is None or not self._has_repository(project_id):
                status = 404
            elif self._level(project_id, user_id) < REPORTER:
                status = 404
            elif push and self._level(project_id, user_id) < DEVELOPER:
                status = 403
            else:
                status = 200
            self._git_requests.append(GitRequest(project, push, user, token, status))
        if status == 401:
            challenge(handler, "GitLab")
        elif status == 404:
            refuse(handler, 404, _NO_PROJECT)
        elif status == 403:
            refuse(handler, 403, "You are not allowed to push code to this project.")
        else:
            assert self.repositories is not None and user is not None
            serve_git(handler, self.repositories.path(project), path_info, query, remote_user=user)
            if push:
                self._pushed(project)

    def _pushed(self, project: str) -> None:
        """Move the heads of the open merge requests whose branch is in `project`."""
        with self._lock:
            project_id = self._project_id(project)
            for item in self._items.values():
                if item.kind == "merge_request" and item.state == "opened":
                    if (item.source_project_id or item.project_id) == project_id:
                        self._keep_head(item)

    # -- internals: HTTP ------------------------------------------------------
    def _dispatch(self, method: str, raw_path: str, headers: Any, raw: bytes) -> _Answer:
        parts = urlsplit(raw_path)
        path = parts.path.removeprefix("/api/v4")
        segments = [unquote(segment) for segment in path.strip("/").split("/")]
        decoded = "/" + "/".join(segments)
        query = dict(parse_qsl(parts.query))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        token = headers.get("PRIVATE-TOKEN")
        authorization = headers.get("Authorization") or ""
        if token is None and authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ")
        with self._lock:
            answer = self._answer(method, decoded, segments, query, body, token)
            self._calls.append(GitlabCall(method, decoded, query, body, token, answer.status))
        return answer

    def _answer(
        self,
        method: str,
        path: str,
        segments: list[str],
        query: dict[str, str],
        body: Any,
        token: str | None,
    ) -> _Answer:
        user_id = self._tokens.get(token or "")
        if user_id is None:
            return _Answer(401, {"message": "401 Unauthorized"})
        for fault in self._faults:
            if fault.remaining > 0 and fault.method == method and fault.pattern.search(path):
                fault.remaining -= 1
                return _Answer(fault.status, {"message": fault.message}, dict(fault.headers))
        if segments == ["user"] and method == "GET":
            user = {**self._users[user_id], "commit_email": self._commit_emails.get(user_id)}
            return _Answer(200, copy.deepcopy(user))
        if segments == ["users"] and method == "GET":
            return self._users_named(query.get("username", ""))
        if segments == ["projects"] and method == "GET":
            return self._list_projects(user_id, query)
        if not segments or segments[0] != "projects" or len(segments) < 2:
            return _not_found()
        project_id = self._project_id(segments[1])
        if project_id is None:
            return _not_found("Project Not Found")
        rest = segments[2:]
        if not rest or rest == ["merge_requests"]:
            return self._project_call(method, project_id, user_id, rest, query, body)
        if rest[0] == "repository":
            return self._repository_call(method, project_id, user_id, rest[1:], query)
        if rest[0] == "members" and len(rest) == 3 and rest[1] == "all" and method == "GET":
            return self._member(project_id, int(rest[2]))
        if rest[0] == "hooks":
            return self._hooks_call(method, project_id, rest[1:], body)
        if rest[0] in _KINDS and len(rest) >= 2 and rest[1].isdigit():
            item = self._items.get((project_id, _KINDS[rest[0]], int(rest[1])))
            if item is None:
                return _not_found()
            return self._item_call(method, item, rest[2:], query, body, user_id)
        return _not_found()

    def _list_projects(self, user_id: int, query: dict[str, str]) -> _Answer:
        """`GET /projects`: only `membership=true` is served (the fake has no public
        projects), one page of `per_page` (default 20) with a Link to the next."""
        if query.get("membership") != "true":
            return _Answer(400, {"error": "the fake serves membership=true only"})
        mine = [
            self._rest_project_json(project_id)
            for project_id in sorted(self._projects)
            if self._level(project_id, user_id) > 0
        ]
        per_page = int(query.get("per_page", "20"))
        page = int(query.get("page", "1"))
        shown = mine[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(mine):
            following = urlencode({**query, "page": str(page + 1)})
            headers["Link"] = f'<{self._base()}/api/v4/projects?{following}>; rel="next"'
        return _Answer(200, shown, headers)

    def _level(self, project_id: int, user_id: int) -> int:
        """The user's access level in the project (0: not a member)."""
        return self._members.get((project_id, user_id), 0)

    def _users_named(self, username: str) -> _Answer:
        found = [
            self._author(user_id)
            for user_id, user in self._users.items()
            if user["username"].lower() == username.lower()
        ]
        return _Answer(200, found)

    def _project_call(
        self,
        method: str,
        project_id: int,
        user_id: int,
        rest: list[str],
        query: dict[str, str],
        body: Any,
    ) -> _Answer:
        """The project itself, and its merge requests listed or opened (members only)."""
        if self._level(project_id, user_id) == 0:
            return _not_found("Project Not Found")
        if not rest and method == "GET":
            return _Answer(200, self._rest_project_json(project_id))
        if rest == ["merge_requests"] and method == "GET":
            found = [
                self._item_json(item)
                for (pid, kind, _), item in sorted(self._items.items())
                if pid == project_id
                and kind == "merge_request"
                and query.get("state", item.state) in (item.state, "all")
                and query.get("source_branch", item.source_branch) == item.source_branch
            ]
            return _Answer(200, found[::-1])  # newest first, as GitLab lists them
        if rest == ["merge_requests"] and method == "POST":
            return self._open_merge_request(project_id, user_id, body or {})
        return _not_found()

    def _open_merge_request(self, project_id: int, user_id: int, body: dict[str, Any]) -> _Answer:
        for name in ("source_branch", "target_branch", "title"):
            if not isinstance(body.get(name), str) or not body[name]:
                return _Answer(400, {"error": f"{name} is missing"})
        if body["source_branch"] == body["target_branch"]:
            message = "You can't use same project/branch for source and target"
            return _Answer(409, {"message": [message]})
        for item in self._items.values():
            if (
                item.project_id == project_id
                and item.kind == "merge_request"
                and item.state == "opened"
                and item.source_project_id == project_id
                and (item.source_branch, item.target_branch)
                == (body["source_branch"], body["target_branch"])
            ):
                message = (
                    f"Another open merge request already exists for this source branch: !{item.iid}"
                )
                return _Answer(409, {"message": [message]})
        iids = [
            iid for (pid, kind, iid) in self._items if (pid, kind) == (project_id, "merge_request")
        ]
        title = body["title"]
        item = _Item(
            project_id,
            "merge_request",
            max(iids, default=0) + 1,
            next(self._ids),
            title,
            str(body.get("description") or ""),
            user_id,
            source_branch=body["source_branch"],
            target_branch=body["target_branch"],
            source_project_id=project_id,
            draft=title.lower().startswith(_DRAFT_PREFIXES),
            reviewer_ids=[int(r) for r in body.get("reviewer_ids") or [] if int(r) in self._users],
        )
        self._items[(project_id, "merge_request", item.iid)] = item
        self._keep_head(item)
        return _Answer(201, self._item_json(item))

    def _repository_call(
        self, method: str, project_id: int, user_id: int, rest: list[str], query: dict[str, str]
    ) -> _Answer:
        """Branches, commits and comparisons of the project's repository (Reporter+)."""
        if self._level(project_id, user_id) < REPORTER or method != "GET":
            return _not_found("Project Not Found")
        repositories, project = self.repositories, self._projects[project_id]
        if repositories is None or not self._has_repository(project_id):
            return _not_found("Repository Not Found")
        path = project["path_with_namespace"]
        web_url = f"{self._base()}/{path}"
        if len(rest) == 2 and rest[0] == "branches":
            branch = branch_json(repositories, path, rest[1], web_url, project["_default_branch"])
            return _Answer(200, branch) if branch else _not_found("Branch Not Found")
        if len(rest) == 2 and rest[0] == "commits":
            sha = resolve(repositories, path, rest[1])
            if sha is None:
                return _not_found("Commit Not Found")
            return _Answer(200, commit_json(repositories, path, sha, web_url))
        if rest == ["compare"]:
            if query.get("straight", "false") != "false":
                return _Answer(400, {"error": "the fake compares with straight=false only"})
            base, head = query.get("from", ""), query.get("to", "")
            compared = compare_json(repositories, path, base, head, web_url)
            return _Answer(200, compared) if compared else _not_found("Ref Not Found")
        return _not_found()

    def _project_id(self, reference: str) -> int | None:
        if reference.isdigit():
            return int(reference) if int(reference) in self._projects else None
        for project_id, project in self._projects.items():
            if project["path_with_namespace"] == reference:
                return project_id
        return None

    def _member(self, project_id: int, user_id: int) -> _Answer:
        level = self._members.get((project_id, user_id))
        if level is None or user_id not in self._users:
            return _not_found()
        return _Answer(200, {**self._author(user_id), "access_level": level})

    def _item_call(
        self,
        method: str,
        item: _Item,
        rest: list[str],
        query: dict[str, str],
        body: Any,
        user_id: int,
    ) -> _Answer:
        if not rest and method == "GET":
            return _Answer(200, self._item_json(item))
        if rest == ["award_emoji"] and method == "POST":
            return self._award(item.awards, body, item.id)
        if rest == ["notes"] and method == "GET":
            return self._list_notes(item, query)
        if rest == ["notes"] and method == "POST":
            return self._post_note(item, body, None)
        if len(rest) == 2 and rest[0] == "notes" and method == "PUT":
            return self._edit_note(item, rest[1], body, user_id)
        if len(rest) == 3 and rest[0] == "notes" and rest[2] == "award_emoji":
            note = self._notes.get(int(rest[1])) if rest[1].isdigit() else None
            if note is None or note["noteable_id"] != item.id or method != "POST":
                return _not_found()
            return self._award(self._note_awards.setdefault(note["id"], []), body, note["id"])
        if len(rest) >= 2 and rest[0] == "discussions":
            discussion = [
                note
                for note in self._notes.values()
                if note["discussion_id"] == rest[1] and note["noteable_id"] == item.id
            ]
            if not discussion:
                return _not_found()
            if len(rest) == 2 and method == "GET":
                return _Answer(
                    200,
                    {
                        "id": rest[1],
                        "individual_note": len(discussion) == 1,
                        "notes": [self._public_note(note) for note in discussion],
                    },
                )
            if rest[2:] == ["notes"] and method == "POST":
                return self._post_note(item, body, rest[1])
        return _not_found()

    def _award(self, awards: list[tuple[str, int]], body: Any, awardable_id: int) -> _Answer:
        name = (body or {}).get("name")
        if not name:
            return _Answer(400, {"error": "name is missing"})
        if (name, self.bot_user_id) in awards:
            return _not_found("Award Emoji Name has already been taken")
        awards.append((name, self.bot_user_id))
        return _Answer(
            201,
            {
                "id": next(self._ids),
                "name": name,
                "user": self._author(self.bot_user_id),
                "awardable_id": awardable_id,
            },
        )

    def _list_notes(self, item: _Item, query: dict[str, str]) -> _Answer:
        notes = [note for note in self._notes.values() if note["noteable_id"] == item.id]
        notes.sort(key=lambda note: note["id"], reverse=query.get("sort", "desc") == "desc")
        per_page = min(int(query.get("per_page") or 20), 100)
        page = int(query.get("page") or 1)
        chosen = notes[(page - 1) * per_page : page * per_page]
        headers = {"X-Total": str(len(notes)), "X-Page": str(page)}
        return _Answer(200, [self._public_note(note) for note in chosen], headers)

    def _post_note(self, item: _Item, body: Any, discussion_id: str | None) -> _Answer:
        text = (body or {}).get("body")
        if not isinstance(text, str) or not text:
            return _Answer(400, {"error": "body is missing"})
        if len(text) > 1_000_000:
            return _Answer(
                422, {"message": {"note": ["is too long (maximum is 1000000 characters)"]}}
            )
        note = self._create_note(
            item.project_id, item.kind, item.iid, self.bot_user_id, text, discussion_id
        )
        return _Answer(201, self._public_note(note))

    def _edit_note(self, item: _Item, note_id: str, body: Any, user_id: int) -> _Answer:
        note = self._notes.get(int(note_id)) if note_id.isdigit() else None
        if note is None or note["noteable_id"] != item.id:
            return _not_found()
        # GitLab lets only a note's author change its body.
        if note["author"]["id"] != user_id:
            return _Answer(403, {"message": "403 Forbidden"})
        text = (body or {}).get("body")
        if not isinstance(text, str) or not text:
            return _Answer(400, {"error": "body is missing"})
        note["body"] = text
        return _Answer(200, self._public_note(note))

    def _hooks_call(self, method: str, project_id: int, rest: list[str], body: Any) -> _Answer:
        hooks = self._hooks.setdefault(project_id, [])
        if not rest and method == "GET":
            return _Answer(200, copy.deepcopy(hooks))
        if not rest and method == "POST":
            fields = dict(body or {})
            token = fields.pop("token", None)
            hook = {"id": next(self._ids), "project_id": project_id, **_HOOK_DEFAULTS, **fields}
            hooks.append(hook)
            if token is not None:
                self._hook_tokens[hook["id"]] = token
            return _Answer(201, copy.deepcopy(hook))
        if len(rest) == 1 and rest[0].isdigit() and method == "PUT":
            for hook in hooks:
                if hook["id"] == int(rest[0]):
                    fields = dict(body or {})
                    token = fields.pop("token", None)
                    hook.update(fields)
                    if token is not None:
                        self._hook_tokens[hook["id"]] = token
                    return _Answer(200, copy.deepcopy(hook))
        return _not_found()


# What GitLab reports for a hook created without saying otherwise.
_HOOK_DEFAULTS: dict[str, Any] = {
    "push_events": True,
    "tag_push_events": False,
    "issues_events": False,
    "confidential_issues_events": False,
    "merge_requests_events": False,
    "note_events": False,
    "confidential_note_events": False,
    "pipeline_events": False,
    "job_events": False,
    "wiki_page_events": False,
    "deployment_events": False,
    "releases_events": False,
    "enable_ssl_verification": True,
}


# -- webhook deliveries -----------------------------------------------------------


def delivery_headers(
    event: str, *, secret: str | None = WEBHOOK_SECRET, event_uuid: str | None = None
) -> dict[str, str]:
    """The headers of a GitLab webhook request (a fresh X-Gitlab-Event-UUID by default)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/18.0.0",
        "X-Gitlab-Event": event,
        "X-Gitlab-Instance": "https://gitlab.invalid",
        "X-Gitlab-Webhook-UUID": "0f2ad1c7-2f2b-4c1f-9d8a-6f0b1e3c5a77",
        "X-Gitlab-Event-UUID": event_uuid or str(uuid.uuid4()),
        "Idempotency-Key": str(uuid.uuid4()),
    }
    if secret is not None:
        headers["X-Gitlab-Token"] = secret
    return headers


def _hook_user(fake: FakeGitlab, user_id: int) -> dict[str, Any]:
    user = fake.user(user_id)
    return {
        "id": user["id"],
        "name": user["name"],
        "username": user["username"],
        "avatar_url": user["avatar_url"],
        "email": "[REDACTED]",
    }


def _repository(project: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": project["name"],
        "url": project["url"],
        "description": project["description"],
        "homepage": project["homepage"],
    }


def _hook_item(fake: FakeGitlab, item: _Item) -> dict[str, Any]:
    """An issue or MR as a Note Hook carries it (under "issue" / "merge_request")."""
    shown: dict[str, Any] = {
        "id": item.id,
        "iid": item.iid,
        "title": item.title,
        "description": item.description,
        "author_id": item.author_id,
        "project_id": item.project_id,
        "created_at": "2026-01-02 09:00:00 UTC",
        "updated_at": "2026-01-05 10:00:00 UTC",
        "state": item.state,
        "labels": [_label(title, item.project_id) for title in item.labels],
        "url": fake._item_url(item),
    }
    if item.kind == "merge_request":
        project = fake.project(item.project_id)
        source = fake.project(item.source_project_id or item.project_id)
        shown |= {
            "source_branch": item.source_branch,
            "target_branch": item.target_branch,
            "source_project_id": item.source_project_id,
            "target_project_id": item.project_id,
            "merge_status": "can_be_merged",
            "detailed_merge_status": "mergeable",
            "draft": item.draft,
            "work_in_progress": item.draft,
            "source": source,
            "target": project,
        }
    else:
        shown |= {"assignee_ids": [], "assignee_id": None, "confidential": False}
    return shown


def note_hook(fake: FakeGitlab, note: dict[str, Any], *, action: str = "create") -> dict[str, Any]:
    """The Note Hook body GitLab sends for `note` (a dict `add_note` returned)."""
    project = fake.project(note["project_id"])
    item = fake.item(note["project_id"], note["_kind"], note["noteable_iid"])
    segment = "issues" if item.kind == "issue" else "merge_requests"
    return {
        "object_kind": "note",
        "event_type": "note",
        "user": _hook_user(fake, note["author"]["id"]),
        "project_id": project["id"],
        "project": project,
        "repository": _repository(project),
        "object_attributes": {
            "attachment": None,
            "author_id": note["author"]["id"],
            "change_position": None,
            "commit_id": None,
            "created_at": "2026-01-05 10:00:00 UTC",
            "discussion_id": note["discussion_id"],
            "id": note["id"],
            "line_code": None,
            "note": note["body"],
            "noteable_id": item.id,
            "noteable_type": note["noteable_type"],
            "original_position": None,
            "position": None,
            "project_id": project["id"],
            "resolved_at": None,
            "resolved_by_id": None,
            "resolved_by_push": None,
            "st_diff": None,
            "system": note["system"],
            "type": note["type"],
            "updated_at": "2026-01-05 10:00:00 UTC",
            "updated_by_id": None,
            "description": note["body"],
            "internal": False,
            "action": action,
            "url": f"{project['web_url']}/-/{segment}/{item.iid}#note_{note['id']}",
        },
        item.kind: _hook_item(fake, item),
    }


def _label(title: str, project_id: int) -> dict[str, Any]:
    return {
        "id": zlib.crc32(title.encode()) % 10_000,
        "title": title,
        "color": "#6699cc",
        "project_id": project_id,
        "created_at": "2026-01-01 09:00:00 UTC",
        "updated_at": "2026-01-01 09:00:00 UTC",
        "template": False,
        "description": None,
        "type": "ProjectLabel",
        "group_id": None,
    }


def label_hook(
    fake: FakeGitlab,
    project_id: int,
    kind: str,
    iid: int,
    *,
    user_id: int,
    previous: list[str],
    current: list[str],
) -> dict[str, Any]:
    """The Issue Hook / Merge Request Hook body of an update that changed the labels
    from `previous` to `current` (the fake's item takes the new labels)."""
    with fake._lock:
        fake._items[(project_id, kind, iid)].labels = list(current)
    project = fake.project(project_id)
    item = fake.item(project_id, kind, iid)
    attributes = {
        **_hook_item(fake, item),
        "action": "update",
        "updated_by_id": user_id,
        "labels": [_label(title, project_id) for title in current],
    }
    attributes.pop("source", None)
    attributes.pop("target", None)
    return {
        "object_kind": kind,
        "event_type": kind,
        "user": _hook_user(fake, user_id),
        "project": project,
        "repository": _repository(project),
        "object_attributes": attributes,
        "labels": [_label(title, project_id) for title in current],
        "changes": {
            "updated_by_id": {"previous": None, "current": user_id},
            "updated_at": {
                "previous": "2026-01-05 09:59:00 UTC",
                "current": "2026-01-05 10:00:00 UTC",
            },
            "labels": {
                "previous": [_label(title, project_id) for title in previous],
                "current": [_label(title, project_id) for title in current],
            },
        },
    }


def hook_event_name(kind: str) -> str:
    return "Issue Hook" if kind == "issue" else "Merge Request Hook"
