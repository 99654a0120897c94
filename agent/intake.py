"""The routes the agent-server calls: its event batches and its conversation info.

Each request is authenticated, checked for shape, and recorded with its jobs in one
transaction before the 2xx; processors run later in workers. A re-sent batch (the
agent-server re-sends the whole batch after any non-2xx) finds its event ids in the
delivery ledger and changes nothing.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agent.events import (
    PROGRESS_JOB,
    STATE_CHANGED_JOB,
    STOPPED_STATES,
    AgentStateChangedObservation,
    MalformedEvents,
    ProgressPayload,
    StateChangedPayload,
    agent_event_kind,
    deletion_notice,
    execution_status_of,
    is_user_message,
    normalize_conversation_id,
    seed_observation,
    state_for_status,
    step_of,
    validate_batch,
)
from agent.http import bearer_token_matches, problem
from db.agent_conversations import HeardState, lock_conversation
from db.deliveries import record_deliveries, record_delivery
from db.jobs import JobQueue
from db.logcontext import log_context
from db.store import Store, now

log = logging.getLogger(__name__)

DELIVERY_SOURCE = "agent"
PROGRESS_EDIT_ATTEMPTS = 3


@dataclass(frozen=True)
class AgentIntake:
    store: Store
    queue: JobQueue
    session_api_key: str | None
    webhook_secret: str | None

    def routes(self) -> list[Route]:
        return [
            Route("/agent/events/{conversation_id}", self.receive_events, methods=["POST"]),
            Route("/agent/conversations", self.receive_conversation_info, methods=["POST"]),
        ]

    def _authenticated(self, request: Request) -> bool:
        presented_key = request.headers.get("x-session-api-key", "")
        if self.session_api_key and hmac.compare_digest(
            presented_key.encode(), self.session_api_key.encode()
        ):
            return True
        return bearer_token_matches(request, self.webhook_secret)

    async def receive_events(self, request: Request) -> JSONResponse:
        if not self._authenticated(request):
            return problem(401, "missing or wrong X-Session-API-Key / bearer token")
        try:
            conversation_id = normalize_conversation_id(request.path_params["conversation_id"])
            events = validate_batch(await _json_body(request))
        except MalformedEvents as exc:
            return problem(422 if not isinstance(exc, _NotJson) else 400, str(exc))
        with log_context(conversation=conversation_id):
            accepted, jobs = await self._record_events(conversation_id, events)
        return JSONResponse(
            {"accepted": accepted, "duplicates": len(events) - accepted, "jobs": jobs}
        )

    async def _record_events(
        self, conversation_id: str, events: list[dict[str, Any]]
    ) -> tuple[int, int]:
        accepted = jobs = 0
        async with self.store.transaction():
            # Concurrent batches of one conversation take turns (and a callback's
            # registration, relay.api, takes its turn with them).
            heard = await lock_conversation(self.store, conversation_id)
            status, last_agent_kind = heard.execution_status, heard.last_agent_event_kind
            # Only a turn with a status message to edit looks at the agent's steps.
            progress = _Progress(heard.status_steps) if heard.shows_progress else None
            fresh = await record_deliveries(
                self.store,
                DELIVERY_SOURCE,
                [f"{conversation_id}:{event['id']}" for event in events],
            )
            for event in events:
                delivery_id = f"{conversation_id}:{event['id']}"
                if delivery_id not in fresh:
                    continue
                fresh.discard(delivery_id)  # an id twice in one batch counts once
                accepted += 1
                observation: AgentStateChangedObservation | None = None
                if event.get("observation") == "agent_state_changed":
                    observation = seed_observation(conversation_id, event)
                if is_user_message(event):
                    last_agent_kind = None  # a new turn: the agent has not spoken in it
                last_agent_kind = agent_event_kind(event) or last_agent_kind
                if progress is not None:
                    progress.see(event)
                new_status = execution_status_of(event)
                # An execution_status event is a state change of its own; full_state
                # repeats the status the batch has already reported, and counts only
                # when it differs.
                if new_status is not None and (
                    event.get("key") == "execution_status" or new_status != status
                ):
                    status = new_status
                    state = state_for_status(new_status, last_agent_kind)
                    if state is not None:
                        observation = AgentStateChangedObservation(
                            conversation_id=conversation_id,
                            agent_state=state,
                            event_id=event["id"],
                            timestamp=event.get("timestamp"),
                        )
                if observation is not None and await self._enqueue(observation):
                    jobs += 1
            if accepted:
                values = {"id": conversation_id, "status": status, "kind": last_agent_kind}
                stepped = progress.values() if progress and progress.step else {}
                await self.store.execute(
                    "UPDATE agent_conversations SET execution_status = :status,"
                    " last_agent_event_kind = :kind, updated_at = :now"
                    + (", status_steps = :steps, status_step = :step" if stepped else "")
                    + " WHERE conversation_id = :id",
                    {**values, "now": now(), **stepped},
                )
                if stepped:
                    await self._enqueue_progress(conversation_id, heard)
        return accepted, jobs

    async def _enqueue_progress(self, conversation_id: str, heard: HeardState) -> None:
        """One status edit per batch at most, coalesced: every batch until the queued
        edit runs names the same generation, and it waits out the message's interval."""
        assert heard.status_interval is not None
        due = (heard.status_edited_at or 0.0) + heard.status_interval
        await self.queue.enqueue(
            PROGRESS_JOB,
            ProgressPayload(conversation_id=conversation_id),
            key=f"progress:{conversation_id}",
            idempotency_key=(
                f"progress:{conversation_id}:{heard.status_callback_id}:{heard.status_generation}"
            ),
            delay=max(0.0, due - now()),
            # A rate-limited edit is tried again after the platform's Retry-After;
            # one that keeps failing is dropped (the final one is the reply's).
            max_attempts=PROGRESS_EDIT_ATTEMPTS,
        )

    async def _enqueue(self, observation: AgentStateChangedObservation) -> bool:
        if observation.agent_state not in STOPPED_STATES:
            return False
        log.info(
            "conversation %s reached %s (event %s)",
            observation.conversation_id,
            observation.agent_state.value,
            observation.event_id,
        )
        job_id = await self.queue.enqueue(
            STATE_CHANGED_JOB,
            StateChangedPayload(observation=observation),
            key=observation.conversation_id,
            idempotency_key=f"agent-event:{observation.conversation_id}:{observation.event_id}",
        )
        return job_id is not None

    async def receive_conversation_info(self, request: Request) -> JSONResponse:
        if not self._authenticated(request):
            return problem(401, "missing or wrong X-Session-API-Key / bearer token")
        try:
            info = await _json_body(request)
            if not isinstance(info, dict) or not isinstance(info.get("id"), str):
                raise MalformedEvents("expected a ConversationInfo object with a string id")
            status = info.get("execution_status")
            if not isinstance(status, str):
                raise MalformedEvents("ConversationInfo has no string execution_status")
            conversation_id = normalize_conversation_id(info["id"])
        except MalformedEvents as exc:
            return problem(422 if not isinstance(exc, _NotJson) else 400, str(exc))
        delivery_id = f"{conversation_id}:info:{status}:{info.get('updated_at', '')}"
        queued = False
        async with self.store.transaction():
            if (
                await record_delivery(self.store, DELIVERY_SOURCE, delivery_id)
                and status == "deleting"
            ):
                # A deleted conversation will never answer: its callbacks must hear so.
                queued = await self._enqueue(
                    deletion_notice(conversation_id, info.get("updated_at"))
                )
        return JSONResponse({"accepted": True, "jobs": int(queued)})


class _Progress:
    """The steps a batch adds to its turn's count, and the newest one."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.step: str | None = None

    def see(self, event: dict[str, Any]) -> None:
        step = step_of(event)
        if step is not None:
            self.steps += 1
            self.step = step

    def values(self) -> dict[str, Any]:
        return {"steps": self.steps, "step": self.step}


class _NotJson(MalformedEvents):
    pass


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise _NotJson("body is not valid JSON") from None
