"""Slack's Socket Mode: the same Bolt app, reached over a WebSocket this process opens.

For deployments without a public URL (a laptop, a company network): with
SLACK_APP_TOKEN (an app-level token, `xapp-...`, scope `connections:write`), `serve`
asks Slack for a WebSocket URL (`apps.connections.open`) and receives the events
there, through Bolt's AsyncSocketModeHandler, instead of at `/slack/events`. The
listeners, the ledger and the jobs are the HTTP ones.

Every envelope must be acknowledged, and Slack sends an unacknowledged one again.
The Bolt app runs with process_before_response, so the handler sends the
acknowledgement only once our listener returned, that is once the ledger row and the
job are committed; a listener that fails (the database is down) gets no
acknowledgement, and Slack's re-send finds the event id in the ledger if it was
recorded after all. Every `serve` process holds a connection of its own (Slack
spreads envelopes across them); the ledger keeps each event handled once.

Slack's `disconnect` messages (a refresh, a server going away) and closed connections
make the SDK's client reconnect at once; a connection that went quiet is found by its
ping every PING_INTERVAL_SECONDS and replaced (the SDK tries again every
PING_INTERVAL_SECONDS while that fails). The first connection is this module's: a
failed `apps.connections.open` at start-up is tried again with a growing wait, up to
MAX_BACKOFF_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bots.checks import CheckResult, fail, ok
from bots.slack.api import new_web_client

log = logging.getLogger(__name__)

PING_INTERVAL_SECONDS = 10.0
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0


class SlackSocketMode:
    """This process's Socket Mode connection (bots.platform.InboundConnection)."""

    name = "slack socket mode"

    def __init__(
        self,
        app: Callable[[], AsyncApp],
        app_token: str,
        *,
        ping_interval: float = PING_INTERVAL_SECONDS,
    ) -> None:
        # Built when the connection starts: only `serve` opens one.
        self._make_app = app
        self._app_token = app_token
        self._ping_interval = ping_interval
        self._handler: AsyncSocketModeHandler | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect in the background: start-up does not wait for Slack."""
        app = self._make_app()
        self._handler = AsyncSocketModeHandler(
            app,
            self._app_token,
            logger=logging.getLogger("slack_sdk.socket_mode"),
            web_client=app.client,
            ping_interval=self._ping_interval,
        )
        self._task = asyncio.create_task(self._connect(self._handler))

    async def _connect(self, handler: AsyncSocketModeHandler) -> None:
        wait = FIRST_BACKOFF_SECONDS
        while True:
            try:
                # The SDK's client opens the URL and keeps it: once connected, it
                # reconnects by itself (disconnect messages, closed sessions, pings).
                handler.client.wss_uri = await handler.client.issue_new_wss_url()
                await handler.connect_async()  # type: ignore[no-untyped-call]  # Bolt: unannotated
                log.info("slack: Socket Mode connected")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # e.g. apps.connections.open refused the token (invalid_auth), or
                # Slack cannot be reached: try again, waiting longer each time.
                log.warning(
                    "slack: Socket Mode could not connect (%s); trying again in %.0f s",
                    type(exc).__name__,
                    wait,
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, MAX_BACKOFF_SECONDS)

    async def connected(self) -> bool:
        return self._handler is not None and await self._handler.client.is_connected()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._handler is not None:
            await self._handler.close_async()  # type: ignore[no-untyped-call]  # Bolt: unannotated


SOCKET_CHECK = "slack socket mode"


async def socket_mode_check(api_url: str, app_token: str) -> CheckResult:
    """Doctor's check of SLACK_APP_TOKEN: does `apps.connections.open` give a URL?"""
    fix = (
        "set SLACK_APP_TOKEN to an app-level token (xapp-...) with connections:write,"
        " and turn Socket Mode on in the app's settings"
    )
    try:
        opened = await new_web_client(api_url).apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        return fail(SOCKET_CHECK, f"apps.connections.open: {exc.response.get('error')}", fix)
    url = str(opened.get("url") or "")
    return ok(SOCKET_CHECK, f"apps.connections.open gives a WebSocket URL ({url.split('?')[0]})")
