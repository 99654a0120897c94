"""A recording HTTP receiver for webhooks (e.g. the agent-server's event batches).

Every request is recorded (method, path, headers, raw body) and answered 200 with
``{}``, unless it was told to answer another status for the next N requests.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.loopback import LoopbackServer


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # keys lower-cased
    body: bytes
    status: int  # the status the receiver answered with
    received_at: float = field(default=0.0)

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingReceiver(LoopbackServer):
    """Threaded HTTP server on 127.0.0.1 with a free port; use as a context manager."""

    thread_name = "recording-receiver"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._failures: list[tuple[int, int, Callable[[str], bool] | None]] = []

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status = receiver._record(self.command, self.path, dict(self.headers), body)
                payload = b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if self.headers.get("Connection", "").lower() == "close":
                    # As an HTTP/1.1 server must when it closes the connection.
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    # -- API ----------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path_prefix: str, method: str | None = "POST") -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if r.path.startswith(path_prefix) and (method is None or r.method == method)
        ]

    def agent_events(self, conversation_id: str) -> list[dict[str, Any]]:
        """Events the agent-server posted for one conversation, flattened in arrival
        order (the batches go to ``{base}/events/{id as 32 hex chars}``). Re-sent
        batches (after a non-2xx answer) appear as often as they were received."""
        hex_id = conversation_id.replace("-", "").lower()
        events: list[dict[str, Any]] = []
        for request in self.requests:
            if request.method == "POST" and request.path.rstrip("/").endswith(f"/events/{hex_id}"):
                body = request.json()
                events.extend(body if isinstance(body, list) else [body])
        return events

    def execution_statuses(self, conversation_id: str) -> list[str]:
        """The ``execution_status`` values posted for a conversation, in order."""
        return [
            str(event.get("value"))
            for event in self.agent_events(conversation_id)
            if event.get("kind") == "ConversationStateUpdateEvent"
            and event.get("key") == "execution_status"
        ]

    def fail_next(
        self, status: int, times: int = 1, path_prefix: str | Callable[[str], bool] | None = None
    ) -> None:
        """Answer ``status`` to the next ``times`` requests (optionally only to
        paths starting with ``path_prefix`` or accepted by a predicate)."""
        match: Callable[[str], bool] | None
        if isinstance(path_prefix, str):
            prefix = path_prefix

            def match(path: str) -> bool:
                return path.startswith(prefix)
        else:
            match = path_prefix
        with self._lock:
            self._failures.append((status, times, match))

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._failures.clear()

    # -- internals ----------------------------------------------------------
    def _record(self, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            status = 200
            for index, (fail_status, remaining, match) in enumerate(self._failures):
                if match is None or match(path):
                    status = fail_status
                    if remaining <= 1:
                        del self._failures[index]
                    else:
                        self._failures[index] = (fail_status, remaining - 1, match)
                    break
            self._requests.append(
                RecordedRequest(
                    method=method,
                    path=path,
                    headers={k.lower(): v for k, v in headers.items()},
                    body=body,
                    status=status,
                    received_at=time.time(),
                )
            )
            return status
