"""Follow-up turns of a conversation, through the real job handlers and a fake agent-server.

A follow-up is recorded by bots.turns.record_turn (a callback holding its
`turn_message` and a conversation.message job); the handler sends the message once
every earlier callback of the conversation has answered.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from agent.events import (
    STATE_CHANGED_JOB,
    TURN_MESSAGE_JOB,
    AgentState,
    StateChangedPayload,
    TurnMessagePayload,
)
from bots.turns import Turn, record_turn
from db.callbacks import CallbackStatus, ConversationCallback, get_callback, insert_callback
from db.job_kinds import Job, JobKind, PermanentJobError
from db.store import Store
from processors.base import REPLY_JOB, ReplyStatus
from processors.context import ProcessorContext
from processors.runtime import MESSAGE_FAILED_TEXT, job_handlers
from processors.summary import SUMMARY_INSTRUCTION
from processors.webhook import WebhookProcessor
from tests.support.fake_agent_api import (
    WEBHOOK_SECRET,
    WEBHOOK_URL,
    FakeAgentServer,
    FakeWebhookReceiver,
    claim_job,
    insert_webhook_callback,
    jobs_of_kind,
    observation_of,
    reload_callback,
)

FOLLOW_UP = "Thanks! Now please also add a test for it."


def texts_sent(agent_server: FakeAgentServer, conversation_id: str) -> list[str]:
    return [
        "".join(part["text"] for part in call.body["content"])
        for call in agent_server.sent_messages(conversation_id)
    ]


def processor_of(callback: ConversationCallback) -> WebhookProcessor:
    processor = callback.get_processor()
    assert isinstance(processor, WebhookProcessor)
    return processor


async def record_follow_up(
    store: Store, context: ProcessorContext, conversation_id: str, text: str = FOLLOW_UP
) -> ConversationCallback:
    """What a platform's event job does for a mention in a thread that has a conversation."""
    processor = WebhookProcessor.model_validate({"url": WEBHOOK_URL, "secret": WEBHOOK_SECRET})
    callback_id = await record_turn(
        store,
        context.queue,
        Turn(
            platform="slack",
            thread_key="T1:C1:1700000000.000100",
            delivery_id=f"Ev{uuid.uuid4().hex[:8]}",
            conversation_id=conversation_id,
            text=text,
            processor=processor,
        ),
        continuing=True,
    )
    assert callback_id is not None
    callback = await get_callback(store, callback_id)
    assert callback is not None
    return callback


async def run(context: ProcessorContext, job: Job) -> None:
    await job_handlers(context)[job.kind](job)
    await context.queue.complete(job)


async def drain(context: ProcessorContext) -> None:
    """Run every runnable job, as a worker would."""
    while (job := await context.queue.claim()) is not None:
        await run(context, job)


async def run_next_job(context: ProcessorContext, kind: JobKind[Any]) -> Job:
    job = await claim_job(context.queue, kind)
    await run(context, job)
    return job


async def queue_state_change(
    context: ProcessorContext,
    conversation_id: str,
    state: AgentState,
    event: dict[str, Any] | None = None,
) -> None:
    """Queue the job the intake queues for a state change."""
    observation = observation_of(conversation_id, state, event)
    await context.queue.enqueue(
        STATE_CHANGED_JOB, StateChangedPayload(observation=observation), key=conversation_id
    )


async def state_change(
    context: ProcessorContext,
    conversation_id: str,
    state: AgentState,
    event: dict[str, Any] | None = None,
) -> None:
    """Queue and run the job the intake queues for a state change."""
    await queue_state_change(context, conversation_id, state, event)
    await run_next_job(context, STATE_CHANGED_JOB)


def finished_conversation(agent_server: FakeAgentServer) -> str:
    conversation_id = agent_server.add_conversation(execution_status="finished")
    agent_server.user_message(conversation_id, "Please fix issue #1")
    agent_server.agent_finish(conversation_id, "Fixed it.")
    return conversation_id


# -- a follow-up with no earlier turn under way --------------------------------------------


async def test_follow_up_is_sent_once_and_cleared(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation_id = finished_conversation(agent_server)
    callback = await record_follow_up(store, context, conversation_id)
    assert processor_of(callback).turn_message == FOLLOW_UP

    job = await claim_job(context.queue, TURN_MESSAGE_JOB)
    await job_handlers(context)[TURN_MESSAGE_JOB.name](job)

    assert texts_sent(agent_server, conversation_id) == [FOLLOW_UP]
    stored = await reload_callback(store, callback)
    assert stored.status is CallbackStatus.ACTIVE
    processor = processor_of(stored)
    assert processor.turn_message is None
    assert processor.turn_message_pending is False
    assert processor.turn_message_after is None
    assert [e["source"] for e in agent_server.events[conversation_id]][-1] == "user"

    # The queue delivers at least once: the same job again sends nothing more.
    await job_handlers(context)[TURN_MESSAGE_JOB.name](job)
    assert texts_sent(agent_server, conversation_id) == [FOLLOW_UP]
    assert await jobs_of_kind(store, REPLY_JOB) == []


async def test_after_its_message_the_follow_up_answers_like_any_turn(
    store: Store,
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    receiver: FakeWebhookReceiver,
) -> None:
    conversation_id = finished_conversation(agent_server)
    callback = await record_follow_up(store, context, conversation_id)
    await run_next_job(context, TURN_MESSAGE_JOB)

    agent_server.agent_finish(conversation_id, "Added the test.")
    stop = agent_server.status_change(conversation_id, "finished")
    await state_change(context, conversation_id, AgentState.FINISHED, stop)
    assert texts_sent(agent_server, conversation_id) == [FOLLOW_UP, SUMMARY_INSTRUCTION]

    agent_server.agent_message(conversation_id, "I added a test for the fix.")
    stop = agent_server.status_change(conversation_id, "finished")
    await state_change(context, conversation_id, AgentState.AWAITING_USER_INPUT, stop)
    await run_next_job(context, REPLY_JOB)

    [delivery] = receiver.received
    assert delivery.json()["callback_id"] == callback.id
    assert delivery.json()["summary"] == "I added a test for the fix."
    assert (await reload_callback(store, callback)).status is CallbackStatus.COMPLETED


async def test_state_changes_before_the_message_is_sent_are_ignored(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation_id = finished_conversation(agent_server)
    # Stops of the earlier turn, queued by the intake before the follow-up was recorded:
    # they run before its message goes out.
    stop = agent_server.status_change(conversation_id, "finished")
    states = (AgentState.FINISHED, AgentState.AWAITING_USER_INPUT, AgentState.ERROR)
    for state in states:
        await queue_state_change(context, conversation_id, state, stop)
    callback = await record_follow_up(store, context, conversation_id)
    calls_before = len(agent_server.calls)

    for _ in states:
        await run_next_job(context, STATE_CHANGED_JOB)

    assert len(agent_server.calls) == calls_before  # no summary instruction, no question
    assert await jobs_of_kind(store, REPLY_JOB) == []
    stored = await reload_callback(store, callback)
    assert stored.status is CallbackStatus.ACTIVE
    assert stored.processor_json == callback.processor_json

    await run_next_job(context, TURN_MESSAGE_JOB)
    assert texts_sent(agent_server, conversation_id) == [FOLLOW_UP]


# -- a follow-up behind an earlier turn --------------------------------------------------------


async def test_follow_up_waits_for_the_earlier_turn_to_answer(
    store: Store,
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    receiver: FakeWebhookReceiver,
) -> None:
    conversation_id = agent_server.add_conversation()
    agent_server.user_message(conversation_id, "Please fix issue #1")
    earlier = await insert_webhook_callback(store, conversation_id)
    follow_up = await record_follow_up(store, context, conversation_id)

    await run_next_job(context, TURN_MESSAGE_JOB)
    assert texts_sent(agent_server, conversation_id) == []
    assert processor_of(await reload_callback(store, follow_up)).turn_message == FOLLOW_UP

    # The earlier turn's summary round trip; the follow-up stays out of it.
    agent_server.agent_finish(conversation_id, "Fixed it.")
    stop = agent_server.status_change(conversation_id, "finished")
    await state_change(context, conversation_id, AgentState.FINISHED, stop)
    assert texts_sent(agent_server, conversation_id) == [SUMMARY_INSTRUCTION]
    # Nothing new is queued while the earlier turn is under way.
    [only] = await jobs_of_kind(store, TURN_MESSAGE_JOB)
    assert only["status"] == "done"

    agent_server.agent_message(conversation_id, "Fixed issue #1 on branch fix-1.")
    stop = agent_server.status_change(conversation_id, "finished")
    await state_change(context, conversation_id, AgentState.AWAITING_USER_INPUT, stop)

    assert (await reload_callback(store, earlier)).status is CallbackStatus.COMPLETED
    first, again = await jobs_of_kind(store, TURN_MESSAGE_JOB)
    assert first["status"] == "done"
    assert again["status"] == "queued"
    assert again["payload"] == {"callback_id": follow_up.id}
    assert again["job_key"] == conversation_id

    await run_next_job(context, REPLY_JOB)
    assert [d.json()["callback_id"] for d in receiver.received] == [earlier.id]
    await run_next_job(context, TURN_MESSAGE_JOB)

    assert texts_sent(agent_server, conversation_id) == [SUMMARY_INSTRUCTION, FOLLOW_UP]
    stored = await reload_callback(store, follow_up)
    assert stored.status is CallbackStatus.ACTIVE
    assert processor_of(stored).turn_message is None
    assert await context.queue.claim() is None


async def test_earlier_turn_failing_also_lets_the_follow_up_go(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation_id = agent_server.add_conversation()
    earlier = await insert_webhook_callback(store, conversation_id)
    follow_up = await record_follow_up(store, context, conversation_id)
    await run_next_job(context, TURN_MESSAGE_JOB)

    await state_change(context, conversation_id, AgentState.ERROR)

    assert (await reload_callback(store, earlier)).status is CallbackStatus.ERROR
    assert (await reload_callback(store, follow_up)).status is CallbackStatus.ACTIVE
    [reply] = await jobs_of_kind(store, REPLY_JOB)
    assert reply["payload"]["callback_id"] == earlier.id
    await run_next_job(context, REPLY_JOB)
    await run_next_job(context, TURN_MESSAGE_JOB)
    assert texts_sent(agent_server, conversation_id) == [FOLLOW_UP]


async def test_closing_the_earlier_callback_directly_queues_the_follow_up(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation_id = agent_server.add_conversation()
    earlier = await insert_webhook_callback(store, conversation_id)
    follow_up = await record_follow_up(store, context, conversation_id)
    await run_next_job(context, TURN_MESSAGE_JOB)

    await processor_of(earlier).close(earlier, context, ReplyStatus.COMPLETED, "Done.")
    # Closing twice (a retried job) queues the follow-up once.
    await processor_of(earlier).close(earlier, context, ReplyStatus.COMPLETED, "Done.")

    queued = [j for j in await jobs_of_kind(store, TURN_MESSAGE_JOB) if j["status"] == "queued"]
    assert [j["payload"] for j in queued] == [{"callback_id": follow_up.id}]
    await run_next_job(context, REPLY_JOB)
    await run_next_job(context, TURN_MESSAGE_JOB)
    assert texts_sent(agent_server, conversation_id) == [FOLLOW_UP]


async def test_follow_ups_take_turns_oldest_first(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation_id = agent_server.add_conversation()
    earlier = await insert_webhook_callback(store, conversation_id)
    second = await record_follow_up(store, context, conversation_id, "second turn")
    third = await record_follow_up(store, context, conversation_id, "third turn")
    await run_next_job(context, TURN_MESSAGE_JOB)
    await run_next_job(context, TURN_MESSAGE_JOB)
    assert texts_sent(agent_server, conversation_id) == []

    await processor_of(earlier).close(earlier, context, ReplyStatus.COMPLETED, "Done.")
    await run_next_job(context, REPLY_JOB)
    queued = [j for j in await jobs_of_kind(store, TURN_MESSAGE_JOB) if j["status"] == "queued"]
    assert [j["payload"] for j in queued] == [{"callback_id": second.id}]
    await run_next_job(context, TURN_MESSAGE_JOB)
    assert texts_sent(agent_server, conversation_id) == ["second turn"]

    # The third waits for the second's answer, not only for its message to be sent.
    second = await reload_callback(store, second)
    await processor_of(second).close(second, context, ReplyStatus.COMPLETED, "Second done.")
    await run_next_job(context, REPLY_JOB)
    await run_next_job(context, TURN_MESSAGE_JOB)
    assert texts_sent(agent_server, conversation_id) == ["second turn", "third turn"]
    assert processor_of(await reload_callback(store, third)).turn_message is None


async def test_follow_up_behind_an_unloadable_callback_is_not_stuck(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation_id = finished_conversation(agent_server)
    stamp = 1_700_000_000.0
    unloadable = await insert_callback(
        store,
        ConversationCallback(
            conversation_id=conversation_id,
            processor_type="no-longer-deployed",
            processor_json="{}",
            created_at=stamp,
            updated_at=stamp,
        ),
    )
    await record_follow_up(store, context, conversation_id)

    await run_next_job(context, TURN_MESSAGE_JOB)
    await drain(context)
    if not texts_sent(agent_server, conversation_id):
        # At the latest, the next state change (which closes the unloadable row) must
        # let the follow-up go.
        await queue_state_change(context, conversation_id, AgentState.FINISHED)
        await drain(context)

    assert (await reload_callback(store, unloadable)).status is CallbackStatus.ERROR
    assert texts_sent(agent_server, conversation_id) == [FOLLOW_UP]


# -- an attempt that died after sending ----------------------------------------------------------


async def queue_turn_job(context: ProcessorContext, callback: ConversationCallback) -> None:
    await context.queue.enqueue(
        TURN_MESSAGE_JOB, TurnMessagePayload(callback_id=callback.id), key=callback.conversation_id
    )


async def test_message_sent_by_a_dead_attempt_is_not_sent_again(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation_id = finished_conversation(agent_server)
    [newest_before] = [e for e in agent_server.events[conversation_id] if e["source"] == "user"]
    # The dead attempt marked the newest user message, sent the follow-up, and died.
    callback = await insert_webhook_callback(
        store,
        conversation_id,
        turn_message=FOLLOW_UP,
        turn_message_pending=True,
        turn_message_after=newest_before["id"],
    )
    agent_server.user_message(conversation_id, FOLLOW_UP)
    await queue_turn_job(context, callback)

    await run_next_job(context, TURN_MESSAGE_JOB)

    assert agent_server.sent_messages(conversation_id) == []
    processor = processor_of(await reload_callback(store, callback))
    assert processor.turn_message is None
    assert processor.turn_message_pending is False


async def test_attempt_that_died_before_sending_sends_once(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation_id = finished_conversation(agent_server)
    [newest_before] = [e for e in agent_server.events[conversation_id] if e["source"] == "user"]
    # Marked, but the send never reached the agent-server.
    callback = await insert_webhook_callback(
        store,
        conversation_id,
        turn_message=FOLLOW_UP,
        turn_message_pending=True,
        turn_message_after=newest_before["id"],
    )
    await queue_turn_job(context, callback)

    await run_next_job(context, TURN_MESSAGE_JOB)

    assert texts_sent(agent_server, conversation_id) == [FOLLOW_UP]
    assert processor_of(await reload_callback(store, callback)).turn_message is None


async def test_message_refused_by_the_agent_closes_the_follow_up_with_an_error(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation_id = finished_conversation(agent_server)
    callback = await record_follow_up(store, context, conversation_id)
    agent_server.fail_next("POST", f"/conversations/{conversation_id}/events", 422)
    job = await claim_job(context.queue, TURN_MESSAGE_JOB)

    with pytest.raises(PermanentJobError):
        await job_handlers(context)[TURN_MESSAGE_JOB.name](job)

    stored = await reload_callback(store, callback)
    assert stored.status is CallbackStatus.ERROR
    [reply] = await jobs_of_kind(store, REPLY_JOB)
    assert reply["payload"]["callback_id"] == callback.id
    assert reply["payload"]["summary"] == MESSAGE_FAILED_TEXT
