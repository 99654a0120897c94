"""Slack inbound: the Bolt app behind POST /slack/events and the OAuth install routes.

Bolt (AsyncApp on its Starlette adapter) checks the request signature and timestamp
before any listener runs, answers url_verification, ignores the app's own events and
runs the OAuth flow. Our listener only records the event: its event_id goes into the
delivery ledger and a `slack.event` job is queued, in one transaction, and only then
does Bolt answer 200 (process_before_response), so a crash never loses a mention and
Slack's retries (same event_id) change nothing. The work happens in the job. Clicks
on the relay's own controls are recorded the same way (bots.slack.interactions).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bots.intake import Delivery, Intake, count, record_and_queue
from bots.slack import PLATFORM
from bots.slack.api import new_web_client
from bots.slack.blocks import PICK_ACTION
from bots.slack.interactions import Modal, add_interaction_listeners
from bots.slack.job import SLACK_EVENT_JOB, SlackEventPayload
from bots.slack.manifest import bot_scopes
from bots.slack.triggers import trigger_of
from db.jobs import JobQueue
from db.store import Store

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
OAUTH_STATE_SECONDS = 600


def build_slack_app(
    *,
    store: Store,
    queue: JobQueue,
    signing_secret: str | None,
    api_url: str,
    bot_token: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    installation_store: AsyncInstallationStore | None = None,
    state_store: AsyncOAuthStateStore | None = None,
    public_url: str | None = None,
    modals: Mapping[str, Modal] | None = None,
    repository_options: RepositoryOptions | None = None,
) -> AsyncApp:
    """One workspace (bot_token) or many (client_id/secret with the two stores).
    Without a signing secret (Socket Mode, whose envelopes come over the app's own
    connection) no request is verified: it serves no HTTP route then. `approvers`
    (SLACK_APPROVERS) may answer any approval request, beside the turn's asker."""
    # Bolt takes the one workspace's token from the client it is given.
    client = new_web_client(api_url, bot_token if installation_store is None else None)
    if installation_store is not None:
        assert client_id and client_secret and state_store is not None
        app = AsyncApp(
            signing_secret=signing_secret,
            client=client,
            installation_store=installation_store,
            oauth_settings=AsyncOAuthSettings(
                client_id=client_id,
                client_secret=client_secret,
                scopes=bot_scopes(),
                installation_store=installation_store,
                state_store=state_store,
                state_expiration_seconds=OAUTH_STATE_SECONDS,
                install_path=INSTALL_PATH,
                redirect_uri_path=REDIRECT_PATH,
                redirect_uri=f"{public_url.rstrip('/')}{REDIRECT_PATH}" if public_url else None,
            ),
            process_before_response=True,
        )
        # app_uninstalled and tokens_revoked delete the workspace's installation.
        app.enable_token_revocation_listeners()
    else:
        app = AsyncApp(
            signing_secret=signing_secret or "",
            client=client,
            process_before_response=True,
            request_verification_enabled=signing_secret is not None,
        )
        app.event("app_uninstalled")(_log_revocation)
        app.event("tokens_revoked")(_log_revocation)

    record = _event_recorder(store, queue)
    app.event("app_mention")(record)
    # Every message event, subtypes included, gets a listener: Bolt answers 404 to
    # an event nobody listens to, and Slack would retry it.
    app.event("message")(record)
    # The buttons, menus and modals of the relay's own messages (Stop, approvals...).
    add_interaction_listeners(app, store, queue, modals or {})
    if repository_options is not None:
        app.options(PICK_ACTION)(_options_answerer(repository_options))
    return app


# The repositories whose names contain what was typed, as Block Kit options.
RepositoryOptions = Callable[[str], Awaitable[list[dict[str, Any]]]]


def _options_answerer(
    repository_options: RepositoryOptions,
) -> Callable[[dict[str, Any], AsyncAck], Awaitable[None]]:
    async def answer(payload: dict[str, Any], ack: AsyncAck) -> None:
        # Answered at once (Slack waits 3 s for options) and nothing is recorded: a
        # list to pick from changes nothing until a pick arrives as a block action.
        await ack(options=await repository_options(str(payload.get("value") or "")))

    return answer


def _event_recorder(
    store: Store, queue: JobQueue
) -> Callable[[dict[str, Any], AsyncBoltContext], Awaitable[None]]:
    async def record(body: dict[str, Any], context: AsyncBoltContext) -> None:
        event = body.get("event") or {}
        team_id = str(context.team_id or body.get("team_id") or "")
        trigger = trigger_of(event, team_id, context.bot_user_id)
        event_id = body.get("event_id")
        if trigger is None or not isinstance(event_id, str):
            count(PLATFORM, Intake.IGNORED)
            return
        payload = SlackEventPayload(
            event_id=event_id,
            team_id=team_id,
            enterprise_id=context.enterprise_id,
            bot_user_id=context.bot_user_id,
            event=event,
        )
        await record_and_queue(
            store,
            queue,
            Delivery(
                platform=PLATFORM,
                delivery_id=event_id,
                description=str(event.get("type")),
                job_kind=SLACK_EVENT_JOB,
                payload=payload,
                job_key=f"{PLATFORM}:{trigger.thread_key}",
                noun="event",
            ),
        )

    return record


async def _log_revocation(body: dict[str, Any]) -> None:
    log.warning(
        "slack: %s for team %s; update SLACK_BOT_TOKEN",
        (body.get("event") or {}).get("type"),
        body.get("team_id"),
    )


def slack_routes(app: AsyncApp) -> list[Route]:
    handler = AsyncSlackRequestHandler(app)

    async def endpoint(request: Request) -> Response:
        return await handler.handle(request)

    routes = [Route(EVENTS_PATH, endpoint, methods=["POST"])]
    if app.oauth_flow is not None:
        routes += [
            Route(INSTALL_PATH, endpoint, methods=["GET"]),
            Route(REDIRECT_PATH, endpoint, methods=["GET"]),
        ]
    return routes
