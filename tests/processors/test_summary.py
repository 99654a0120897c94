"""The summary round trip, with a real AgentClient against a fake agent-server.

SUMMARY_MODE=instruction: the first stop sends the instruction once and remembers
it; a stop before the agent answered it does nothing; the stop after the answer
queues exactly one reply and closes the callback, atomically.
"""

from __future__ import annotations

import json

import pytest

import processors.base
from agent.events import AgentState
from db.callbacks import CallbackStatus
from db.store import Store
from processors.base import EMPTY_ANSWER_TEXT, REPLY_JOB
from processors.context import ProcessorContext, SummaryMode
from processors.runtime import run_processors
from processors.summary import SUMMARY_INSTRUCTION
from tests.support.fake_agent_api import (
    CONVERSATION_URL_TEMPLATE,
    FakeAgentServer,
    FakeWebhookReceiver,
    insert_webhook_callback,
    jobs_of_kind,
    observation_of,
    processor_context,
    reload_callback,
)


@pytest.fixture
def conversation_id(agent_server: FakeAgentServer) -> str:
    """A conversation whose agent ran the prompt and finished with a FinishAction."""
    conversation = agent_server.add_conversation()
    agent_server.user_message(conversation, "Please fix issue #1")
    agent_server.status_change(conversation, "running")
    agent_server.agent_action(conversation, "git diff")
    agent_server.agent_finish(conversation, "Fixed it on branch fix-1.")
    return conversation


def processor_state(callback_json: str) -> dict[str, object]:
    state: dict[str, object] = json.loads(callback_json)
    return state


# -- SUMMARY_MODE=instruction ----------------------------------------------------------


async def test_first_stop_sends_the_instruction_once_and_remembers_it(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer, conversation_id: str
) -> None:
    callback = await insert_webhook_callback(store, conversation_id)
    finished = agent_server.status_change(conversation_id, "finished")

    await run_processors(context, observation_of(conversation_id, AgentState.FINISHED, finished))

    [sent] = agent_server.sent_messages(conversation_id)
    assert sent.body == {
        "role": "user",
        "content": [{"type": "text", "text": SUMMARY_INSTRUCTION}],
        "run": True,
    }
    instruction = agent_server.events[conversation_id][-1]
    assert instruction["source"] == "user"
    stored = await reload_callback(store, callback)
    assert stored.status is CallbackStatus.ACTIVE
    state = processor_state(stored.processor_json)
    assert state["summary_instruction_event_id"] == instruction["id"]
    assert state["summary_instruction_timestamp"] == instruction["timestamp"]
    assert await jobs_of_kind(store, REPLY_JOB) == []


async def test_stale_stop_before_the_agent_answered_does_nothing(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer, conversation_id: str
) -> None:
    callback = await insert_webhook_callback(store, conversation_id)
    finished = agent_server.status_change(conversation_id, "finished")
    first_stop = observation_of(conversation_id, AgentState.FINISHED, finished)
    await run_processors(context, first_stop)
    agent_server.status_change(conversation_id, "running")
    state_after_instruction = (await reload_callback(store, callback)).processor_json

    # The same stop again (a duplicate job) and an older stop arriving late.
    await run_processors(context, first_stop)
    await run_processors(context, observation_of(conversation_id, AgentState.AWAITING_USER_INPUT))

    assert len(agent_server.sent_messages(conversation_id)) == 1
    stored = await reload_callback(store, callback)
    assert stored.status is CallbackStatus.ACTIVE
    assert stored.processor_json == state_after_instruction
    assert await jobs_of_kind(store, REPLY_JOB) == []


@pytest.mark.parametrize("answer_kind", ["message", "finish"])
async def test_stop_after_the_answer_queues_one_reply_and_completes(
    store: Store,
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    conversation_id: str,
    answer_kind: str,
) -> None:
    callback = await insert_webhook_callback(store, conversation_id)
    first = agent_server.status_change(conversation_id, "finished")
    await run_processors(context, observation_of(conversation_id, AgentState.FINISHED, first))

    agent_server.status_change(conversation_id, "running")
    agent_server.agent_message(conversation_id, "An earlier thought, not the answer.")
    if answer_kind == "message":
        agent_server.agent_message(conversation_id, "  I fixed issue #1 on branch fix-1.  ")
        state = AgentState.AWAITING_USER_INPUT
    else:
        agent_server.agent_finish(conversation_id, "I fixed issue #1 on branch fix-1.")
        state = AgentState.FINISHED
    second = agent_server.status_change(conversation_id, "finished")
    await run_processors(context, observation_of(conversation_id, state, second))

    [reply_job] = await jobs_of_kind(store, REPLY_JOB)
    reply = reply_job["payload"]
    assert reply["callback_id"] == callback.id
    assert reply["conversation_id"] == conversation_id
    assert reply["status"] == "completed"
    assert reply["summary"] == "I fixed issue #1 on branch fix-1."
    assert reply["url"] == CONVERSATION_URL_TEMPLATE.format(conversation_id=conversation_id)
    assert reply["delivery_id"]
    stored = await reload_callback(store, callback)
    assert stored.status is CallbackStatus.COMPLETED
    assert len(agent_server.sent_messages(conversation_id)) == 1

    # The same observation again (a duplicate job): no second reply.
    await run_processors(context, observation_of(conversation_id, state, second))
    assert len(await jobs_of_kind(store, REPLY_JOB)) == 1
    assert len(agent_server.sent_messages(conversation_id)) == 1


async def test_reply_and_completion_are_one_transaction(
    store: Store,
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    conversation_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    callback = await insert_webhook_callback(store, conversation_id)
    first = agent_server.status_change(conversation_id, "finished")
    await run_processors(context, observation_of(conversation_id, AgentState.FINISHED, first))
    agent_server.agent_message(conversation_id, "The answer.")
    second = agent_server.status_change(conversation_id, "finished")

    async def crash_while_saving(*args: object, **kwargs: object) -> None:
        raise RuntimeError("process died between the two writes")

    monkeypatch.setattr(processors.base, "save_callback", crash_while_saving)
    with pytest.raises(RuntimeError):
        await run_processors(
            context, observation_of(conversation_id, AgentState.AWAITING_USER_INPUT, second)
        )
    assert await jobs_of_kind(store, REPLY_JOB) == []
    assert (await reload_callback(store, callback)).status is CallbackStatus.ACTIVE

    monkeypatch.undo()
    await run_processors(
        context, observation_of(conversation_id, AgentState.AWAITING_USER_INPUT, second)
    )
    assert len(await jobs_of_kind(store, REPLY_JOB)) == 1
    assert (await reload_callback(store, callback)).status is CallbackStatus.COMPLETED


async def test_retried_job_adopts_the_instruction_it_already_sent(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer, conversation_id: str
) -> None:
    prompt = agent_server.events[conversation_id][0]
    # The first attempt saved its mark, sent the instruction, and died before saving its id.
    callback = await insert_webhook_callback(
        store,
        conversation_id,
        summary_instruction_pending=True,
        summary_requested_after=prompt["id"],
    )
    finished = agent_server.status_change(conversation_id, "finished")
    already_sent = agent_server.user_message(conversation_id, SUMMARY_INSTRUCTION)
    agent_server.status_change(conversation_id, "running")

    await run_processors(context, observation_of(conversation_id, AgentState.FINISHED, finished))

    assert agent_server.sent_messages(conversation_id) == []
    state = processor_state((await reload_callback(store, callback)).processor_json)
    assert state["summary_instruction_event_id"] == already_sent["id"]


async def test_retried_job_that_died_before_sending_sends_the_instruction(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer, conversation_id: str
) -> None:
    prompt = agent_server.events[conversation_id][0]
    # The first attempt saved its mark and died before sending.
    callback = await insert_webhook_callback(
        store,
        conversation_id,
        summary_instruction_pending=True,
        summary_requested_after=prompt["id"],
    )
    finished = agent_server.status_change(conversation_id, "finished")

    await run_processors(context, observation_of(conversation_id, AgentState.FINISHED, finished))

    [sent] = agent_server.sent_messages(conversation_id)
    state = processor_state((await reload_callback(store, callback)).processor_json)
    assert state["summary_instruction_event_id"] == agent_server.events[conversation_id][-1]["id"]
    assert sent.body["content"][0]["text"] == SUMMARY_INSTRUCTION


async def test_prompt_before_the_stop_is_not_mistaken_for_the_instruction(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer, conversation_id: str
) -> None:
    callback = await insert_webhook_callback(store, conversation_id)
    finished = agent_server.status_change(conversation_id, "finished")

    await run_processors(context, observation_of(conversation_id, AgentState.FINISHED, finished))

    assert len(agent_server.sent_messages(conversation_id)) == 1
    prompt = agent_server.events[conversation_id][0]
    state = processor_state((await reload_callback(store, callback)).processor_json)
    assert state["summary_instruction_event_id"] != prompt["id"]


async def test_stop_without_timestamp_sends_the_instruction_and_finds_it(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer, conversation_id: str
) -> None:
    callback = await insert_webhook_callback(store, conversation_id)
    agent_server.status_change(conversation_id, "finished")

    # A catch-up observation (callback registered late) carries no timestamp.
    await run_processors(context, observation_of(conversation_id, AgentState.FINISHED))

    assert len(agent_server.sent_messages(conversation_id)) == 1
    instruction = agent_server.events[conversation_id][-1]
    state = processor_state((await reload_callback(store, callback)).processor_json)
    assert state["summary_instruction_event_id"] == instruction["id"]


async def test_answer_is_found_past_the_first_page_of_events(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer, conversation_id: str
) -> None:
    callback = await insert_webhook_callback(store, conversation_id)
    first = agent_server.status_change(conversation_id, "finished")
    await run_processors(context, observation_of(conversation_id, AgentState.FINISHED, first))
    agent_server.agent_message(conversation_id, "The answer, long ago.")
    for _ in range(150):
        agent_server.add_event(
            conversation_id, "ConversationStateUpdateEvent", "environment", key="stats", value={}
        )
    second = agent_server.status_change(conversation_id, "finished")

    await run_processors(
        context, observation_of(conversation_id, AgentState.AWAITING_USER_INPUT, second)
    )

    [reply_job] = await jobs_of_kind(store, REPLY_JOB)
    assert reply_job["payload"]["summary"] == "The answer, long ago."
    searches = [
        call for call in agent_server.calls_to("GET", "/events/search") if "kind" not in call.params
    ]
    assert len(searches) == 2
    assert "page_id" not in searches[0].params
    assert searches[1].params["page_id"]
    assert all(call.params["sort_order"] == "TIMESTAMP_DESC" for call in searches)
    assert (await reload_callback(store, callback)).status is CallbackStatus.COMPLETED


async def test_empty_answer_gets_a_readable_placeholder(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer, conversation_id: str
) -> None:
    await insert_webhook_callback(store, conversation_id)
    first = agent_server.status_change(conversation_id, "finished")
    await run_processors(context, observation_of(conversation_id, AgentState.FINISHED, first))
    agent_server.agent_message(conversation_id, "")
    second = agent_server.status_change(conversation_id, "finished")

    await run_processors(
        context, observation_of(conversation_id, AgentState.AWAITING_USER_INPUT, second)
    )

    [reply_job] = await jobs_of_kind(store, REPLY_JOB)
    assert reply_job["payload"]["summary"] == EMPTY_ANSWER_TEXT


# -- SUMMARY_MODE=ask_agent / final_response -------------------------------------------


@pytest.mark.parametrize(
    ("mode", "state", "expected_call", "answer"),
    [
        (
            SummaryMode.ASK_AGENT,
            AgentState.AWAITING_USER_INPUT,
            ("POST", "/ask_agent"),
            "Answer from ask_agent.",
        ),
        (
            SummaryMode.FINAL_RESPONSE,
            AgentState.FINISHED,
            ("GET", "/agent_final_response"),
            "Final response of the agent.",
        ),
    ],
)
async def test_other_modes_reply_without_an_instruction(
    store: Store,
    agent_server: FakeAgentServer,
    receiver: FakeWebhookReceiver,
    conversation_id: str,
    mode: SummaryMode,
    expected_call: tuple[str, str],
    answer: str,
    state: AgentState,
) -> None:
    callback = await insert_webhook_callback(store, conversation_id)
    finished = agent_server.status_change(conversation_id, "finished")

    async with processor_context(store, agent_server, receiver, summary_mode=mode) as context:
        await run_processors(context, observation_of(conversation_id, state, finished))

    assert agent_server.sent_messages(conversation_id) == []
    [call] = agent_server.calls_to(*expected_call)
    if mode is SummaryMode.ASK_AGENT:
        assert call.body == {"question": SUMMARY_INSTRUCTION}
    [reply_job] = await jobs_of_kind(store, REPLY_JOB)
    assert reply_job["payload"]["summary"] == answer
    assert reply_job["payload"]["status"] == "completed"
    assert (await reload_callback(store, callback)).status is CallbackStatus.COMPLETED
