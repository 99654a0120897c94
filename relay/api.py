"""/api/*: start conversations and register callbacks without Slack or GitHub."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agent.client import AgentClient
from agent.events import MalformedEvents, normalize_conversation_id
from agent.http import bearer_token_matches, problem
from db.callbacks import ConversationCallback, get_callback, insert_callback
from db.jobs import JobQueue, PermanentJobError, RetryableJobError
from db.store import Store
from processors.runtime import CATCH_UP_JOB, START_JOB
from processors.webhook import WebhookProcessor


class WebhookCallbackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["webhook"]
    url: str
    secret: str

    def processor(self) -> WebhookProcessor:
        return WebhookProcessor.model_validate({"url": self.url, "secret": self.secret})


class StartConversationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=100_000)
    repository: str | None = Field(default=None, pattern=r"^[\w.-]+/[\w.-]+$", max_length=200)
    callback: WebhookCallbackSpec

    @field_validator("repository")
    @classmethod
    def _real_names(cls, repository: str | None) -> str | None:
        # The pattern admits "." and ".." as owner or name; neither is a name.
        if repository is not None and {".", ".."} & set(repository.split("/")):
            raise ValueError("owner and name must not be '.' or '..'")
        return repository


class RegisterCallbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversation_id: str
    processor: WebhookCallbackSpec


def _validation_problem(exc: ValidationError) -> JSONResponse:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return problem(422, f"{where}: {first['msg']}")


@dataclass(frozen=True)
class RelayApi:
    store: Store
    queue: JobQueue
    agent: AgentClient
    api_token: str | None

    def routes(self) -> list[Route]:
        return [
            Route("/api/conversations", self.start_conversation, methods=["POST"]),
            Route("/api/callbacks", self.register_callback, methods=["POST"]),
            Route("/api/callbacks/{callback_id:int}", self.show_callback, methods=["GET"]),
        ]

    def _authorised(self, request: Request) -> bool:
        return bearer_token_matches(request, self.api_token)

    async def _body(self, request: Request, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate(json.loads(await request.body()))
        except (ValueError, UnicodeDecodeError) as exc:
            if isinstance(exc, ValidationError):
                return _validation_problem(exc)
            return problem(400, "body is not valid JSON")

    async def start_conversation(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return problem(401, "missing or wrong bearer token")
        body = await self._body(request, StartConversationBody)
        if isinstance(body, JSONResponse):
            return body
        try:
            processor = body.callback.processor()
        except ValidationError as exc:
            return _validation_problem(exc)
        conversation_id = uuid.uuid4().hex
        prompt = body.prompt
        tags = {"source": "api"}
        if body.repository:
            prompt = f"Repository: {body.repository}\n\n{prompt}"
            tags["repository"] = body.repository
        # The callback exists before the conversation does, so no state change of
        # the conversation can arrive before there is somebody to tell.
        async with self.store.transaction():
            callback = await insert_callback(
                self.store, ConversationCallback.for_processor(conversation_id, processor)
            )
            await self.queue.enqueue(
                START_JOB,
                {"conversation_id": conversation_id, "prompt": prompt, "tags": tags},
                key=conversation_id,
                idempotency_key=f"start:{conversation_id}",
            )
        self.queue.wakeup.set()
        return JSONResponse(
            {"conversation_id": conversation_id, "callback_id": callback.id}, status_code=201
        )

    async def register_callback(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return problem(401, "missing or wrong bearer token")
        body = await self._body(request, RegisterCallbackBody)
        if isinstance(body, JSONResponse):
            return body
        try:
            conversation_id = normalize_conversation_id(body.conversation_id)
            processor = body.processor.processor()
        except MalformedEvents as exc:
            return problem(422, f"conversation_id: {exc}")
        except ValidationError as exc:
            return _validation_problem(exc)
        try:
            info = await self.agent.get_conversation(conversation_id)
        except (RetryableJobError, PermanentJobError):
            return JSONResponse(
                {"error": "the agent-server is unreachable; try again"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        if info is None:
            return problem(404, f"the agent-server has no conversation {conversation_id}")
        async with self.store.transaction():
            callback = await insert_callback(
                self.store, ConversationCallback.for_processor(conversation_id, processor)
            )
            # If the agent has already stopped, no state change may ever come: the
            # catch-up job looks at the agent once it runs, behind the jobs already
            # queued for the conversation.
            await self.queue.enqueue(
                CATCH_UP_JOB,
                {"callback_id": callback.id},
                key=conversation_id,
                idempotency_key=f"catch-up:{callback.id}",
            )
        self.queue.wakeup.set()
        return JSONResponse({"callback_id": callback.id}, status_code=201)

    async def show_callback(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return problem(401, "missing or wrong bearer token")
        callback = await get_callback(self.store, request.path_params["callback_id"])
        if callback is None:
            return problem(404, "no such callback")
        return JSONResponse(callback.public_view())
