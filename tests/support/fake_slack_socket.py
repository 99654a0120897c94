"""A fake Slack with Socket Mode: `apps.connections.open` and the WebSocket behind it.

`SocketSlack` is `FakeSlack` plus:

- ``apps.connections.open`` (the app-level token, ``xapp-...``, as bearer or ``token``
  parameter; another token answers ``invalid_auth``): ``{"ok": true, "url":
  "ws://127.0.0.1:<port>/link/?ticket=<n>"}``, a URL good for one connection;
- the WebSocket server at that URL (aiohttp, in a thread of its own): each new
  connection gets ``{"type": "hello", "num_connections": n, ...}``; `send_event`
  wraps an Events API payload in an envelope (``envelope_id``, ``type: events_api``,
  ``accepts_response_payload``, ``retry_attempt``, ``retry_reason``, ``payload``) and
  sends it on one connection, round robin across the open ones, as Slack spreads
  envelopes (`send_interaction`: a click, ``type: interactive``); the client's
  ``{"envelope_id": ...}`` acknowledgements are recorded;
- `resend_unacknowledged()` sends each envelope not acknowledged again (``retry_attempt``
  one more, ``retry_reason: timeout``), as Slack does; `lose_acks(n)` forgets the next
  n acknowledgements (they were lost on the way), so an envelope is sent again;
- `disconnect(reason)` sends ``{"type": "disconnect", "reason": ...}`` on every
  connection (Slack's refresh), `drop()` closes every connection without a word.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import WSMsgType, web

from tests.support.agent_server import free_port
from tests.support.fake_slack import DEFAULT_APP_ID, FakeSlack, _Answer, _error, _ok


@dataclass
class Envelope:
    envelope_id: str
    payload: dict[str, Any]
    attempts: int = 1
    acknowledged: bool = False
    # The connections it was sent on, in order.
    sent_on: list[int] = field(default_factory=list)
    # "events_api", or "interactive" for a click (fake_slack.block_actions).
    kind: str = "events_api"


class SocketSlack(FakeSlack):
    def __init__(self, *, app_token: str = "xapp-1-A0RELAY-fake-app-token") -> None:
        super().__init__()
        self.app_token = app_token
        self.ws_port = free_port()
        self._tickets = itertools.count(1)
        self._connection_ids = itertools.count(1)
        self._sockets: dict[int, web.WebSocketResponse] = {}
        self._round_robin = 0
        self._lost_acks = 0
        self.envelopes: dict[str, Envelope] = {}
        self.connections_opened = 0
        self._loop = asyncio.new_event_loop()
        self._ws_thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> Self:
        super().start()
        self._ws_thread.start()
        self._run(self._serve())
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._run(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._ws_thread.join(timeout=5)
        super().stop()

    def _run(self, work: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/link/", self._websocket)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.ws_port).start()

    # -- apps.connections.open -------------------------------------------------
    def _answer(self, method: str, token: str | None, params: dict[str, Any]) -> _Answer:
        if method != "apps.connections.open":
            return super()._answer(method, token, params)
        if not token:
            return _error("not_authed")
        if token != self.app_token:
            return _error("invalid_auth")
        return _ok(url=f"ws://127.0.0.1:{self.ws_port}/link/?ticket={next(self._tickets)}")

    # -- the WebSocket ---------------------------------------------------------
    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        number = next(self._connection_ids)
        self._sockets[number] = socket
        self.connections_opened += 1
        await socket.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": len(self._sockets),
                    "debug_info": {"host": "fake-slack", "approximate_connection_time": 3600},
                    "connection_info": {"app_id": DEFAULT_APP_ID},
                }
            )
        )
        try:
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    self._acknowledged(json.loads(message.data))
        finally:
            self._sockets.pop(number, None)
        return socket

    def _acknowledged(self, message: dict[str, Any]) -> None:
        envelope = self.envelopes.get(str(message.get("envelope_id")))
        if envelope is None:
            return
        if self._lost_acks > 0:
            self._lost_acks -= 1
            return
        envelope.acknowledged = True

    # -- driving it --------------------------------------------------------------
    def open_connections(self) -> int:
        return len(self._sockets)

    def send_event(self, payload: dict[str, Any]) -> Envelope:
        """Send an Events API payload (fake_slack.event_callback) in a new envelope."""
        envelope = Envelope(envelope_id=str(uuid.uuid4()), payload=payload)
        self.envelopes[envelope.envelope_id] = envelope
        self._run(self._send(envelope, retry_reason=""))
        return envelope

    def send_interaction(self, payload: dict[str, Any]) -> Envelope:
        """Send an interaction payload (fake_slack.block_actions) in a new envelope."""
        envelope = Envelope(envelope_id=str(uuid.uuid4()), payload=payload, kind="interactive")
        self.envelopes[envelope.envelope_id] = envelope
        self._run(self._send(envelope, retry_reason=""))
        return envelope

    def resend_unacknowledged(self) -> list[Envelope]:
        pending = [e for e in self.envelopes.values() if not e.acknowledged]
        for envelope in pending:
            envelope.attempts += 1
            self._run(self._send(envelope, retry_reason="timeout"))
        return pending

    def lose_acks(self, count: int = 1) -> None:
        self._lost_acks += count

    def disconnect(self, reason: str = "refresh_requested") -> None:
        async def send() -> None:
            for socket in list(self._sockets.values()):
                await socket.send_str(
                    json.dumps(
                        {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}}
                    )
                )

        self._run(send())

    def drop(self) -> None:
        async def close() -> None:
            for socket in list(self._sockets.values()):
                await socket.close()

        self._run(close())

    async def _send(self, envelope: Envelope, *, retry_reason: str) -> None:
        numbers = sorted(self._sockets)
        if not numbers:
            raise AssertionError("no Socket Mode connection is open")
        number = numbers[self._round_robin % len(numbers)]
        self._round_robin += 1
        envelope.sent_on.append(number)
        await self._sockets[number].send_str(
            json.dumps(
                {
                    "envelope_id": envelope.envelope_id,
                    "type": envelope.kind,
                    "accepts_response_payload": envelope.kind == "interactive",
                    "retry_attempt": envelope.attempts - 1,
                    "retry_reason": retry_reason,
                    "payload": envelope.payload,
                }
            )
        )
