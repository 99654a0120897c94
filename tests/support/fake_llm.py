"""A scripted, OpenAI-compatible chat-completions server for offline agent tests.

The openhands agent (through litellm, model ``openai/<anything>`` with ``base_url``
pointing here) sends ``POST /v1/chat/completions``. Each request is answered by the
first rule whose substring occurs in the text of the request's LAST user message:

    llm.set_rules([("deploy", fail()), ("which branch", say("main or dev?"))])

Replies:
- ``finish(message)``: a tool call to the agent's ``finish`` tool -> ActionEvent with
  FinishAction, then execution_status ``finished``.
- ``say(text)``: a plain assistant message without tool calls -> agent MessageEvent,
  then ``finished`` (the agent is waiting for the user).
- ``fail(status, message)``: an OpenAI-shaped error response -> ConversationErrorEvent
  and execution_status ``error`` (use ``num_retries: 0`` in the LLM settings).
- ``run(command)``: a tool call to the agent's terminal tool: the command runs in the
  conversation's working directory, and the LLM is asked again with its output.
- ``steps(reply, ...)``: the first reply for the first request of a turn, the second
  once the first tool call has an answer, and so on (the last one repeats). The step
  is counted from the request itself (the assistant messages after its last user
  message), so conversations running side by side each follow their own script.

Unmatched requests get the default reply, ``finish("Done.")``.

Title requests (the agent-server auto-titles a conversation from its first user
message, with a separate, tool-less LLM call) are recognised by their system prompt
and always answered with a plain title, never by the rules: otherwise a ``fail()``
rule would fail the title call as well, and a ``finish()`` reply would make it fall
back to truncation.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal

from tests.support.loopback import LoopbackServer

TITLE_SYSTEM_MARKER = "generates concise, descriptive titles"
FAKE_MODEL = "fake-model"


@dataclass(frozen=True)
class Reply:
    kind: Literal["finish", "say", "fail", "run", "steps"]
    text: str
    status: int = 200
    script: tuple[Reply, ...] = ()


def finish(message: str) -> Reply:
    """Reply with a ``finish`` tool call carrying ``{"message": message}``."""
    return Reply("finish", message)


def say(text: str) -> Reply:
    """Reply with a plain assistant message (no tool calls)."""
    return Reply("say", text)


def fail(status: int = 400, message: str = "scripted failure") -> Reply:
    """Reply with an HTTP error shaped like OpenAI's error JSON."""
    return Reply("fail", message, status)


def run(command: str) -> Reply:
    """Reply with a call of the terminal tool running `command`."""
    return Reply("run", command)


def steps(*replies: Reply) -> Reply:
    """Reply with `replies` in turn, one per request of the same turn."""
    return Reply("steps", "", script=replies)


Rule = tuple[str, Reply]


def message_text(message: dict[str, Any]) -> str:
    """The text of one chat message (``content`` as a string or a list of parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last ``role: user`` message of a chat-completions body."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message)
    return ""


def is_title_request(body: dict[str, Any]) -> bool:
    return any(
        isinstance(m, dict) and m.get("role") == "system" and TITLE_SYSTEM_MARKER in message_text(m)
        for m in body.get("messages") or []
    )


def tool_names(body: dict[str, Any]) -> list[str]:
    """Names of the tools offered in a chat-completions body."""
    return [
        str(tool.get("function", {}).get("name"))
        for tool in body.get("tools") or []
        if isinstance(tool, dict)
    ]


class FakeLLM(LoopbackServer):
    """Threaded OpenAI-compatible server on 127.0.0.1 with a free port."""

    thread_name = "fake-llm"

    def __init__(
        self,
        rules: Sequence[Rule] = (),
        default: Reply | None = None,
        title: str = "Fake title",
    ) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._rules: list[Rule] = list(rules)
        self._default = default or finish("Done.")
        self._title = title
        self._requests: list[dict[str, Any]] = []
        self._arrivals: list[float] = []  # time.time() of each request, in order
        self._other_requests: list[tuple[str, str]] = []

    # -- scripting ----------------------------------------------------------
    def set_rules(self, rules: Sequence[Rule], default: Reply | None = None) -> None:
        """Replace the rules (and the default reply, when given)."""
        with self._lock:
            self._rules = list(rules)
            if default is not None:
                self._default = default

    def reply_for(self, body: dict[str, Any]) -> Reply:
        if is_title_request(body):
            return say(self._title)
        text = last_user_text(body)
        with self._lock:
            for substring, reply in self._rules:
                if substring in text:
                    return reply
            return self._default

    # -- inspection ---------------------------------------------------------
    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every chat-completions request body received, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def timed_agent_requests(self) -> list[tuple[float, dict[str, Any]]]:
        """(arrival as time.time(), body) of each request but the auto-title calls."""
        with self._lock:
            pairs = list(zip(self._arrivals, self._requests, strict=True))
        return [(at, body) for at, body in pairs if not is_title_request(body)]

    @property
    def agent_requests(self) -> list[dict[str, Any]]:
        """The request bodies minus the auto-title calls."""
        return [body for body in self.requests if not is_title_request(body)]

    @property
    def other_requests(self) -> list[tuple[str, str]]:
        """(method, path) of requests to any other route (answered 404, or /models)."""
        with self._lock:
            return list(self._other_requests)

    # -- lifecycle ----------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        llm = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0].rstrip("/")
                if not path.endswith("/chat/completions"):
                    with llm._lock:
                        llm._other_requests.append(("POST", self.path))
                    self._send(404, _error_body(f"no route {self.path}", 404))
                    return
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._send(400, _error_body("request body is not JSON", 400))
                    return
                with llm._lock:
                    llm._requests.append(body)
                    llm._arrivals.append(time.time())
                status, payload = _respond(body, llm.reply_for(body))
                self._send(status, payload)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].rstrip("/")
                with llm._lock:
                    llm._other_requests.append(("GET", self.path))
                if path.endswith("/models"):
                    self._send(
                        200,
                        {
                            "object": "list",
                            "data": [{"id": FAKE_MODEL, "object": "model", "owned_by": "fake"}],
                        },
                    )
                else:
                    self._send(404, _error_body(f"no route {self.path}", 404))

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def _error_body(message: str, status: int) -> dict[str, Any]:
    kind = {
        401: "authentication_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _usage(body: dict[str, Any], completion: str) -> dict[str, int]:
    prompt_tokens = max(1, len(json.dumps(body.get("messages", []))) // 4)
    completion_tokens = max(1, len(completion) // 4)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _step(body: dict[str, Any], reply: Reply) -> Reply:
    """The reply of a `steps` script for this request."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    done = sum(1 for m in messages[last_user + 1 :] if m.get("role") == "assistant")
    return reply.script[min(done, len(reply.script) - 1)]


def _terminal_tool(body: dict[str, Any]) -> str:
    names = tool_names(body)
    return next((n for n in names if "terminal" in n or "bash" in n), "terminal")


def _respond(body: dict[str, Any], reply: Reply) -> tuple[int, dict[str, Any]]:
    if reply.kind == "steps":
        reply = _step(body, reply)
    if reply.kind == "fail":
        return reply.status, _error_body(reply.text, reply.status)
    if body.get("stream"):
        return 400, _error_body("the fake LLM does not stream; use stream=false", 400)
    message: dict[str, Any]
    if reply.kind in ("finish", "run"):
        tool, arguments = (
            ("finish", json.dumps({"message": reply.text}))
            if reply.kind == "finish"
            else (_terminal_tool(body), json.dumps({"command": reply.text, "timeout": 120}))
        )
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{uuid.uuid4().hex[:10]}",
                    "type": "function",
                    "function": {"name": tool, "arguments": arguments},
                }
            ],
        }
        finish_reason = "tool_calls"
        completion = arguments
    else:
        message = {"role": "assistant", "content": reply.text}
        finish_reason = "stop"
        completion = reply.text
    return 200, {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or FAKE_MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": _usage(body, completion),
    }
