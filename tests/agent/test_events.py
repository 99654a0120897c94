"""Unit tests of agent.events: status mapping, batch validation, conversation ids."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from agent.events import (
    STOPPED_STATES,
    AgentState,
    MalformedEvents,
    agent_event_kind,
    execution_status_of,
    normalize_conversation_id,
    seed_observation,
    state_for_status,
    validate_batch,
)
from tests.support.fake_agent_api import AGENT_CORPUS_DIR, corpus_batch, corpus_webhook

CONVERSATION_HEX = "35d77258005d458983a8431e1722da40"
CONVERSATION_DASHED = "35d77258-005d-4589-83a8-431e1722da40"


# -- execution_status -> AgentState ----------------------------------------------


@pytest.mark.parametrize(
    ("status", "last_agent_event", "expected"),
    [
        ("finished", "message", AgentState.AWAITING_USER_INPUT),
        ("finished", "finish", AgentState.FINISHED),
        ("finished", "action", AgentState.FINISHED),
        ("finished", None, AgentState.FINISHED),
        ("error", "message", AgentState.ERROR),
        ("error", None, AgentState.ERROR),
        ("stuck", None, AgentState.STUCK),
        ("waiting_for_confirmation", "action", AgentState.AWAITING_USER_CONFIRMATION),
        ("deleting", None, AgentState.STOPPED),
        ("paused", None, AgentState.PAUSED),
        ("running", "message", AgentState.RUNNING),
        ("idle", None, AgentState.INIT),
    ],
)
def test_execution_status_maps_to_agent_state(
    status: str, last_agent_event: str | None, expected: AgentState
) -> None:
    assert state_for_status(status, last_agent_event) is expected


def test_unknown_execution_status_maps_to_nothing() -> None:
    assert state_for_status("no-such-status", None) is None


def test_only_stopped_states_are_worth_a_job() -> None:
    assert AgentState.RUNNING not in STOPPED_STATES
    assert AgentState.INIT not in STOPPED_STATES
    for state in (AgentState.FINISHED, AgentState.AWAITING_USER_INPUT, AgentState.ERROR):
        assert state in STOPPED_STATES


def test_execution_status_of_reads_both_status_keys() -> None:
    finished = corpus_batch(3)["body"][2]
    full_state = corpus_batch(3)["body"][4]
    stats = corpus_batch(3)["body"][3]
    assert execution_status_of(finished) == "finished"
    assert execution_status_of(full_state) == "finished"
    assert execution_status_of(stats) is None
    assert execution_status_of({"kind": "MessageEvent", "key": "execution_status"}) is None


def test_agent_event_kind_tells_messages_from_finish_actions() -> None:
    finish_action = corpus_batch(3)["body"][0]
    agent_message = corpus_batch(6)["body"][0]
    user_message = corpus_batch(5)["body"][1]
    assert agent_event_kind(finish_action) == "finish"
    assert agent_event_kind(agent_message) == "message"
    assert agent_event_kind(user_message) is None
    terminal = {"kind": "ActionEvent", "source": "agent", "action": {"kind": "TerminalAction"}}
    assert agent_event_kind(terminal) == "action"


# -- validate_batch ----------------------------------------------------------------


@pytest.mark.parametrize("number", range(2, 9))
def test_every_corpus_batch_is_valid(number: int) -> None:
    body = corpus_batch(number)["body"]
    assert validate_batch(body) == body


def test_confirm_mode_corpus_batch_is_valid() -> None:
    body = corpus_webhook("webhook_confirm_mode_batch.json")["body"]
    assert validate_batch(body) == body


def test_corpus_directory_has_the_expected_batches() -> None:
    names = {path.name for path in AGENT_CORPUS_DIR.glob("webhook_0*_events_batch.json")}
    assert names == {f"webhook_{n:02d}_events_batch.json" for n in range(2, 9)}


def test_seed_observation_is_accepted_with_its_id_as_text() -> None:
    body = {
        "observation": "agent_state_changed",
        "extras": {"agent_state": "finished", "reason": ""},
        "id": 42,
    }
    [event] = validate_batch(body)
    assert event["id"] == "42"
    observation = seed_observation(CONVERSATION_HEX, event)
    assert observation.agent_state is AgentState.FINISHED
    assert observation.event_id == "42"
    assert observation.conversation_id == CONVERSATION_HEX


@pytest.mark.parametrize(
    "body",
    [
        "not a list",
        42,
        None,
        {"kind": "MessageEvent", "id": "x"},
        [{"kind": "MessageEvent"}],
        [{"id": "", "kind": "MessageEvent"}],
        [{"id": 7, "kind": "MessageEvent"}],
        [{"id": "e1"}],
        [{"id": "e1", "kind": 3}],
        ["an event that is a string"],
        {"observation": "agent_state_changed", "extras": {"agent_state": "sleeping"}, "id": 1},
        {"observation": "agent_state_changed", "extras": {}, "id": 1},
        {"observation": "agent_state_changed", "extras": "finished", "id": 1},
        {"observation": "agent_state_changed", "extras": {"agent_state": "finished"}},
    ],
)
def test_malformed_bodies_are_rejected(body: Any) -> None:
    with pytest.raises(MalformedEvents):
        validate_batch(body)


def test_empty_batch_is_valid() -> None:
    assert validate_batch([]) == []


# -- normalize_conversation_id ---------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [CONVERSATION_HEX, CONVERSATION_DASHED, CONVERSATION_DASHED.upper(), f" {CONVERSATION_HEX}\n"],
)
def test_conversation_ids_normalise_to_32_hex(raw: str) -> None:
    assert normalize_conversation_id(raw) == CONVERSATION_HEX


def test_a_random_uuid_round_trips() -> None:
    conversation = uuid.uuid4()
    assert normalize_conversation_id(str(conversation)) == conversation.hex


@pytest.mark.parametrize(
    "raw",
    ["", "junk", "35d77258005d458983a8431e1722da4", "35d77258005d458983a8431e1722da40ff", "../etc"],
)
def test_junk_conversation_ids_are_rejected(raw: str) -> None:
    with pytest.raises(MalformedEvents):
        normalize_conversation_id(raw)
