"""A fake GitHub that delivers an app's webhooks and keeps their delivery log.

`DeliveringGitHub` is `FakeGitHub` plus what GitHub does with an app's webhook:

- `deliver(app_id, event, payload)` POSTs it to the app's webhook URL (`set_webhook`),
  signed with the app's webhook secret, with a new guid in X-GitHub-Delivery, and logs
  the attempt: a refused connection is status code 0 ("failed to connect to host"), an
  answer that took over 10 s "timed out", any other answer its status code (`status`
  "OK" for a 2xx, "Invalid HTTP Response: 503" otherwise);
- JWT: ``GET /app/hook/deliveries`` lists the app's attempts, newest first, with
  GitHub's fields (id, guid, delivered_at, redelivery, duration, status, status_code,
  event, action, installation_id, repository_id, throttled_at, url), ``per_page``
  (default 30, at most 100) and cursor pages (``Link: <...&cursor=N>; rel="next"``);
- JWT: ``POST /app/hook/deliveries/{id}/attempts`` answers 202 and sends the same
  body again, with the same guid, after the answer (GitHub queues it): a new attempt,
  ``redelivery: true``.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

import httpx

from tests.support.fake_github import (
    FakeApp,
    FakeGitHub,
    _Answer,
    _Failure,
    _iso,
    _positive_int,
    _Request,
    _Route,
    github_signature_headers,
)

# GitHub gives up on a delivery that takes longer than this.
DELIVERY_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class HookAttempt:
    """One attempt at delivering an app's webhook, as the delivery log lists it."""

    id: int
    guid: str
    app_id: int
    delivered_at: float
    redelivery: bool
    status: str
    status_code: int
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    body: bytes

    def listed(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "guid": self.guid,
            "delivered_at": _iso(self.delivered_at),
            "redelivery": self.redelivery,
            "duration": 0.05,
            "status": self.status,
            "status_code": self.status_code,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repository_id": self.repository_id,
            "throttled_at": None,
            "url": "",
        }


class DeliveringGitHub(FakeGitHub):
    def __init__(self) -> None:
        self._hook_lock = threading.Lock()
        self._webhooks: dict[int, str] = {}
        self._attempts: list[HookAttempt] = []
        self._attempt_ids = itertools.count(50_000_001)
        super().__init__()

    # -- set-up and inspection ------------------------------------------------
    def set_webhook(self, app_id: int, url: str) -> None:
        """Where the app's webhooks go (the app's "Webhook URL")."""
        self._webhooks[app_id] = url

    def backdate(self, guid: str, seconds: float) -> None:
        """Make the delivery's attempts `seconds` older (a delivery made hours ago)."""
        with self._hook_lock:
            self._attempts = [
                replace(a, delivered_at=a.delivered_at - seconds) if a.guid == guid else a
                for a in self._attempts
            ]
            self._attempts.sort(key=lambda a: a.delivered_at)

    def app(self, app_id: int) -> FakeApp:
        return self._apps[app_id]

    def attempt(self, attempt_id: int) -> HookAttempt:
        with self._hook_lock:
            return next(a for a in self._attempts if a.id == attempt_id)

    def attempts(self, guid: str | None = None) -> list[HookAttempt]:
        with self._hook_lock:
            return [a for a in self._attempts if guid is None or a.guid == guid]

    def deliver(
        self, app_id: int, event: str, payload: dict[str, Any], *, answer_lost: bool = False
    ) -> HookAttempt:
        """Deliver a webhook now, as GitHub does when something happens. With
        `answer_lost`, the receiver gets it but its answer never comes back: GitHub
        logs the attempt as timed out."""
        body = json.dumps(payload).encode()
        return self._attempt(app_id, event, payload, body, str(uuid.uuid4()), lost=answer_lost)

    # -- the delivery ---------------------------------------------------------
    def _attempt(
        self,
        app_id: int,
        event: str,
        payload: dict[str, Any],
        body: bytes,
        guid: str,
        *,
        redelivery: bool = False,
        lost: bool = False,
    ) -> HookAttempt:
        app = self._apps[app_id]
        headers = github_signature_headers(body, app.webhook_secret, event=event, delivery_id=guid)
        started = time.time()
        try:
            response = httpx.post(
                self._webhooks[app_id],
                content=body,
                headers=headers,
                timeout=DELIVERY_TIMEOUT_SECONDS,
            )
        except httpx.TimeoutException:
            status, code = "timed out", 0
        except httpx.TransportError:
            status, code = "failed to connect to host", 0
        else:
            code = response.status_code
            status = "OK" if 200 <= code < 300 else f"Invalid HTTP Response: {code}"
            if lost:
                status, code = "timed out", 0
        attempt = HookAttempt(
            id=next(self._attempt_ids),
            guid=guid,
            app_id=app_id,
            delivered_at=started,
            redelivery=redelivery,
            status=status,
            status_code=code,
            event=event,
            action=payload.get("action"),
            installation_id=(payload.get("installation") or {}).get("id"),
            repository_id=(payload.get("repository") or {}).get("id"),
            body=body,
        )
        with self._hook_lock:
            self._attempts.append(attempt)
        return attempt

    # -- the API --------------------------------------------------------------
    def _build_routes(self) -> list[_Route]:
        routes = super()._build_routes()
        table = [
            ("GET", r"/app/hook/deliveries", self._list_deliveries),
            ("POST", r"/app/hook/deliveries/(?P<delivery_id>\d+)/attempts", self._redeliver),
        ]
        return routes + [
            _Route(method=m, pattern=re.compile(p), auth="jwt", handler=h) for m, p, h in table
        ]

    def _list_deliveries(self, request: _Request, app: FakeApp) -> _Answer:
        per_page = min(_positive_int(request.query.get("per_page"), 30), 100)
        cursor = _positive_int(request.query.get("cursor"), 0)
        with self._hook_lock:
            mine = [a for a in reversed(self._attempts) if a.app_id == app.app_id]
        page, rest = mine[cursor : cursor + per_page], mine[cursor + per_page :]
        headers = {}
        if rest:
            link = (
                f"{self.api_url}/app/hook/deliveries?per_page={per_page}&cursor={cursor + per_page}"
            )
            headers["Link"] = f'<{link}>; rel="next"'
        return _Answer(200, [a.listed() for a in page], headers=headers)

    def _redeliver(self, request: _Request, app: FakeApp, delivery_id: str) -> _Answer:
        with self._hook_lock:
            found = [
                a for a in self._attempts if a.id == int(delivery_id) and a.app_id == app.app_id
            ]
        if not found:
            raise _Failure(404, "Not Found")
        original = found[0]

        def again() -> None:
            payload = json.loads(original.body)
            self._attempt(
                app.app_id, original.event, payload, original.body, original.guid, redelivery=True
            )

        # GitHub answers at once and delivers from its queue.
        threading.Timer(0.05, again).start()
        return _Answer(202, {})
