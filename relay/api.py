"""/api/*: start conversations, register and list callbacks without Slack or GitHub."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agent.checkout import WorkspaceRequest
from agent.client import AgentClient
from agent.events import (
    START_JOB,
    STOPPED_STATES,
    MalformedEvents,
    StartPayload,
    normalize_conversation_id,
    state_for_status,
)
from agent.http import bearer_token_matches, problem
from bots.texts import request_title
from db.agent_conversations import HeardState, lock_conversation
from db.callbacks import (
    CallbackStatus,
    ConversationCallback,
    get_callback,
    insert_callback,
    list_callbacks,
)
from db.job_kinds import PermanentJobError, RetryableJobError
from db.jobs import JobQueue
from db.store import Store
from processors.receiver_guard import literal_refusal
from processors.runtime import CATCH_UP_JOB, CatchUpPayload
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


class ListCallbacksQuery(BaseModel):
    # Unknown parameters are refused: a misspelt filter would otherwise widen the list.
    model_config = ConfigDict(extra="forbid")

    conversation_id: str | None = None
    status: CallbackStatus | None = None
    processor_type: str | None = None
    limit: int = Field(default=50, ge=1, le=200)
    before: int | None = Field(default=None, ge=1)

    @field_validator("conversation_id")
    @classmethod
    def _stored_form(cls, conversation_id: str | None) -> str | None:
        # Rows hold the 32-hex form; a dashed UUID must find them too.
        if conversation_id is None:
            return None
        try:
            return normalize_conversation_id(conversation_id)
        except MalformedEvents as exc:
            raise ValueError(str(exc)) from None

    @field_validator("status", mode="before")
    @classmethod
    def _any_case(cls, status: Any) -> Any:
        return status.upper() if isinstance(status, str) else status


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
    # WEBHOOK_ALLOW_PRIVATE_NETWORKS: when off, a receiver URL that names a
    # non-public address outright is refused here; host names are checked when
    # sending, on the addresses they resolve to (processors/receiver_guard.py).
    allow_private_receivers: bool = False

    def routes(self) -> list[Route]:
        return [
            Route("/api/conversations", self.start_conversation, methods=["POST"]),
            # One route for both methods, so that any other method is a 405 naming both.
            Route("/api/callbacks", self.callbacks, methods=["GET", "POST"]),
            Route("/api/callbacks/{callback_id:int}", self.show_callback, methods=["GET"]),
        ]

    def _authorised(self, request: Request) -> bool:
        return bearer_token_matches(request, self.api_token)

    def _refused_receiver(self, processor: WebhookProcessor, where: str) -> JSONResponse | None:
        if self.allow_private_receivers:
            return None
        refusal = literal_refusal(processor.url)
        return None if refusal is None else problem(422, f"{where}: {refusal}")

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
        if refused := self._refused_receiver(processor, "callback.url"):
            return refused
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
                StartPayload(
                    conversation_id=conversation_id,
                    prompt=prompt,
                    tags=tags,
                    repository=body.repository,
                    # Checked out by whichever platform can serve it (GitHub, then
                    # GitLab); without one, the agent works without a checkout.
                    workspace=WorkspaceRequest(
                        repository=body.repository,
                        title=request_title(body.prompt, ""),
                    )
                    if body.repository
                    else None,
                ),
                key=conversation_id,
                idempotency_key=f"start:{conversation_id}",
            )
        return JSONResponse(
            {"conversation_id": conversation_id, "callback_id": callback.id}, status_code=201
        )

    async def callbacks(self, request: Request) -> JSONResponse:
        if request.method == "POST":
            return await self.register_callback(request)
        return await self.callback_list(request)  # GET, or the HEAD that Starlette adds

    async def callback_list(self, request: Request) -> JSONResponse:
        """Newest first; `next_before` is the `before` of the next page, null on the last."""
        if not self._authorised(request):
            return problem(401, "missing or wrong bearer token")
        try:
            query = ListCallbacksQuery.model_validate(dict(request.query_params))
        except ValidationError as exc:
            return _validation_problem(exc)
        page = await list_callbacks(
            self.store,
            status=query.status,
            conversation_id=query.conversation_id,
            processor_type=query.processor_type,
            before_id=query.before,
            limit=query.limit,
        )
        full_page = len(page) == query.limit
        return JSONResponse(
            {
                "callbacks": [callback.public_view() for callback in page],
                "next_before": page[-1].id if full_page else None,
            }
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
        if refused := self._refused_receiver(processor, "processor.url"):
            return refused
        # The agent-server's execution status as it told us just now; None when we
        # did not ask (the relay had heard of the conversation before).
        told_status: str | None = None
        if not await self._known_conversation(conversation_id):
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
            told_status = str(info.get("execution_status"))
        async with self.store.transaction():
            # Taken first when the answer just had may spare the catch-up job: a batch
            # of the conversation's events being recorded now commits either before
            # this transaction (its state is in `heard`) or after it (and the job it
            # queues finds this callback). Without that answer the job is queued anyway.
            heard = (
                None
                if told_status is None
                else await lock_conversation(self.store, conversation_id)
            )
            callback = await insert_callback(
                self.store, ConversationCallback.for_processor(conversation_id, processor)
            )
            assert callback.id is not None
            if _may_have_stopped(told_status, heard):
                # No state change may ever come: the catch-up job looks at the agent
                # once it runs, behind the jobs already queued for the conversation.
                await self.queue.enqueue(
                    CATCH_UP_JOB,
                    CatchUpPayload(callback_id=callback.id),
                    key=conversation_id,
                    idempotency_key=f"catch-up:{callback.id}",
                )
        return JSONResponse({"callback_id": callback.id}, status_code=201)

    async def _known_conversation(self, conversation_id: str) -> bool:
        """The agent-server has shown us this conversation (its webhooks did, or a
        callback was registered on it): no need to ask it again before registering.
        The catch-up job then looks at the agent instead."""
        row = await self.store.fetch_one(
            "SELECT 1 AS known FROM agent_conversations WHERE conversation_id = :id"
            " UNION ALL SELECT 1 FROM conversation_callbacks WHERE conversation_id = :id"
            " LIMIT 1",
            {"id": conversation_id},
        )
        return row is not None

    async def show_callback(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return problem(401, "missing or wrong bearer token")
        callback = await get_callback(self.store, request.path_params["callback_id"])
        if callback is None:
            return problem(404, "no such callback")
        return JSONResponse(callback.public_view())


def _may_have_stopped(told_status: str | None, heard: HeardState | None) -> bool:
    """Whether a new callback needs the catch-up job: its agent may have stopped
    already, so that no state change may ever come to run it.

    It does not when the agent-server has just said the conversation is running (or
    idle) and no webhook recorded since says otherwise: the stop that ends that
    run is then recorded after the callback exists, and its job runs the callback.
    Asking the agent again in a job would only cover a stop in the milliseconds
    between the two whose webhook is also lost for good. When the relay did not ask
    (it had heard of the conversation), its own record may be behind a lost
    webhook, so the catch-up job looks at the agent.
    """
    if told_status is None or heard is None:
        return True
    for status in (told_status, heard.execution_status):
        if status is None:
            continue
        state = state_for_status(status, heard.last_agent_event_kind)
        if state is None or state in STOPPED_STATES:
            return True
    return False
