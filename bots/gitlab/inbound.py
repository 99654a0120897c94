"""GitLab inbound: POST /gitlab/events.

X-Gitlab-Token is compared with GITLAB_WEBHOOK_SECRET in constant time before the
body is even read; a missing or wrong token is a 401 and nothing is stored. Then
gidgetlab parses the delivery (`sansio.Event.from_http`) and its router sends the
event kinds that can trigger to the decision (bots.gitlab.triggers). A trigger is
recorded under its X-Gitlab-Event-UUID (else Idempotency-Key) and queued as a
`gitlab.event` job in one transaction, and only then answered 202, so a crash never
loses a mention and GitLab's retries change nothing. Everything else is answered
200 and forgotten. The work happens in the job (bots.gitlab.job).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gidgetlab import BadRequest, ValidationFailure
from gidgetlab.routing import Router
from gidgetlab.sansio import Event
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bots.gitlab import PLATFORM
from bots.gitlab.triggers import TRIGGER_EVENTS, trigger_of
from bots.intake import Delivery, Intake, WebhookEventPayload, count, record_and_queue
from db.job_kinds import JobKind, VerbatimJson
from db.jobs import JobQueue
from db.store import Store

log = logging.getLogger(__name__)

EVENTS_PATH = "/gitlab/events"
GITLAB_EVENT_JOB = JobKind("gitlab.event", WebhookEventPayload)


@dataclass
class _Outcome:
    """What the router's handler did with the delivery (IGNORED: no handler took it)."""

    intake: Intake = Intake.IGNORED


def delivery_id_of(headers: Mapping[str, str], event: str, body: bytes) -> str:
    """X-Gitlab-Event-UUID, else Idempotency-Key. GitLab has sent one of them for
    years; an instance that sends neither is deduplicated on the delivery's content
    (the same note or label change arrives as the same bytes)."""
    for name in ("x-gitlab-event-uuid", "idempotency-key"):
        value = headers.get(name)
        if value:
            return str(value)
    return "sha256:" + hashlib.sha256(event.encode() + b"\n" + body).hexdigest()


def aliases_of(headers: Mapping[str, str], delivery_id: str) -> tuple[str, ...]:
    """The Idempotency-Key when the delivery is recorded under another id: GitLab
    (17.4 and later) keeps it when an event is resent, with a new X-Gitlab-Event-UUID."""
    key = headers.get("idempotency-key")
    return (str(key),) if key and key != delivery_id else ()


class GitlabEvents:
    """The route that records GitLab deliveries that trigger the agent."""

    def __init__(
        self,
        *,
        store: Store,
        queue: JobQueue,
        secret: str,
        mention: str,
        trigger_label: str,
        known_bot_user_id: Callable[[], int | None] = lambda: None,
    ) -> None:
        self._store = store
        self._queue = queue
        self._secret = secret.encode()
        self._mention = mention
        self._label = trigger_label
        # The bot's own user once a job has asked GitLab (`GET /user`): its own
        # notes are then dropped here already instead of in a job.
        self._known_bot_user_id = known_bot_user_id
        self._router = Router()
        for event_name in sorted(TRIGGER_EVENTS):
            self._router.add(self._record, event_name)

    def routes(self) -> list[Route]:
        return [Route(EVENTS_PATH, self.receive, methods=["POST"])]

    async def receive(self, request: Request) -> Response:
        # Checked here, in constant time, before anything is parsed: gidgetlab's
        # Event.from_http compares the token with `!=`, which leaks timing.
        token = request.headers.get("x-gitlab-token", "").encode()
        if not hmac.compare_digest(token, self._secret):
            return JSONResponse({"error": "invalid or missing X-Gitlab-Token"}, status_code=401)
        body = await request.body()
        try:
            event = Event.from_http(request.headers, body, secret=self._secret.decode())
        except ValidationFailure as exc:
            return JSONResponse({"error": f"unreadable delivery: {exc}"}, status_code=400)
        except BadRequest as exc:
            if isinstance(exc.__cause__, json.JSONDecodeError | UnicodeDecodeError):
                return JSONResponse({"error": "the body is not JSON"}, status_code=400)
            return JSONResponse({"error": "expected application/json"}, status_code=415)
        if not isinstance(event.data, dict):
            return JSONResponse({"error": "the payload is not a JSON object"}, status_code=400)
        outcome = _Outcome()
        delivery_id = delivery_id_of(request.headers, event.event, body)
        aliases = aliases_of(request.headers, delivery_id)
        document = VerbatimJson.of_body(body, request.headers.get("content-type")) or event.data
        await self._router.dispatch(event, (delivery_id, aliases), document, outcome)
        if outcome.intake is Intake.IGNORED:
            count(PLATFORM, Intake.IGNORED)
        if outcome.intake is Intake.QUEUED:
            return JSONResponse({"ok": True, "queued": True}, status_code=202)
        duplicate = outcome.intake is Intake.DUPLICATE
        return JSONResponse({"ok": True, "queued": False, "duplicate": duplicate})

    async def _record(
        self,
        event: Event,
        ids: tuple[str, tuple[str, ...]],
        document: VerbatimJson | dict[str, Any],
        outcome: _Outcome,
    ) -> None:
        """`ids` are the delivery's id and its aliases; `document` is the event's
        payload as the job stores it (its body as received when that is its JSON text)."""
        delivery_id, aliases = ids
        trigger = trigger_of(
            event.event,
            event.data,
            mention=self._mention,
            label=self._label,
            bot_user_id=self._known_bot_user_id(),
        )
        if trigger is None:
            return
        outcome.intake = await record_and_queue(
            self._store,
            self._queue,
            Delivery(
                platform=PLATFORM,
                delivery_id=delivery_id,
                description=f"{event.event}, {trigger.thread_key}",
                job_kind=GITLAB_EVENT_JOB,
                payload=WebhookEventPayload(
                    delivery_id=delivery_id, event=event.event, payload=document
                ),
                job_key=f"{PLATFORM}:{trigger.thread_key}",
                aliases=aliases,
            ),
        )
