"""GitHub inbound: POST /github/events.

gidgethub's `sansio.Event.from_http` checks X-Hub-Signature-256 against the app's
webhook secret before the body is parsed; a missing or wrong signature is a 401 and
nothing is stored. A delivery that matters (a trigger, or news about the app's
installations) is recorded under its X-GitHub-Delivery id and queued as a
`github.event` job in one transaction, and only then answered 202, so a crash never
loses a mention and a redelivery from GitHub's UI changes nothing. Everything else
is answered 200 and forgotten. The work happens in the job.
"""

from __future__ import annotations

import logging

from gidgethub import BadRequest, ValidationFailure
from gidgethub.sansio import Event
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bots.github import PLATFORM
from bots.github.credentials import GithubAppSource
from bots.github.triggers import trigger_of
from bots.intake import Delivery, Intake, WebhookEventPayload, count, record_and_queue
from db.job_kinds import JobKind, VerbatimJson
from db.jobs import JobQueue
from db.store import Store

log = logging.getLogger(__name__)

EVENTS_PATH = "/github/events"
GITHUB_EVENT_JOB = JobKind("github.event", WebhookEventPayload)
INSTALLATION_EVENTS = frozenset({"installation", "installation_repositories"})


def job_key(event: Event, *, mention: str, trigger_label: str) -> str | None:
    """The job key of a delivery worth a job (None: nothing to do).

    Triggers are keyed by thread, so mentions in one thread are handled in order;
    installation news by installation, so "created" is applied before "deleted".
    """
    if event.event in INSTALLATION_EVENTS:
        installation = (event.data.get("installation") or {}).get("id")
        return f"{PLATFORM}:installation:{installation}"
    trigger = trigger_of(event.event, event.data, mention=mention, trigger_label=trigger_label)
    return None if trigger is None else f"{PLATFORM}:{trigger.thread_key}"


def github_routes(
    *,
    store: Store,
    queue: JobQueue,
    source: GithubAppSource,
    mention: str,
    trigger_label: str,
) -> list[Route]:
    async def receive(request: Request) -> Response:
        app = await source.current()
        if app is None:
            return JSONResponse(
                {"error": "the GitHub App is not set up yet: see /github/setup"}, status_code=503
            )
        body = await request.body()
        try:
            event = Event.from_http(request.headers, body, secret=app.webhook_secret)
        except ValidationFailure:
            return JSONResponse({"error": "invalid or missing X-Hub-Signature-256"}, 401)
        except BadRequest as exc:
            return JSONResponse({"error": f"unreadable delivery: {exc}"}, status_code=400)
        except (ValueError, UnicodeDecodeError):
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not event.delivery_id:
            return JSONResponse({"error": "X-GitHub-Delivery is missing"}, status_code=400)
        if event.event == "ping":
            return JSONResponse({"ok": True, "zen": event.data.get("zen")})
        if not isinstance(event.data, dict):
            return JSONResponse({"error": "the payload is not a JSON object"}, status_code=400)
        key = job_key(event, mention=mention, trigger_label=trigger_label)
        if key is None:
            count(PLATFORM, Intake.IGNORED)
            return JSONResponse({"ok": True, "queued": False})
        payload = WebhookEventPayload(
            delivery_id=event.delivery_id,
            event=event.event,
            payload=VerbatimJson.of_body(body, request.headers.get("content-type")) or event.data,
        )
        delivery = Delivery(
            platform=PLATFORM,
            delivery_id=event.delivery_id,
            description=f"{event.event}.{event.data.get('action')}",
            job_kind=GITHUB_EVENT_JOB,
            payload=payload,
            job_key=key,
        )
        if await record_and_queue(store, queue, delivery) is Intake.DUPLICATE:
            return JSONResponse({"ok": True, "queued": False, "duplicate": True})
        return JSONResponse({"ok": True, "queued": True}, status_code=202)

    return [Route(EVENTS_PATH, receive, methods=["POST"])]
