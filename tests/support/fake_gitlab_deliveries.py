"""A fake GitLab that delivers its project hooks' events and keeps their log.

`DeliveringGitlab` is `FakeGitlab` plus what GitLab does with a project hook:

- `deliver(project_id, event, payload)` POSTs the event to each of the project's
  hooks (its URL, its secret token as X-Gitlab-Token, a fresh X-Gitlab-Event-UUID
  and Idempotency-Key) and logs it as a hook event: ``response_status`` is the
  receiver's status code as a string, or "internal error" when nothing answered;
- ``GET /projects/:id/hooks/:hook_id/events`` (``page``, ``per_page`` default 20):
  the hook's events, newest first, with ``id``, ``url``, ``trigger``,
  ``request_headers`` (the token redacted), ``request_data``, ``response_headers``,
  ``response_body``, ``execution_duration``, ``response_status``;
- ``POST /projects/:id/hooks/:hook_id/events/:hook_event_id/resend``: sends the
  event again with the same Idempotency-Key and a new X-Gitlab-Event-UUID, logs it
  as a new event and answers 201 ``{"response_status": <code>}``; more than 5 in a
  minute for one hook answer 429, as GitLab's rate limit does;
- ``GET /version``: ``{"version": <version>}`` (``version`` attribute).
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.fake_gitlab import FakeGitlab, _Answer, _not_found, delivery_headers

TRIGGERS = {"Note Hook": "note_hooks", "Issue Hook": "issue_hooks"}


class DeliveringGitlab(FakeGitlab):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.version = "17.4.0-ee"
        self._events: dict[int, list[dict[str, Any]]] = {}  # hook id -> oldest first
        self._resends: dict[int, list[float]] = {}
        self._query: dict[str, str] = {}
        # What the resend limit counts minutes with (tests move it on).
        self.clock: Callable[[], float] = time.monotonic

    # -- delivering ------------------------------------------------------------
    def deliver(
        self, project_id: int, event: str, payload: dict[str, Any], *, answer_lost: bool = False
    ) -> list[dict[str, Any]]:
        """Deliver `payload` to every hook of the project; the logged events. With
        `answer_lost`, the receiver gets it but its answer never comes back: GitLab
        logs a failure."""
        headers = delivery_headers(event, secret=None)
        payload = _stamped(payload)
        # Under the fake's lock, as a resend is (the receiver never calls back in it).
        with self._lock:
            hooks = copy.deepcopy(self._hooks.get(project_id, []))
            return [self._send(hook, event, payload, headers, answer_lost) for hook in hooks]

    def hook_events(self, hook_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._events.get(hook_id, []))

    def _send(
        self,
        hook: dict[str, Any],
        event: str,
        payload: dict[str, Any],
        headers: dict[str, str],
        answer_lost: bool = False,
    ) -> dict[str, Any]:
        token = self._hook_tokens.get(hook["id"])
        sent = {**headers, **({"X-Gitlab-Token": token} if token else {})}
        started = time.monotonic()
        try:
            response = httpx.post(hook["url"], json=payload, headers=sent, timeout=10)
        except httpx.HTTPError:
            status, response_headers, body = "internal error", {}, "Failed to connect"
        else:
            status, body = str(response.status_code), response.text
            response_headers = dict(response.headers)
            if answer_lost:
                status, response_headers, body = "internal error", {}, "Net::ReadTimeout"
        logged = {
            "id": next(self._ids),
            "url": hook["url"],
            "trigger": TRIGGERS.get(event, "note_hooks"),
            "request_headers": {**headers, "X-Gitlab-Token": "[REDACTED]"},
            "request_data": copy.deepcopy(payload),
            "response_headers": response_headers,
            "response_body": body,
            "execution_duration": time.monotonic() - started,
            "response_status": status,
        }
        self._events.setdefault(hook["id"], []).append(logged)
        return copy.deepcopy(logged)

    # -- the API ---------------------------------------------------------------
    def _answer(
        self,
        method: str,
        path: str,
        segments: list[str],
        query: dict[str, str],
        body: Any,
        token: str | None,
    ) -> _Answer:
        if segments == ["version"] and method == "GET" and token == self.token:
            return _Answer(200, {"version": self.version, "revision": "0123abcd"})
        # _hooks_call is not handed the query; the events list pages by it.
        self._query = query
        return super()._answer(method, path, segments, query, body, token)

    def _hooks_call(self, method: str, project_id: int, rest: list[str], body: Any) -> _Answer:
        if len(rest) >= 2 and rest[0].isdigit() and rest[1] == "events":
            hook = next(
                (h for h in self._hooks.get(project_id, []) if h["id"] == int(rest[0])), None
            )
            if hook is None:
                return _not_found("404 Not found")
            if len(rest) == 2 and method == "GET":
                return self._list_events(hook, self._query)
            if len(rest) == 4 and rest[3] == "resend" and method == "POST":
                return self._resend(hook, int(rest[2]))
        return super()._hooks_call(method, project_id, rest, body)

    def _list_events(self, hook: dict[str, Any], query: dict[str, str]) -> _Answer:
        newest_first = list(reversed(self._events.get(hook["id"], [])))
        per_page = min(int(query.get("per_page") or 20), 100)
        page = int(query.get("page") or 1)
        chosen = newest_first[(page - 1) * per_page : page * per_page]
        headers = {"X-Total": str(len(newest_first)), "X-Page": str(page)}
        if page * per_page < len(newest_first):
            headers["X-Next-Page"] = str(page + 1)
        return _Answer(200, copy.deepcopy(chosen), headers)

    def _resend(self, hook: dict[str, Any], event_id: int) -> _Answer:
        now = self.clock()
        recent = [t for t in self._resends.get(hook["id"], []) if now - t < 60.0]
        if len(recent) >= 5:
            return _Answer(
                429,
                {"message": "This endpoint has been requested too many times."},
                {"Retry-After": "60"},
            )
        self._resends[hook["id"]] = [*recent, now]
        original = next((e for e in self._events.get(hook["id"], []) if e["id"] == event_id), None)
        if original is None:
            return _not_found("404 Not found")
        headers = {k: v for k, v in original["request_headers"].items() if k != "X-Gitlab-Token"}
        headers["X-Gitlab-Event-UUID"] = str(uuid.uuid4())  # a new delivery, the same key
        event = headers.get("X-Gitlab-Event", "Note Hook")
        logged = self._send(hook, event, original["request_data"], headers)
        status = logged["response_status"]
        return _Answer(201, {"response_status": int(status) if status.isdigit() else status})


def _stamped(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with its change made now (the builders write a fixed date), as
    GitLab sends it right after the change."""
    stamped = copy.deepcopy(payload)
    attributes = stamped.get("object_attributes")
    if isinstance(attributes, dict):
        attributes["updated_at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return stamped
