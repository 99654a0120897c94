"""Normalising the agent-server's events into AgentStateChangedObservation.

The agent-server reports `execution_status` values; processors think in the seed's
AgentState values. The one translation that needs context: the agent-server has no
"awaiting input" status, so `finished` right after an agent message (rather than a
FinishAction) means the agent asked the user something.
"""

from __future__ import annotations

import re
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from agent.checkout import WorkspaceRequest
from db.job_kinds import JobKind


class AgentState(StrEnum):
    LOADING = "loading"
    INIT = "init"
    RUNNING = "running"
    AWAITING_USER_INPUT = "awaiting_user_input"
    PAUSED = "paused"
    STOPPED = "stopped"
    FINISHED = "finished"
    REJECTED = "rejected"
    ERROR = "error"
    AWAITING_USER_CONFIRMATION = "awaiting_user_confirmation"
    USER_CONFIRMED = "user_confirmed"
    USER_REJECTED = "user_rejected"
    RATE_LIMITED = "rate_limited"
    STUCK = "stuck"


# States in which the agent has stopped and will not go on by itself: each gets a
# job, so that processors may act (today's act on the answer and failure states;
# PAUSED and AWAITING_USER_CONFIRMATION are there for processors that want to say
# so). RUNNING, INIT and the like never get one.
STOPPED_STATES = frozenset(
    {
        AgentState.AWAITING_USER_INPUT,
        AgentState.FINISHED,
        AgentState.ERROR,
        AgentState.RATE_LIMITED,
        AgentState.STUCK,
        AgentState.STOPPED,
        AgentState.PAUSED,
        AgentState.AWAITING_USER_CONFIRMATION,
    }
)

_EXECUTION_STATUS_TO_STATE = {
    "idle": AgentState.INIT,
    "running": AgentState.RUNNING,
    "paused": AgentState.PAUSED,
    "waiting_for_confirmation": AgentState.AWAITING_USER_CONFIRMATION,
    "finished": AgentState.FINISHED,
    "error": AgentState.ERROR,
    "stuck": AgentState.STUCK,
    "deleting": AgentState.STOPPED,
}


class AgentStateChangedObservation(BaseModel):
    """The agent of `conversation_id` reached `agent_state` (the seed's observation)."""

    model_config = ConfigDict(frozen=True)

    conversation_id: str
    agent_state: AgentState
    reason: str = ""
    event_id: str = Field(description="id of the agent-server event that reported the change")
    timestamp: str | None = Field(
        default=None, description="that event's timestamp, as the agent-server wrote it"
    )
    received_at: float | None = Field(
        default=None, description="when agent-relay received that event (epoch seconds)"
    )


# The event id of a deletion notice: one per conversation id.
_DELETION_EVENT_PREFIX = "info-deleting-"


def deletion_notice(conversation_id: str, timestamp: str | None) -> AgentStateChangedObservation:
    """What the agent-server's "deleting" ConversationInfo webhook says: the
    conversation stopped for good (openhands-agent-server 1.58.2 posts it from a
    background task, so it may arrive after the id was used again)."""
    return AgentStateChangedObservation(
        conversation_id=conversation_id,
        agent_state=AgentState.STOPPED,
        reason="the conversation was deleted",
        event_id=f"{_DELETION_EVENT_PREFIX}{conversation_id}",
        timestamp=timestamp,
    )


def is_deletion_notice(observation: AgentStateChangedObservation) -> bool:
    return observation.event_id == f"{_DELETION_EVENT_PREFIX}{observation.conversation_id}"


class StateChangedPayload(BaseModel):
    observation: AgentStateChangedObservation
    # Run only this callback. Queued by earlier versions, whose /api/callbacks caught
    # a new callback up this way (callback.catch_up does that now).
    callback_id: int | None = None

    @field_serializer("observation", when_used="json")
    def _without_arrival(self, observation: AgentStateChangedObservation) -> dict[str, Any]:
        # When the event arrived is the job's created_at; the handler fills it in.
        return observation.model_dump(mode="json", exclude={"received_at"})


# The job that runs a conversation's processors for one observation.
STATE_CHANGED_JOB = JobKind("agent.state_changed", StateChangedPayload)


class StartPayload(BaseModel):
    conversation_id: str
    prompt: str
    tags: dict[str, str] = Field(default_factory=dict)
    # A mention's start says where it came from; the API's does not.
    platform: str | None = None
    delivery_id: str | None = None
    callback_id: int | None = None
    received_at: float | None = Field(
        default=None, description="when the platform's delivery arrived (epoch seconds)"
    )
    # The repository ("owner/name") the conversation is about, which names its
    # working directory; None in starts queued before it was recorded.
    repository: str | None = None
    # The checkout to prepare before the agent's first step (processors.workspace);
    # None: a directory with no repository in it.
    workspace: WorkspaceRequest | None = None


# Start a conversation with its prompt.
START_JOB = JobKind("conversation.start", StartPayload)


class TurnMessagePayload(BaseModel):
    callback_id: int


# Send a follow-up turn's message once earlier turns have answered.
TURN_MESSAGE_JOB = JobKind("conversation.message", TurnMessagePayload)


class ProgressPayload(BaseModel):
    conversation_id: str


# Edit a turn's status message with the agent's newest step (processors.progress);
# keyed per conversation on a lane of its own, so it never waits for nor holds up
# the conversation's state changes or replies.
PROGRESS_JOB = JobKind("turn.progress", ProgressPayload)


class StopPayload(BaseModel):
    conversation_id: str
    # Who asked, as the platform writes a person ("@alice", "<@U1>").
    who: str


# Pause a conversation's run because someone in its thread asked to stop it.
STOP_JOB = JobKind("conversation.stop", StopPayload)

# A step as the status message shows it: one line, at most this long.
STEP_CHARS = 120
# Token shapes of the platforms the relay speaks for, hidden even if a command
# carried one that the agent-server did not know as a secret.
_TOKEN_SHAPES = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}"
    r"|xox[abeprs]-[A-Za-z0-9-]{10,})"
)


def step_of(event: dict[str, Any]) -> str | None:
    """What the agent is doing, when `event` is one of its tool calls (not `finish`):
    the call's summary, else the tool and a short form of its command; one line,
    trimmed. openhands-agent-server 1.58.2 writes `"tool: {json args}"` as the summary
    when the LLM gave none, and masks the secrets it knows in the events it sends."""
    if agent_event_kind(event) != "action":
        return None
    action = event.get("action")
    tool = str(event.get("tool_name") or (action or {}).get("kind") or "tool")
    summary = event.get("summary")
    if isinstance(summary, str) and summary.strip() and not summary.startswith(f"{tool}: {{"):
        return one_line(summary, STEP_CHARS)
    command = command_of(action) if isinstance(action, dict) else ""
    return one_line(f"{tool}: {command}" if command else tool, STEP_CHARS)


def command_of(action: dict[str, Any]) -> str:
    """What a tool call acts on, as the agent-server sent it (secrets it knows
    masked): a terminal's command, a file editor's command and path, a URL, a query."""
    for name in ("command", "path", "url", "query"):
        value = action.get(name)
        if isinstance(value, str) and value.strip():
            path = action.get("path")
            if name == "command" and isinstance(path, str):
                return f"{value} {path}"  # the file editor: "view /workspace/x.py"
            return value
    return ""


def one_line(text: str, limit: int) -> str:
    """`text` on one line (its first non-blank one), tokens hidden, cut at `limit`."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return trimmed(line, limit)


def trimmed(text: str, limit: int) -> str:
    """`text` (all its lines) with tokens hidden, cut at `limit` characters."""
    text = _TOKEN_SHAPES.sub("***", text.strip())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class MalformedEvents(ValueError):
    """The body is not an agent-server event batch nor a seed observation."""


def normalize_conversation_id(raw: str) -> str:
    """Accept the agent-server's 32-hex form and the dashed UUID; store the 32-hex form."""
    try:
        return uuid.UUID(raw.strip()).hex
    except ValueError:
        raise MalformedEvents(f"conversation id {raw!r} is not a UUID") from None


def execution_status_of(event: dict[str, Any]) -> str | None:
    """The execution status a ConversationStateUpdateEvent carries, if any."""
    if event.get("kind") != "ConversationStateUpdateEvent":
        return None
    value = event.get("value")
    if event.get("key") == "execution_status" and isinstance(value, str):
        return value
    if event.get("key") == "full_state" and isinstance(value, dict):
        status = value.get("execution_status")
        return status if isinstance(status, str) else None
    return None


def is_user_message(event: dict[str, Any]) -> bool:
    return event.get("kind") == "MessageEvent" and event.get("source") == "user"


def agent_event_kind(event: dict[str, Any]) -> str | None:
    """For the agent's own events: 'message' and 'finish' (these end its turn) or
    'action' (any other tool call); None for everything else."""
    if event.get("source") != "agent":
        return None
    if event.get("kind") == "MessageEvent":
        return "message"
    action = event.get("action")
    if event.get("kind") == "ActionEvent" and isinstance(action, dict):
        return "finish" if action.get("kind") == "FinishAction" else "action"
    return None


def state_for_status(status: str, last_agent_event_kind: str | None) -> AgentState | None:
    state = _EXECUTION_STATUS_TO_STATE.get(status)
    if state is AgentState.FINISHED and last_agent_event_kind == "message":
        return AgentState.AWAITING_USER_INPUT
    return state


def validate_batch(body: Any) -> list[dict[str, Any]]:
    """Check the shape of an agent-server webhook batch (or seed observation)."""
    if isinstance(body, dict):
        if body.get("observation") == "agent_state_changed":
            return [_validate_seed_observation(body)]
        raise MalformedEvents(
            "expected a JSON list of events or an agent_state_changed observation"
        )
    if not isinstance(body, list):
        raise MalformedEvents("expected a JSON list of events")
    for index, event in enumerate(body):
        if not isinstance(event, dict):
            raise MalformedEvents(f"event {index} is not an object")
        if not isinstance(event.get("id"), str) or not event["id"]:
            raise MalformedEvents(f"event {index} has no string id")
        if not isinstance(event.get("kind"), str):
            raise MalformedEvents(f"event {index} has no string kind")
    return body


def _validate_seed_observation(body: dict[str, Any]) -> dict[str, Any]:
    extras = body.get("extras")
    if not isinstance(extras, dict) or not isinstance(extras.get("agent_state"), str):
        raise MalformedEvents("observation has no extras.agent_state")
    try:
        AgentState(extras["agent_state"])
    except ValueError:
        raise MalformedEvents(f"unknown agent_state {extras['agent_state']!r}") from None
    if not isinstance(body.get("id"), (str, int)):
        raise MalformedEvents("observation has no id")
    return {**body, "id": str(body["id"])}


def seed_observation(conversation_id: str, event: dict[str, Any]) -> AgentStateChangedObservation:
    extras = event["extras"]
    return AgentStateChangedObservation(
        conversation_id=conversation_id,
        agent_state=AgentState(extras["agent_state"]),
        reason=str(extras.get("reason") or ""),
        event_id=event["id"],
        timestamp=event.get("timestamp"),
    )
