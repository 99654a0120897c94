"""A fake GitLab REST API (v4) for tests, plus the webhook deliveries GitLab would send.

`FakeGitlab` serves ``{url}/api/v4/...`` on loopback (point GITLAB_URL at ``fake.url``)
for the calls agent-relay makes, the way GitLab answers them:

- ``GET /user``: the token's own user;
- ``GET /projects/:id/members/all/:user_id``: a member with ``access_level``, or 404;
- ``GET /projects/:id/(issues|merge_requests)/:iid``: the issue or merge request;
- ``GET .../notes`` (``sort``, ``order_by=created_at``, ``per_page``, ``page``) and
  ``POST .../notes {"body"}``: notes, a new note starts a discussion of its own;
- ``GET .../discussions/:discussion_id`` and ``POST .../discussions/:id/notes``;
- ``POST .../award_emoji`` and ``POST .../notes/:note_id/award_emoji {"name"}``:
  an award the same user already gave answers 404 "Award Emoji Name has already
  been taken", as GitLab does;
- ``GET|POST /projects/:id/hooks`` and ``PUT /projects/:id/hooks/:hook_id``.

``:id`` is a project id or its URL-encoded path (``group%2Fname``). Every request must
carry the bot's token as ``PRIVATE-TOKEN`` or ``Authorization: Bearer`` (else 401).
Every request is recorded as a `GitlabCall`; `fail_next` injects 429/5xx/4xx answers.

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
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.support.loopback import LoopbackServer

BOT_TOKEN = "glpat-fake-bot-token-0123456789"
BOT_USER_ID = 900
BOT_USERNAME = "openhands"
WEBHOOK_SECRET = "gitlab-webhook-secret-of-the-test"
TIMESTAMP = "2026-01-05T10:00:00.000Z"
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
    ) -> None:
        super().__init__()
        self.token = token
        self.bot_user_id = bot_user_id
        self._lock = threading.Lock()
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

    # -- HTTP -----------------------------------------------------------------
    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
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
    def add_user(self, user_id: int, username: str, *, name: str | None = None) -> None:
        with self._lock:
            self._users[user_id] = {
                "id": user_id,
                "username": username,
                "name": name or username.title(),
                "state": "active",
                "avatar_url": f"https://www.gravatar.com/avatar/{user_id}",
                "web_url": f"{self._base()}/{username}",
            }

    def add_project(self, project_id: int, path: str) -> None:
        with self._lock:
            self._projects[project_id] = {
                "id": project_id,
                "name": path.rsplit("/", 1)[-1],
                "path_with_namespace": path,
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
    ) -> None:
        with self._lock:
            self._items[(project_id, "merge_request", iid)] = _Item(
                project_id,
                "merge_request",
                iid,
                next(self._ids),
                title,
                description,
                author_id,
                source_branch=source_branch,
                target_branch=target_branch,
            )

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

    # -- internals: state -----------------------------------------------------
    def _base(self) -> str:
        return self.url if self._server is not None else "http://gitlab.invalid"

    def _project_json(self, project_id: int) -> dict[str, Any]:
        project = self._projects[project_id]
        path = project["path_with_namespace"]
        web_url = f"{self._base()}/{path}"
        return {
            **project,
            "description": "",
            "web_url": web_url,
            "avatar_url": None,
            "git_ssh_url": f"git@gitlab.invalid:{path}.git",
            "git_http_url": f"{web_url}.git",
            "namespace": path.split("/", 1)[0],
            "visibility_level": 0,
            "default_branch": "main",
            "homepage": web_url,
            "url": f"{web_url}.git",
            "ssh_url": f"git@gitlab.invalid:{path}.git",
            "http_url": f"{web_url}.git",
        }

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
            "state": "opened",
            "author": self._author(item.author_id),
            "labels": list(item.labels),
            "web_url": self._item_url(item),
        }
        if item.kind == "merge_request":
            shown |= {
                "source_branch": item.source_branch,
                "target_branch": item.target_branch,
                "source_project_id": item.project_id,
                "target_project_id": item.project_id,
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
        if token != self.token:
            return _Answer(401, {"message": "401 Unauthorized"})
        for fault in self._faults:
            if fault.remaining > 0 and fault.method == method and fault.pattern.search(path):
                fault.remaining -= 1
                return _Answer(fault.status, {"message": fault.message}, dict(fault.headers))
        if segments == ["user"] and method == "GET":
            return _Answer(200, copy.deepcopy(self._users[self.bot_user_id]))
        if not segments or segments[0] != "projects" or len(segments) < 3:
            return _not_found()
        project_id = self._project_id(segments[1])
        if project_id is None:
            return _not_found("Project Not Found")
        rest = segments[2:]
        if rest[0] == "members" and len(rest) == 3 and rest[1] == "all" and method == "GET":
            return self._member(project_id, int(rest[2]))
        if rest[0] == "hooks":
            return self._hooks_call(method, project_id, rest[1:], body)
        if rest[0] in _KINDS and len(rest) >= 2 and rest[1].isdigit():
            item = self._items.get((project_id, _KINDS[rest[0]], int(rest[1])))
            if item is None:
                return _not_found()
            return self._item_call(method, item, rest[2:], query, body)
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
        self, method: str, item: _Item, rest: list[str], query: dict[str, str], body: Any
    ) -> _Answer:
        if not rest and method == "GET":
            return _Answer(200, self._item_json(item))
        if rest == ["award_emoji"] and method == "POST":
            return self._award(item.awards, body, item.id)
        if rest == ["notes"] and method == "GET":
            return self._list_notes(item, query)
        if rest == ["notes"] and method == "POST":
            return self._post_note(item, body, None)
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
        "state": "opened",
        "labels": [_label(title, item.project_id) for title in item.labels],
        "url": fake._item_url(item),
    }
    if item.kind == "merge_request":
        project = fake.project(item.project_id)
        shown |= {
            "source_branch": item.source_branch,
            "target_branch": item.target_branch,
            "source_project_id": item.project_id,
            "target_project_id": item.project_id,
            "merge_status": "can_be_merged",
            "detailed_merge_status": "mergeable",
            "draft": False,
            "work_in_progress": False,
            "source": project,
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
