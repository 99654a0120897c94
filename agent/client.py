"""HTTP client for the OpenHands agent-server REST API (all under /api).

Failures surface as the job queue's RetryableJobError / PermanentJobError (see
agent.http.send), so a job that calls the agent is retried exactly when that helps.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from agent.http import DEFAULT_TIMEOUT, new_http_client, send
from agent.instructions import CONTEXT_IS_DATA
from agent.workspaces import working_dir
from db.job_kinds import RetryableJobError

# ask_agent runs an LLM completion over the whole conversation before it answers.
ASK_AGENT_TIMEOUT = httpx.Timeout(300.0, connect=5.0)


# CONFIRMATION_POLICY: which of the agent's actions wait for a person's answer.
ConfirmationPolicy = Literal["never", "always", "risky"]
# SECURITY_ANALYZER: what rates each action's risk for the `risky` policy.
SecurityAnalyzer = Literal["none", "llm"]
# As openhands-agent-server 1.58.2 names them in a start request.
_POLICY_KINDS: dict[str, str] = {
    "never": "NeverConfirm",
    "always": "AlwaysConfirm",
    "risky": "ConfirmRisky",
}
_ANALYZER_KINDS: dict[str, str] = {"llm": "LLMSecurityAnalyzer"}


@dataclass(frozen=True)
class LLMSettings:
    model: str
    api_key: str | None = None
    base_url: str | None = None
    # Any other field of the agent-server's LLM settings (num_retries, api_mode, ...).
    extra: dict[str, Any] = field(default_factory=dict)

    def as_agent_settings(self) -> dict[str, Any]:
        llm: dict[str, Any] = {**self.extra, "model": self.model}
        if self.api_key:
            llm["api_key"] = self.api_key
        if self.base_url:
            llm["base_url"] = self.base_url
        return {"agent_kind": "openhands", "llm": llm}


@dataclass(frozen=True)
class LookupSecret:
    """A secret the agent-server fetches from `url` (with `headers`) each time a
    terminal command names it, exports into that conversation's shell, and masks in
    outputs (openhands-agent-server 1.58.2: 30 s timeout, no cache; secret-looking
    header values are encrypted at rest)."""

    url: str
    headers: dict[str, str]

    def as_source(self) -> dict[str, Any]:
        return {"kind": "LookupSecret", "url": self.url, "headers": self.headers}


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str


def text_message(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


class AgentClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        llm: LLMSettings,
        workspace_root: str,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        confirmation_policy: ConfirmationPolicy = "never",
        security_analyzer: SecurityAnalyzer = "none",
    ) -> None:
        self.llm = llm
        self.workspace_root = workspace_root
        self.confirmation_policy = confirmation_policy
        self.security_analyzer = security_analyzer
        self._http = new_http_client(
            base_url=base_url.rstrip("/") + "/api",
            headers={"X-Session-API-Key": api_key} if api_key else {},
            timeout=timeout,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await send(self._http, method, path, f"agent-server {method} {path}", **kwargs)
        return response.json() if response.content else None

    def working_dir(self, conversation_id: str, repository: str | None = None) -> str:
        """The conversation's directory on the agent-server's disk (agent.workspaces)."""
        return working_dir(self.workspace_root, uuid.UUID(conversation_id).hex, repository)

    async def start_conversation(
        self,
        prompt: str | None,
        *,
        conversation_id: str | None = None,
        tags: dict[str, str] | None = None,
        repository: str | None = None,
        secrets: Mapping[str, LookupSecret] | None = None,
        instructions: str | None = None,
    ) -> str:
        """Start a conversation that runs `prompt` at once; returns its id (32 hex).

        Passing our own id lets the caller register callbacks before the agent can
        possibly report anything, and makes a retried start land on the same one
        (the agent-server reuses a conversation it knows). It works in a directory of
        its own (agent.workspaces), named after `repository` ("owner/name") when
        there is one. Without `prompt` it runs nothing yet (openhands-agent-server
        1.58.2), so its directory can be prepared first. `secrets` are declared now,
        at start, with fixed URLs: secrets set later revert to the start-time ones
        when the agent-server restarts. `instructions` follow CONTEXT_IS_DATA in the
        agent's system prompt.
        """
        conversation_id = uuid.UUID(conversation_id).hex if conversation_id else uuid.uuid4().hex
        system = "\n\n".join(part for part in (CONTEXT_IS_DATA, instructions) if part)
        body: dict[str, Any] = {
            "conversation_id": str(uuid.UUID(conversation_id)),
            "agent_settings": self.llm.as_agent_settings(),
            "workspace": {"working_dir": self.working_dir(conversation_id, repository)},
            "agent_launch_additions": {"system_message_suffix_append": system},
            "tags": tags or {},
            "confirmation_policy": {"kind": _POLICY_KINDS[self.confirmation_policy]},
        }
        analyzer = _ANALYZER_KINDS.get(self.security_analyzer)
        if analyzer is not None:
            body["security_analyzer"] = {"kind": analyzer}
        if prompt is not None:
            body["initial_message"] = {**text_message(prompt), "run": True}
        if secrets:
            body["secrets"] = {name: secret.as_source() for name, secret in secrets.items()}
        info = await self._request("POST", "/conversations", json=body)
        return uuid.UUID(str(info["id"])).hex

    async def delete_conversation(self, conversation_id: str) -> None:
        """Forget a conversation; its working directory stays on disk (1.58.2)."""
        path = f"/conversations/{conversation_id}"
        await send(self._http, "DELETE", path, f"agent-server DELETE {path}", accept=(404,))

    async def run_command(
        self, conversation_id: str, command: str, *, seconds: int = 300
    ) -> CommandResult:
        """Run a shell command in the conversation's working directory and wait for it.

        The agent-server stores the command and its output on its disk unmasked:
        never put a secret in `command`.
        """
        output = await self._request(
            "POST",
            f"/conversations/{conversation_id}/bash/execute_bash_command",
            # `seconds` bounds the command on the agent-server; the HTTP call waits
            # a little longer for its answer.
            json={"command": command, "timeout": seconds},
            timeout=httpx.Timeout(seconds + 30.0, connect=5.0),
        )
        exit_code = output.get("exit_code")
        return CommandResult(
            exit_code=-1 if exit_code is None else int(exit_code),
            stdout=str(output.get("stdout") or ""),
            stderr=str(output.get("stderr") or ""),
        )

    async def upload_file(self, conversation_id: str, path: str, content: bytes) -> None:
        """Write a file (absolute `path`, parents created) on the agent-server's disk."""
        await self._request(
            "POST",
            f"/conversations/{conversation_id}/file/upload",
            params={"path": path},
            files={"file": (path.rsplit("/", 1)[-1], content, "application/octet-stream")},
        )

    async def get_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        """ConversationInfo, or None when the agent-server does not know the id."""
        path = f"/conversations/{conversation_id}"
        response = await send(self._http, "GET", path, f"agent-server GET {path}", accept=(404,))
        return None if response.status_code == 404 else dict(response.json())

    async def pause(self, conversation_id: str) -> None:
        """openhands-agent-server 1.58.2: the run stops after its current step, and the
        conversation's execution_status becomes `paused`."""
        await self._request("POST", f"/conversations/{conversation_id}/pause")

    async def respond_to_confirmation(
        self, conversation_id: str, *, accept: bool, reason: str | None = None
    ) -> None:
        """Answer the actions the agent waits on (execution_status
        `waiting_for_confirmation`). openhands-agent-server 1.58.2: an acceptance runs
        them and goes on; a rejection records a UserRejectObservation per action (the
        LLM reads "Action rejected: {reason}") and leaves the conversation idle, so it
        needs a `run` to go on."""
        body: dict[str, Any] = {"accept": accept}
        if not accept and reason:
            body["reason"] = reason
        await self._request(
            "POST", f"/conversations/{conversation_id}/events/respond_to_confirmation", json=body
        )

    async def run(self, conversation_id: str) -> None:
        """Let an idle conversation go on; one already running is fine (409)."""
        path = f"/conversations/{conversation_id}/run"
        await send(self._http, "POST", path, f"agent-server POST {path}", accept=(409,))

    async def send_message(self, conversation_id: str, text: str, *, run: bool = True) -> None:
        await self._request(
            "POST",
            f"/conversations/{conversation_id}/events",
            json={**text_message(text), "run": run},
        )

    async def search_events(
        self,
        conversation_id: str,
        *,
        kind: str | None = None,
        source: str | None = None,
        newest_first: bool = False,
        since: str | None = None,
        limit: int = 100,
        page_id: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of events; returns (events, next_page_id)."""
        params: dict[str, Any] = {"limit": limit}
        if kind:
            params["kind"] = kind
        if source:
            params["source"] = source
        if newest_first:
            params["sort_order"] = "TIMESTAMP_DESC"
        if since:
            params["timestamp__gte"] = since
        if page_id:
            params["page_id"] = page_id
        page = await self._request(
            "GET", f"/conversations/{conversation_id}/events/search", params=params
        )
        return list(page.get("items", [])), page.get("next_page_id")

    async def ask_agent(self, conversation_id: str, question: str) -> str:
        answer = await self._request(
            "POST",
            f"/conversations/{conversation_id}/ask_agent",
            json={"question": question},
            timeout=ASK_AGENT_TIMEOUT,
        )
        return str(answer.get("response", ""))

    async def final_response(self, conversation_id: str) -> str:
        answer = await self._request(
            "GET", f"/conversations/{conversation_id}/agent_final_response"
        )
        return str(answer.get("response", ""))

    async def get_conversations(self, conversation_ids: list[str]) -> list[dict[str, Any] | None]:
        """ConversationInfo (or None for an id it does not know) for each of at most
        BATCH_LOOKUP_LIMIT ids, in their order (openhands-agent-server 1.58.2:
        `GET /api/conversations?ids=a&ids=b`, 422 beyond 99 ids)."""
        if len(conversation_ids) > BATCH_LOOKUP_LIMIT:
            raise ValueError(f"at most {BATCH_LOOKUP_LIMIT} ids per lookup")
        if not conversation_ids:
            return []
        found = await self._request(
            "GET", "/conversations", params=[("ids", cid) for cid in conversation_ids]
        )
        if not isinstance(found, list) or len(found) != len(conversation_ids):
            raise RetryableJobError("agent-server GET /conversations: not one answer per id")
        return [dict(info) if isinstance(info, dict) else None for info in found]


# The most ids one `GET /api/conversations?ids=` takes (openhands-agent-server 1.58.2).
BATCH_LOOKUP_LIMIT = 99
