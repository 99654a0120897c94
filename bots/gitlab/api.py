"""GitLab REST calls made from jobs and the CLI, and what their failures mean for a job.

gidgetlab's httpx GitLabAPI makes the calls, against `{GITLAB_URL}/api/v4` with the
bot user's token (GITLAB_TOKEN), so any self-hosted instance works. gidgetlab's own
errors carry no response headers, yet a 429's Retry-After and RateLimit-Reset live
there: this client raises its own `GitlabRefused` for every refused call, headers
kept, and `gitlab_errors()` turns that into the job error that says whether to try
again. Messages name the call and GitLab's reason, never the token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from gidgetlab import HTTPException
from gidgetlab.httpx import GitLabAPI

from agent.http import USER_AGENT, retry_after
from bots.gitlab.triggers import Noteable
from db.job_kinds import PermanentJobError, RetryableJobError

# GitLab's access levels: Reporter 20, Developer 30, Maintainer 40, Owner 50.
DEVELOPER_ACCESS = 30
# How many of an issue's newest notes are searched for a note the bot posted before.
MARKER_SEARCH_NOTES = 100
_MAX_DETAIL_CHARS = 200


class GitlabRefused(Exception):
    """GitLab answered a call with an error status (4xx or 5xx)."""

    def __init__(self, status: int, detail: str | None, headers: Mapping[str, str]) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.detail = detail
        self.headers = {name.lower(): value for name, value in headers.items()}


class _GitLabAPI(GitLabAPI):
    """gidgetlab's client, raising GitlabRefused (with the headers) for refused calls."""

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        status, response_headers, content = await super()._request(method, url, headers, body)
        if status >= 400:
            raise GitlabRefused(status, _detail(content), response_headers)
        return status, response_headers, content


def _detail(content: bytes) -> str | None:
    """GitLab's reason: `message` (a string, or field -> errors) or `error` of the body."""
    try:
        body = json.loads(content)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    reason = body.get("message") or body.get("error")
    if isinstance(reason, dict):
        reason = "; ".join(f"{field} {', '.join(map(str, errs))}" for field, errs in reason.items())
    return str(reason)[:_MAX_DETAIL_CHARS] if reason else None


@asynccontextmanager
async def gitlab_errors(what: str) -> AsyncIterator[None]:
    """Turn a failed call into the job error that says whether to try again.

    429 and 5xx (and a 403 that says the rate limit is spent) are retried, after the
    time GitLab asks for; timeouts and broken connections too. Every other refusal
    (401, 403, 404, 422...) fails the job for good, readable in `jobs list`.
    """
    try:
        yield
    except GitlabRefused as exc:
        message = f"gitlab {what}: HTTP {exc.status}"
        if exc.detail:
            message += f" {exc.detail}"
        quota_spent = exc.status == 403 and exc.headers.get("ratelimit-remaining") == "0"
        if exc.status == 429 or exc.status >= 500 or quota_spent:
            raise RetryableJobError(message, retry_after=retry_after(exc.headers)) from None
        raise PermanentJobError(message) from None
    except HTTPException as exc:
        # Only redirects get here (GitlabRefused covers 4xx and 5xx): GITLAB_URL is
        # wrong, and asking again will not fix it.
        raise PermanentJobError(f"gitlab {what}: HTTP {int(exc.status_code)}") from None
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        raise RetryableJobError(f"gitlab {what}: {type(exc).__name__}") from None
    except ValueError:
        # A 2xx whose body is not JSON: a proxy in the way, usually for a moment.
        raise RetryableJobError(f"gitlab {what}: the answer was not JSON") from None


@dataclass(frozen=True)
class GitlabUser:
    id: int
    username: str


@dataclass(frozen=True)
class Place:
    """Where the bot writes: one discussion of an issue or MR, or (no discussion) the
    issue or MR itself, as a new note."""

    project_id: int
    noteable: Noteable
    iid: int
    discussion_id: str | None = None

    @property
    def path(self) -> str:
        return f"/projects/{self.project_id}/{self.noteable.path}/{self.iid}"


def private_commit_email(gitlab_url: str, user_id: int, username: str) -> str:
    """GitLab's private commit email of a user, `{id}-{username}@users.noreply.{host}`
    (the host of GITLAB_URL): it links a commit to the account without showing an
    address."""
    host = urlsplit(gitlab_url).hostname or "gitlab.com"
    return f"{user_id}-{username}@users.noreply.{host}"


def project_ref(project: int | str) -> str:
    """A project id, or its path ("group/name") URL-encoded as the API wants it."""
    return quote(str(project), safe="")


class GitlabApi:
    """The bot user's client for one GitLab instance; shared by every job of a process."""

    def __init__(self, http: httpx.AsyncClient, gitlab_url: str, token: str) -> None:
        # The instance's address (GITLAB_URL), which its users' noreply emails name.
        self.gitlab_url = gitlab_url.rstrip("/")
        self._api = _GitLabAPI(http, USER_AGENT, access_token=token, url=self.gitlab_url)
        self._bot: GitlabUser | None = None

    async def get(self, what: str, path: str, params: dict[str, str | bool] | None = None) -> Any:
        async with gitlab_errors(what):
            return await self._api.getitem(path, params or {})

    async def find(
        self, what: str, path: str, params: dict[str, str | bool] | None = None
    ) -> Any | None:
        """Like `get`, but None when GitLab answers 404 or 403: the thing is not there,
        or this token may not see it (GitLab answers either for a private project).
        A 403 that says the rate limit is spent is still retried."""
        async with gitlab_errors(what):
            try:
                return await self._api.getitem(path, params or {})
            except GitlabRefused as exc:
                spent = exc.headers.get("ratelimit-remaining") == "0"
                if exc.status == 404 or (exc.status == 403 and not spent):
                    return None
                raise

    async def items(
        self, what: str, path: str, params: dict[str, str | bool] | None = None
    ) -> list[Any]:
        """Every item of a paginated list, following GitLab's Link headers."""
        async with gitlab_errors(what):
            return [item async for item in self._api.getiter(path, params or {})]

    async def post(self, path: str, data: dict[str, Any]) -> Any:
        async with gitlab_errors(f"POST {path}"):
            return await self._api.post(path, data=data)

    async def create(self, path: str, data: dict[str, Any]) -> Any | None:
        """Like `post`, but None when GitLab answers 409: what it would create exists."""
        async with gitlab_errors(f"POST {path}"):
            try:
                return await self._api.post(path, data=data)
            except GitlabRefused as exc:
                if exc.status == 409:
                    return None
                raise

    async def put(self, path: str, data: dict[str, Any]) -> Any:
        async with gitlab_errors(f"PUT {path}"):
            return await self._api.put(path, data=data)

    async def bot_user(self) -> GitlabUser:
        """The token's own user (`GET /user`), asked once per process: its notes are
        never triggers, and notes it posted before are found by it."""
        if self._bot is None:
            user = await self.get("GET /user", "/user")
            self._bot = GitlabUser(int(user["id"]), str(user["username"]))
        return self._bot

    @property
    def known_bot_user_id(self) -> int | None:
        return self._bot.id if self._bot is not None else None

    async def access_level(self, project_id: int, user_id: int) -> int:
        """The user's access level in the project, inherited ones included; 0 for no member."""
        path = f"/projects/{project_id}/members/all/{user_id}"
        async with gitlab_errors(f"GET {path}"):
            try:
                member = await self._api.getitem(path)
            except GitlabRefused as exc:
                if exc.status == 404:
                    return 0
                raise
        if not isinstance(member, dict) or member.get("state", "active") != "active":
            return 0
        return int(member.get("access_level") or 0)

    async def award_emoji(self, place: Place, name: str, *, note_id: int | None = None) -> None:
        """Award `name` to a note, or to the issue/MR itself; one already there is fine."""
        target = f"{place.path}/notes/{note_id}" if note_id is not None else place.path
        path = f"{target}/award_emoji"
        async with gitlab_errors(f"POST {path}"):
            try:
                await self._api.post(path, data={"name": name})
            except GitlabRefused as exc:
                # GitLab answers 404 "Award Emoji Name has already been taken".
                if exc.status != 404 or "already been taken" not in (exc.detail or ""):
                    raise

    async def noteable(self, place: Place) -> dict[str, Any]:
        """The issue or merge request (title, description, web_url, branches...)."""
        item = await self.get(f"GET {place.path}", place.path)
        return item if isinstance(item, dict) else {}

    async def newest_notes(self, place: Place, count: int) -> list[dict[str, Any]]:
        """The issue's or MR's newest `count` notes (at most 100), newest first."""
        notes = await self.get(
            f"GET {place.path}/notes",
            f"{place.path}/notes",
            {"sort": "desc", "order_by": "created_at", "per_page": str(min(count, 100))},
        )
        return [note for note in notes or [] if isinstance(note, dict)]

    async def discussion_notes(self, place: Place) -> list[dict[str, Any]]:
        path = f"{place.path}/discussions/{place.discussion_id}"
        discussion = await self.get(f"GET {path}", path)
        notes = discussion.get("notes") if isinstance(discussion, dict) else None
        return [note for note in notes or [] if isinstance(note, dict)]

    async def post_note(self, place: Place, body: str) -> dict[str, Any]:
        """A reply in the place's discussion, or a new note on the issue/MR."""
        if place.discussion_id is not None:
            path = f"{place.path}/discussions/{place.discussion_id}/notes"
        else:
            path = f"{place.path}/notes"
        note = await self.post(path, {"body": body})
        return note if isinstance(note, dict) else {}

    async def edit_note(self, place: Place, note_id: int, body: str) -> None:
        await self.put(f"{place.path}/notes/{note_id}", {"body": body})

    async def find_marked(self, place: Place, mark: str) -> int | None:
        """The id of the bot's note at `place` that carries `mark`, if there is one."""
        bot = await self.bot_user()
        if place.discussion_id is not None:
            notes = await self.discussion_notes(place)
        else:
            notes = await self.newest_notes(place, MARKER_SEARCH_NOTES)
        for note in notes:
            author = note.get("author") or {}
            if author.get("id") == bot.id and mark in str(note.get("body") or ""):
                return int(note["id"])
        return None

    async def project_hooks(self, project: int | str) -> list[dict[str, Any]]:
        path = f"/projects/{project_ref(project)}/hooks"
        hooks: list[dict[str, Any]] = []
        async with gitlab_errors(f"GET {path}"):
            async for hook in self._api.getiter(path):
                hooks.append(hook)
        return hooks

    async def add_project_hook(self, project: int | str, fields: dict[str, Any]) -> dict[str, Any]:
        hook = await self.post(f"/projects/{project_ref(project)}/hooks", fields)
        return hook if isinstance(hook, dict) else {}

    async def edit_project_hook(
        self, project: int | str, hook_id: int, fields: dict[str, Any]
    ) -> dict[str, Any]:
        hook = await self.put(f"/projects/{project_ref(project)}/hooks/{hook_id}", fields)
        return hook if isinstance(hook, dict) else {}


class GitlabThread:
    """One place the bot writes in (bots.markers.MarkedThread): its notes are found
    again by their marker."""

    def __init__(self, api: GitlabApi, place: Place) -> None:
        self.api = api
        self.place = place

    async def find_marked(self, mark: str) -> int | None:
        return await self.api.find_marked(self.place, mark)

    async def post(self, body: str) -> int:
        return int((await self.api.post_note(self.place, body))["id"])


class GitlabHookEvents:
    """A project hook's delivery log: `GET /projects/:id/hooks/:hook_id/events` (the
    last 7 days, newest first; GitLab 17.3) and `POST .../events/:id/resend` (17.4,
    at most 5 a minute per hook and user). Both need the Maintainer role."""

    def __init__(self, api: GitlabApi, project_id: int, hook_id: int) -> None:
        self._api = api
        self.path = f"/projects/{project_id}/hooks/{hook_id}/events"

    async def page(self, page: int, per_page: int = 100) -> list[dict[str, Any]]:
        events = await self._api.get(
            f"GET {self.path}", self.path, {"page": str(page), "per_page": str(per_page)}
        )
        return [event for event in events or [] if isinstance(event, dict)]

    async def resend(self, event_id: str) -> None:
        await self._api.post(f"{self.path}/{event_id}/resend", {})


async def gitlab_version(api: GitlabApi) -> str:
    """The instance's version (`GET /version`), e.g. "17.4.1-ee"."""
    found = await api.get("GET /version", "/version")
    return str((found or {}).get("version") or "")
