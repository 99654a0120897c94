"""HTTP client for the OpenHands agent-server REST API (all under /api).

Failures surface as the job queue's RetryableJobError / PermanentJobError (see
agent.http.send), so a job that calls the agent is retried exactly when that helps.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from agent.http import DEFAULT_TIMEOUT, new_http_client, send
from agent.instructions import CONTEXT_IS_DATA
from agent.workspaces import working_dir

# ask_agent runs an LLM completion over the whole conversation before it answers.
ASK_AGENT_TIMEOUT = httpx.Timeout(300.0, connect=5.0)


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
    ) -> None:
        self.llm = llm
        self.workspace_root = workspace_root
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

    async def start_conversation(
        self,
        prompt: str,
        *,
        conversation_id: str | None = None,
        tags: dict[str, str] | None = None,
        repository: str | None = None,
    ) -> str:
        """Start a conversation that runs `prompt` at once; returns its id (32 hex).

        Passing our own id lets the caller register callbacks before the agent can
        possibly report anything, and makes a retried start land on the same one.
        It works in a directory of its own (agent.workspaces), named after
        `repository` ("owner/name") when there is one.
        """
        conversation_id = uuid.UUID(conversation_id).hex if conversation_id else uuid.uuid4().hex
        directory = working_dir(self.workspace_root, conversation_id, repository)
        body: dict[str, Any] = {
            "conversation_id": str(uuid.UUID(conversation_id)),
            "agent_settings": self.llm.as_agent_settings(),
            "workspace": {"working_dir": directory},
            "agent_launch_additions": {"system_message_suffix_append": CONTEXT_IS_DATA},
            "initial_message": {**text_message(prompt), "run": True},
            "tags": tags or {},
        }
        info = await self._request("POST", "/conversations", json=body)
        return uuid.UUID(str(info["id"])).hex

    async def get_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        """ConversationInfo, or None when the agent-server does not know the id."""
        path = f"/conversations/{conversation_id}"
        response = await send(self._http, "GET", path, f"agent-server GET {path}", accept=(404,))
        return None if response.status_code == 404 else dict(response.json())

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
