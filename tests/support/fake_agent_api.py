"""Small in-memory fakes of the agent-server REST API and of a webhook receiver.

`FakeAgentServer` answers the agent-server routes agent-relay's AgentClient calls, as
openhands-agent-server 1.58.2 does (see its event_router.py / event_service.py):

- POST /api/conversations -> 201 ConversationInfo (200 when the id already exists)
- GET  /api/conversations/{id} -> ConversationInfo, 404 when unknown
- POST /api/conversations/{id}/events -> appends a user MessageEvent, {"success": true}
- GET  /api/conversations/{id}/events/search with kind, source, sort_order
  (TIMESTAMP | TIMESTAMP_DESC), timestamp__gte, limit (1..100) and page_id: a page is
  at most `limit` matches; next_page_id is the id of the first match left out, and a
  page that starts at page_id includes that event.
- POST /api/conversations/{id}/ask_agent, GET .../agent_final_response -> {"response"}
- POST /api/conversations/{id}/bash/execute_bash_command -> a BashOutput (exit code 0
  and no output unless `answer_commands` says otherwise); the command is not run
- DELETE /api/conversations/{id} -> {"success": true}; the conversation is forgotten

Every call is recorded; `fail_next` makes the next matching calls answer an error.
Use it through `transport()` (httpx.MockTransport) or over real HTTP with
`LoopbackAgentServer`.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx

from agent.client import AgentClient, LLMSettings
from agent.events import AgentState, AgentStateChangedObservation
from db.callbacks import ConversationCallback, get_callback, insert_callback
from db.job_kinds import Job, JobKind
from db.jobs import JobQueue
from db.store import Store
from processors.context import ProcessorContext, SummaryMode
from processors.webhook import WebhookProcessor
from tests.support.loopback import LoopbackServer

AGENT_API_KEY = "fake-session-api-key"
# Real traffic captured from openhands-agent-server 1.58.2, copied from the team's
# shared corpora so that a clone alone runs every test.
AGENT_CORPUS_DIR = Path(__file__).resolve().parents[1] / "corpora" / "openhands-agent-server"
WEBHOOK_URL = "https://receiver.example.test/hooks/agent-relay"
WEBHOOK_SECRET = "webhook-secret-of-the-test"
CONVERSATION_URL_TEMPLATE = "https://agent.example.test/conversations/{conversation_id}"


def corpus_webhook(name: str) -> dict[str, Any]:
    """One captured webhook request: {"path", "headers", "body"}."""
    captured: dict[str, Any] = json.loads((AGENT_CORPUS_DIR / name).read_text())
    return captured


def corpus_batch(number: int) -> dict[str, Any]:
    return corpus_webhook(f"webhook_{number:02d}_events_batch.json")


@dataclass(frozen=True)
class RecordedCall:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: Any
    # Every query parameter in order, repeated ones too (`?ids=a&ids=b`).
    query: tuple[tuple[str, str], ...] = ()

    def json(self) -> Any:
        return self.body


@dataclass
class _Failure:
    method: str
    path_suffix: str
    status: int
    remaining: int
    headers: dict[str, str] = field(default_factory=dict)


class FakeAgentServer:
    """The agent-server's REST API over an in-memory list of events per conversation."""

    def __init__(self, *, api_key: str | None = AGENT_API_KEY) -> None:
        self.api_key = api_key
        self.conversations: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[RecordedCall] = []
        self.ask_agent_answer = "Answer from ask_agent."
        self.final_response_text = "Final response of the agent."
        self._failures: list[_Failure] = []
        self._command_answers: list[dict[str, Any]] = []
        self._clock = datetime(2026, 1, 1, 12, 0, 0)
        self._lock = threading.Lock()

    # -- set-up ---------------------------------------------------------------
    def add_conversation(
        self, conversation_id: str | None = None, execution_status: str = "running"
    ) -> str:
        """Register a conversation; returns its id in the 32-hex form."""
        hex_id = uuid.UUID(conversation_id).hex if conversation_id else uuid.uuid4().hex
        self.conversations[hex_id] = {
            "id": str(uuid.UUID(hex_id)),
            "execution_status": execution_status,
            "tags": {},
            "updated_at": self.next_timestamp(),
        }
        self.events.setdefault(hex_id, [])
        return hex_id

    def next_timestamp(self) -> str:
        """Server-local naive ISO timestamps, strictly increasing, as the server writes them."""
        self._clock += timedelta(milliseconds=7)
        return self._clock.isoformat()

    def add_event(
        self, conversation_id: str, kind: str, source: str, **fields: Any
    ) -> dict[str, Any]:
        event = {
            "id": str(uuid.uuid4()),
            "timestamp": self.next_timestamp(),
            "source": source,
            **fields,
            "kind": kind,
        }
        hex_id = uuid.UUID(conversation_id).hex
        self.events.setdefault(hex_id, []).append(event)
        if kind != "ConversationStateUpdateEvent" and hex_id in self.conversations:
            # As the agent-server: every event but a state update is activity.
            self.conversations[hex_id]["updated_at"] = event["timestamp"]
        return event

    def user_message(self, conversation_id: str, text: str) -> dict[str, Any]:
        return self.add_event(
            conversation_id,
            "MessageEvent",
            "user",
            llm_message={"role": "user", "content": [{"type": "text", "text": text}]},
        )

    def agent_message(self, conversation_id: str, text: str) -> dict[str, Any]:
        return self.add_event(
            conversation_id,
            "MessageEvent",
            "agent",
            llm_message={"role": "assistant", "content": [{"type": "text", "text": text}]},
        )

    def agent_finish(self, conversation_id: str, message: str) -> dict[str, Any]:
        return self.add_event(
            conversation_id,
            "ActionEvent",
            "agent",
            action={"message": message, "kind": "FinishAction"},
            tool_name="finish",
        )

    def agent_action(self, conversation_id: str, command: str) -> dict[str, Any]:
        return self.add_event(
            conversation_id,
            "ActionEvent",
            "agent",
            action={"command": command, "kind": "TerminalAction"},
            tool_name="terminal",
        )

    def forget(self, conversation_id: str) -> None:
        """The agent-server loses the conversation (deleted, or a restart on empty disk)."""
        hex_id = uuid.UUID(conversation_id).hex
        self.conversations.pop(hex_id, None)
        self.events.pop(hex_id, None)

    def status_change(self, conversation_id: str, status: str) -> dict[str, Any]:
        self.conversations[uuid.UUID(conversation_id).hex]["execution_status"] = status
        return self.add_event(
            conversation_id,
            "ConversationStateUpdateEvent",
            "environment",
            key="execution_status",
            value=status,
        )

    def fail_next(
        self,
        method: str,
        path_suffix: str,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer `status` to the next `times` calls of `method` whose path ends so."""
        self._failures.append(_Failure(method, path_suffix, status, times, dict(headers or {})))

    def answer_commands(
        self,
        *,
        exit_code: int,
        stdout: str | None = None,
        stderr: str | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` commands end so (otherwise: exit code 0, no output)."""
        answer = {"exit_code": exit_code, "stdout": stdout, "stderr": stderr}
        self._command_answers += [answer] * times

    # -- inspection -----------------------------------------------------------
    def commands(self, conversation_id: str) -> list[str]:
        """The commands run in a conversation, in order."""
        path = f"/conversations/{uuid.UUID(conversation_id).hex}/bash/execute_bash_command"
        return [str(call.body["command"]) for call in self.calls_to("POST", path)]

    def calls_to(self, method: str, path_suffix: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.method == method and c.path.endswith(path_suffix)]

    def sent_messages(self, conversation_id: str) -> list[RecordedCall]:
        return self.calls_to("POST", f"/conversations/{uuid.UUID(conversation_id).hex}/events")

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- the API --------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            return self._handle(request)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        body: Any = json.loads(request.content) if request.content else {}
        path = request.url.path
        self.calls.append(
            RecordedCall(
                method=request.method,
                path=path,
                params=dict(request.url.params),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                query=tuple(request.url.params.multi_items()),
            )
        )
        if self.api_key is not None and request.headers.get("x-session-api-key") != self.api_key:
            return httpx.Response(401, json={"detail": "Unauthorized"})
        for failure in self._failures:
            if failure.method == request.method and path.endswith(failure.path_suffix):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return httpx.Response(
                    failure.status, json={"detail": "injected failure"}, headers=failure.headers
                )
        parts = path.strip("/").split("/")
        if parts[:2] != ["api", "conversations"]:
            return httpx.Response(404, json={"detail": "Not Found"})
        rest = parts[2:]
        if request.method == "POST" and not rest:
            return self._start(body)
        if request.method == "GET" and not rest:
            return self._batch_get(request.url.params.get_list("ids"))
        if not rest:
            return httpx.Response(405)
        try:
            hex_id = uuid.UUID(rest[0]).hex
        except ValueError:
            return httpx.Response(422, json={"detail": "conversation_id is not a UUID"})
        if hex_id not in self.conversations:
            return httpx.Response(404, json={"detail": "Not Found"})
        route = (request.method, "/".join(rest[1:]))
        if route == ("GET", ""):
            return httpx.Response(200, json=self.conversations[hex_id])
        if route == ("DELETE", ""):
            del self.conversations[hex_id]
            self.events.pop(hex_id, None)
            return httpx.Response(200, json={"success": True})
        if route == ("POST", "bash/execute_bash_command"):
            return self._command(body)
        if route == ("POST", "events"):
            text = "".join(part.get("text", "") for part in body.get("content", []))
            self.user_message(hex_id, text)
            return httpx.Response(200, json={"success": True})
        if route == ("GET", "events/search"):
            return self._search(hex_id, request.url.params)
        if route == ("POST", "events/respond_to_confirmation"):
            return self._respond_to_confirmation(hex_id, body)
        if route == ("POST", "run"):
            conversation = self.conversations[hex_id]
            if conversation["execution_status"] == "running":
                return httpx.Response(409, json={"detail": "Conversation already running."})
            self.status_change(hex_id, "running")
            return httpx.Response(200, json={"success": True})
        if route == ("POST", "ask_agent"):
            return httpx.Response(200, json={"response": self.ask_agent_answer})
        if route == ("GET", "agent_final_response"):
            return httpx.Response(200, json={"response": self.final_response_text})
        return httpx.Response(404, json={"detail": "Not Found"})

    def held_actions(self, conversation_id: str) -> list[dict[str, Any]]:
        """The agent's actions that have no observation yet."""
        events = self.events[uuid.UUID(conversation_id).hex]
        answered = {e.get("action_id") for e in events}
        return [e for e in events if e["kind"] == "ActionEvent" and e["id"] not in answered]

    def _respond_to_confirmation(self, hex_id: str, body: dict[str, Any]) -> httpx.Response:
        """As openhands-agent-server 1.58.2: an acceptance runs the held actions (here:
        each gets an observation at once); a rejection answers each with a
        UserRejectObservation and leaves the conversation idle until it is run."""
        held = self.held_actions(hex_id)
        if body.get("accept"):
            if self.conversations[hex_id]["execution_status"] != "running":
                self.status_change(hex_id, "running")
            for action in held:
                self.add_event(
                    hex_id,
                    "ObservationEvent",
                    "environment",
                    action_id=action["id"],
                    observation={"kind": "TerminalObservation", "content": "ran"},
                )
        else:
            if self.conversations[hex_id]["execution_status"] == "waiting_for_confirmation":
                self.status_change(hex_id, "idle")
            for action in held:
                self.add_event(
                    hex_id,
                    "UserRejectObservation",
                    "user",
                    action_id=action["id"],
                    rejection_reason=body.get("reason", "User rejected the action."),
                )
        return httpx.Response(200, json={"success": True})

    def _start(self, body: dict[str, Any]) -> httpx.Response:
        hex_id = uuid.UUID(body["conversation_id"]).hex if body.get("conversation_id") else None
        if hex_id is not None and hex_id in self.conversations:
            return httpx.Response(200, json=self.conversations[hex_id])
        hex_id = self.add_conversation(hex_id)
        self.conversations[hex_id]["tags"] = body.get("tags") or {}
        message = body.get("initial_message")
        if message:
            text = "".join(part.get("text", "") for part in message.get("content", []))
            self.user_message(hex_id, text)
        return httpx.Response(201, json=self.conversations[hex_id])

    def _command(self, body: dict[str, Any]) -> httpx.Response:
        if not isinstance(body.get("command"), str):
            return httpx.Response(422, json={"detail": "command is required"})
        answer = self._command_answers.pop(0) if self._command_answers else {"exit_code": 0}
        output = {
            "kind": "BashOutput",
            "id": uuid.uuid4().hex,
            "timestamp": self.next_timestamp(),
            "command_id": uuid.uuid4().hex,
            "order": 0,
            "stdout": None,
            "stderr": None,
            **answer,
        }
        return httpx.Response(200, json=output)

    def _batch_get(self, ids: list[str]) -> httpx.Response:
        # FastAPI's Query(max_length=99) on a list of UUIDs.
        if len(ids) > 99:
            return httpx.Response(422, json={"detail": "at most 99 ids"})
        try:
            hex_ids = [uuid.UUID(raw).hex for raw in ids]
        except ValueError:
            return httpx.Response(422, json={"detail": "ids must be UUIDs"})
        return httpx.Response(200, json=[self.conversations.get(h) for h in hex_ids])

    def _search(self, hex_id: str, params: httpx.QueryParams) -> httpx.Response:
        try:
            limit = int(params.get("limit", "100"))
        except ValueError:
            return httpx.Response(422, json={"detail": "limit is not an integer"})
        if not 0 < limit <= 100:
            return httpx.Response(422, json={"detail": "limit must be in 1..100"})
        sort_order = params.get("sort_order", "TIMESTAMP")
        if sort_order not in ("TIMESTAMP", "TIMESTAMP_DESC"):
            return httpx.Response(422, json={"detail": "bad sort_order"})
        since: str | None = None
        if "timestamp__gte" in params:
            moment = datetime.fromisoformat(params["timestamp__gte"])
            if moment.tzinfo is not None:
                moment = moment.astimezone(None).replace(tzinfo=None)
            since = moment.isoformat()
        kind, source = params.get("kind"), params.get("source")
        events = self.events[hex_id]
        reverse = sort_order == "TIMESTAMP_DESC"
        start = (len(events) - 1) if reverse else 0
        page_id = params.get("page_id")
        if page_id:
            start = next((i for i, e in enumerate(events) if e["id"] == page_id), start)
        indices = range(start, -1, -1) if reverse else range(start, len(events))
        items: list[dict[str, Any]] = []
        next_page_id: str | None = None
        for index in indices:
            event = events[index]
            if kind is not None and event["kind"] != kind:
                continue
            if source is not None and event["source"] != source:
                continue
            if since is not None and event["timestamp"] < since:
                continue
            if len(items) >= limit:
                next_page_id = event["id"]
                break
            items.append(event)
        return httpx.Response(200, json={"items": items, "next_page_id": next_page_id})


class LoopbackAgentServer(LoopbackServer):
    """A FakeAgentServer behind a real HTTP server on 127.0.0.1 (free port)."""

    thread_name = "loopback-agent-server"

    def __init__(self, fake: FakeAgentServer) -> None:
        super().__init__()
        self.fake = fake

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self.fake

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                content = self.rfile.read(length) if length else b""
                request = httpx.Request(
                    self.command,
                    f"http://127.0.0.1{self.path}",
                    headers=dict(self.headers),
                    content=content,
                )
                response = fake.handle(request)
                payload = response.content
                self.send_response(response.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@dataclass(frozen=True)
class ReceivedWebhook:
    url: str
    headers: dict[str, str]  # keys lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeWebhookReceiver:
    """Where webhook processors deliver: records every request, answers 200 or as told."""

    def __init__(self) -> None:
        self.received: list[ReceivedWebhook] = []
        self._answers: list[httpx.Response] = []

    def answer_next(self, status: int, *, headers: dict[str, str] | None = None) -> None:
        self._answers.append(httpx.Response(status, headers=headers, json={}))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.received.append(
            ReceivedWebhook(
                url=str(request.url),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=request.content,
            )
        )
        return self._answers.pop(0) if self._answers else httpx.Response(200, json={})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


@asynccontextmanager
async def processor_context(
    store: Store,
    agent_server: FakeAgentServer,
    receiver: FakeWebhookReceiver,
    *,
    summary_mode: SummaryMode = SummaryMode.INSTRUCTION,
    conversation_url_template: str | None = CONVERSATION_URL_TEMPLATE,
) -> AsyncIterator[ProcessorContext]:
    """A ProcessorContext with a real AgentClient talking to the fake agent-server."""
    agent = AgentClient(
        "http://agent-server.test",
        agent_server.api_key,
        LLMSettings(model="openai/fake-model"),
        "workspace",
        transport=agent_server.transport(),
    )
    http = httpx.AsyncClient(transport=receiver.transport())
    try:
        yield ProcessorContext(
            store=store,
            queue=JobQueue(store),
            agent=agent,
            http=http,
            summary_mode=summary_mode,
            conversation_url_template=conversation_url_template,
        )
    finally:
        await agent.aclose()
        await http.aclose()


async def claim_job(queue: JobQueue, kind: JobKind[Any]) -> Job:
    """Claim the next runnable job, which must be of `kind`."""
    job = await queue.claim()
    assert job is not None, f"no runnable job (expected {kind.name!r})"
    assert job.kind == kind.name, f"next job is {job.kind!r}, expected {kind.name!r}"
    return job


async def jobs_of_kind(store: Store, kind: JobKind[Any]) -> list[dict[str, Any]]:
    rows = await store.fetch_all(
        "SELECT id, kind, payload, job_key, status FROM jobs WHERE kind = :kind ORDER BY id",
        {"kind": kind.name},
    )
    return [{**row, "payload": json.loads(row["payload"])} for row in rows]


async def insert_webhook_callback(
    store: Store,
    conversation_id: str,
    *,
    url: str = WEBHOOK_URL,
    secret: str = WEBHOOK_SECRET,
    **processor_state: Any,
) -> ConversationCallback:
    """A webhook callback; `processor_state` presets round-trip fields (as after a crash)."""
    processor = WebhookProcessor.model_validate({"url": url, "secret": secret, **processor_state})
    return await insert_callback(
        store, ConversationCallback.for_processor(conversation_id, processor)
    )


async def reload_callback(store: Store, callback: ConversationCallback) -> ConversationCallback:
    assert callback.id is not None
    current = await get_callback(store, callback.id)
    assert current is not None, f"callback {callback.id} is gone"
    return current


def observation_of(
    conversation_id: str, state: AgentState, event: dict[str, Any] | None = None
) -> AgentStateChangedObservation:
    """The observation the intake makes of `event` (None: one without a timestamp)."""
    return AgentStateChangedObservation(
        conversation_id=conversation_id,
        agent_state=state,
        event_id=event["id"] if event else f"test-{uuid.uuid4().hex[:8]}",
        timestamp=event["timestamp"] if event else None,
    )
