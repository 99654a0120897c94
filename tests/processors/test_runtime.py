"""The job handlers that run processors, against a fake agent-server and receiver.

Jobs are queued and claimed through the real JobQueue and run by the handlers
job_handlers() builds, as the worker would run them.
"""

from __future__ import annotations

import re
import sys
import uuid
from typing import Any

import pytest

from agent.events import (
    START_JOB,
    STATE_CHANGED_JOB,
    AgentState,
    StartPayload,
    StateChangedPayload,
    deletion_notice,
)
from agent.instructions import CONTEXT_IS_DATA
from db.callbacks import CallbackStatus, ConversationCallback, insert_callback
from db.conversation_links import find_link
from db.job_kinds import JobKind, PermanentJobError, RetryableJobError
from db.store import Store
from processors.base import REPLY_JOB, Reply, ReplyStatus
from processors.context import ProcessorContext, SummaryMode
from processors.runtime import (
    CATCH_UP_JOB,
    GAVE_UP_TEXT,
    START_FAILED_TEXT,
    CatchUpPayload,
    job_handlers,
)
from processors.summary import SUMMARY_INSTRUCTION
from processors.webhook import SIGNATURE_HEADER, sign
from tests.support.fake_agent_api import (
    CONVERSATION_URL_TEMPLATE,
    WEBHOOK_SECRET,
    WEBHOOK_URL,
    FakeAgentServer,
    FakeWebhookReceiver,
    claim_job,
    insert_webhook_callback,
    jobs_of_kind,
    observation_of,
    processor_context,
    reload_callback,
)

URL_PATTERN = re.compile(r"https?://\S+")


@pytest.fixture
def conversation_id(agent_server: FakeAgentServer) -> str:
    conversation = agent_server.add_conversation()
    agent_server.user_message(conversation, "Please fix issue #1")
    agent_server.agent_finish(conversation, "Fixed it.")
    return conversation


async def queue_state_change(
    context: ProcessorContext,
    conversation_id: str,
    state: AgentState,
    event: dict[str, Any] | None = None,
    *,
    callback_id: int | None = None,
) -> None:
    """Queue the job the intake would queue (with `callback_id`: the one earlier
    versions' API queued to catch a new callback up)."""
    observation = observation_of(conversation_id, state, event)
    payload = StateChangedPayload(observation=observation, callback_id=callback_id)
    await context.queue.enqueue(STATE_CHANGED_JOB, payload, key=conversation_id)


async def run_next_job(context: ProcessorContext, kind: JobKind[Any]) -> None:
    job = await claim_job(context.queue, kind)
    await job_handlers(context)[kind.name](job)
    await context.queue.complete(job)


def assert_readable(text: str, conversation_id: str) -> None:
    """No internals: no traceback, no URL but the configured conversation link."""
    assert "Traceback" not in text
    assert "agent-server.test" not in text
    assert "Error(" not in text
    link = CONVERSATION_URL_TEMPLATE.format(conversation_id=conversation_id)
    assert all(url.rstrip(".") == link for url in URL_PATTERN.findall(text)), text


# -- the whole way: state change -> reply job -> webhook delivery -----------------------


async def test_state_change_job_leads_to_one_signed_delivery(
    store: Store,
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    receiver: FakeWebhookReceiver,
    conversation_id: str,
) -> None:
    callback = await insert_webhook_callback(store, conversation_id)
    first = agent_server.status_change(conversation_id, "finished")
    await queue_state_change(context, conversation_id, AgentState.FINISHED, first)
    await run_next_job(context, STATE_CHANGED_JOB)
    assert [m.body["content"][0]["text"] for m in agent_server.sent_messages(conversation_id)] == [
        SUMMARY_INSTRUCTION
    ]

    agent_server.agent_message(conversation_id, "Done: branch fix-1.")
    second = agent_server.status_change(conversation_id, "finished")
    await queue_state_change(context, conversation_id, AgentState.AWAITING_USER_INPUT, second)
    await run_next_job(context, STATE_CHANGED_JOB)
    await run_next_job(context, REPLY_JOB)

    [delivery] = receiver.received
    assert delivery.url == WEBHOOK_URL
    assert delivery.json() == {
        "conversation_id": conversation_id,
        "callback_id": callback.id,
        "status": "completed",
        "summary": "Done: branch fix-1.",
        "url": CONVERSATION_URL_TEMPLATE.format(conversation_id=conversation_id),
        # No checkout, so no pull request.
        "pull_request": None,
    }
    assert delivery.headers[SIGNATURE_HEADER.lower()] == sign(WEBHOOK_SECRET, delivery.body)
    assert await context.queue.claim() is None


async def test_catch_up_job_runs_only_its_own_callback(
    store: Store,
    agent_server: FakeAgentServer,
    receiver: FakeWebhookReceiver,
    conversation_id: str,
) -> None:
    older = await insert_webhook_callback(store, conversation_id)
    newer = await insert_webhook_callback(store, conversation_id)
    async with processor_context(
        store, agent_server, receiver, summary_mode=SummaryMode.FINAL_RESPONSE
    ) as context:
        await queue_state_change(
            context, conversation_id, AgentState.FINISHED, callback_id=newer.id
        )
        await run_next_job(context, STATE_CHANGED_JOB)

    [reply_job] = await jobs_of_kind(store, REPLY_JOB)
    assert reply_job["payload"]["callback_id"] == newer.id
    assert (await reload_callback(store, older)).status is CallbackStatus.ACTIVE
    assert (await reload_callback(store, newer)).status is CallbackStatus.COMPLETED


async def queue_catch_up(context: ProcessorContext, callback: ConversationCallback) -> None:
    """Queue the job POST /api/callbacks queues."""
    await context.queue.enqueue(
        CATCH_UP_JOB, CatchUpPayload(callback_id=callback.id), key=callback.conversation_id
    )


async def test_catch_up_of_a_stopped_conversation_runs_only_its_callback(
    store: Store,
    agent_server: FakeAgentServer,
    receiver: FakeWebhookReceiver,
    conversation_id: str,
) -> None:
    older = await insert_webhook_callback(store, conversation_id)
    newer = await insert_webhook_callback(store, conversation_id)
    agent_server.status_change(conversation_id, "finished")
    async with processor_context(
        store, agent_server, receiver, summary_mode=SummaryMode.FINAL_RESPONSE
    ) as context:
        await queue_catch_up(context, newer)
        await run_next_job(context, CATCH_UP_JOB)

    [reply_job] = await jobs_of_kind(store, REPLY_JOB)
    assert reply_job["payload"]["callback_id"] == newer.id
    assert (await reload_callback(store, older)).status is CallbackStatus.ACTIVE
    assert (await reload_callback(store, newer)).status is CallbackStatus.COMPLETED


async def test_catch_up_of_a_running_conversation_waits_for_its_next_stop(
    store: Store,
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    conversation_id: str,
) -> None:
    callback = await insert_webhook_callback(store, conversation_id)
    agent_server.status_change(conversation_id, "running")
    await queue_catch_up(context, callback)
    await run_next_job(context, CATCH_UP_JOB)

    assert agent_server.sent_messages(conversation_id) == []
    assert await jobs_of_kind(store, REPLY_JOB) == []
    assert (await reload_callback(store, callback)).status is CallbackStatus.ACTIVE


async def test_catch_up_in_instruction_mode_asks_for_the_summary(
    store: Store,
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    conversation_id: str,
) -> None:
    callback = await insert_webhook_callback(store, conversation_id)
    agent_server.status_change(conversation_id, "finished")
    await queue_catch_up(context, callback)
    await run_next_job(context, CATCH_UP_JOB)

    [sent] = agent_server.sent_messages(conversation_id)
    assert sent.body["content"][0]["text"] == SUMMARY_INSTRUCTION
    assert (await reload_callback(store, callback)).status is CallbackStatus.ACTIVE


# -- failures of the agent --------------------------------------------------------------


@pytest.mark.parametrize(
    "state", [AgentState.ERROR, AgentState.STUCK, AgentState.RATE_LIMITED, AgentState.STOPPED]
)
async def test_failure_states_queue_a_readable_failure_reply(
    store: Store,
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    conversation_id: str,
    state: AgentState,
) -> None:
    callback = await insert_webhook_callback(store, conversation_id)
    calls_before = len(agent_server.calls)

    await queue_state_change(context, conversation_id, state)
    await run_next_job(context, STATE_CHANGED_JOB)

    [reply_job] = await jobs_of_kind(store, REPLY_JOB)
    reply = reply_job["payload"]
    assert reply["status"] == "error"
    assert reply["summary"].strip()
    assert_readable(reply["summary"], conversation_id)
    link = CONVERSATION_URL_TEMPLATE.format(conversation_id=conversation_id)
    assert link in reply["summary"]
    stored = await reload_callback(store, callback)
    assert stored.status is CallbackStatus.ERROR
    assert stored.status_reason == f"agent state {state.value}"
    assert len(agent_server.calls) == calls_before  # the agent is not asked anything


async def test_failure_reply_without_a_conversation_link_has_no_url(
    store: Store,
    agent_server: FakeAgentServer,
    receiver: FakeWebhookReceiver,
    conversation_id: str,
) -> None:
    await insert_webhook_callback(store, conversation_id)
    async with processor_context(
        store, agent_server, receiver, conversation_url_template=None
    ) as context:
        await queue_state_change(context, conversation_id, AgentState.ERROR)
        await run_next_job(context, STATE_CHANGED_JOB)
    [reply_job] = await jobs_of_kind(store, REPLY_JOB)
    assert URL_PATTERN.findall(reply_job["payload"]["summary"]) == []
    assert reply_job["payload"]["url"] is None


async def test_states_that_need_no_answer_change_nothing(
    store: Store, context: ProcessorContext, conversation_id: str
) -> None:
    callback = await insert_webhook_callback(store, conversation_id)
    for state in (AgentState.RUNNING, AgentState.PAUSED, AgentState.AWAITING_USER_CONFIRMATION):
        await queue_state_change(context, conversation_id, state)
        await run_next_job(context, STATE_CHANGED_JOB)
    assert await jobs_of_kind(store, REPLY_JOB) == []
    stored = await reload_callback(store, callback)
    assert stored.status is CallbackStatus.ACTIVE
    assert stored.processor_json == callback.processor_json


async def test_permanent_agent_error_closes_the_callback_with_a_failure_reply(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer, conversation_id: str
) -> None:
    callback = await insert_webhook_callback(store, conversation_id)
    finished = agent_server.status_change(conversation_id, "finished")
    agent_server.fail_next("POST", f"/conversations/{conversation_id}/events", 400)

    await queue_state_change(context, conversation_id, AgentState.FINISHED, finished)
    await run_next_job(context, STATE_CHANGED_JOB)

    [reply_job] = await jobs_of_kind(store, REPLY_JOB)
    assert reply_job["payload"]["status"] == "error"
    assert_readable(reply_job["payload"]["summary"], conversation_id)
    stored = await reload_callback(store, callback)
    assert stored.status is CallbackStatus.ERROR
    assert stored.status_reason is not None and "400" in stored.status_reason


async def test_permanent_error_of_one_callback_leaves_the_others_running(
    store: Store,
    agent_server: FakeAgentServer,
    receiver: FakeWebhookReceiver,
    conversation_id: str,
) -> None:
    first = await insert_webhook_callback(store, conversation_id)
    second = await insert_webhook_callback(store, conversation_id)
    agent_server.fail_next("POST", "/ask_agent", 404)
    async with processor_context(
        store, agent_server, receiver, summary_mode=SummaryMode.ASK_AGENT
    ) as context:
        await queue_state_change(context, conversation_id, AgentState.FINISHED)
        await run_next_job(context, STATE_CHANGED_JOB)

    replies = {
        job["payload"]["callback_id"]: job["payload"]
        for job in await jobs_of_kind(store, REPLY_JOB)
    }
    assert replies[first.id]["status"] == "error"
    assert replies[second.id]["status"] == "completed"
    assert (await reload_callback(store, first)).status is CallbackStatus.ERROR
    assert (await reload_callback(store, second)).status is CallbackStatus.COMPLETED


@pytest.mark.parametrize(("status", "retry_after"), [(503, None), (429, 7.0)])
async def test_agent_outage_is_retried_and_leaves_the_callback_active(
    store: Store,
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    conversation_id: str,
    status: int,
    retry_after: float | None,
) -> None:
    callback = await insert_webhook_callback(store, conversation_id)
    finished = agent_server.status_change(conversation_id, "finished")
    agent_server.fail_next(
        "GET",
        "/events/search",
        status,
        headers={"Retry-After": "7"} if retry_after is not None else None,
    )
    await queue_state_change(context, conversation_id, AgentState.FINISHED, finished)
    job = await claim_job(context.queue, STATE_CHANGED_JOB)

    with pytest.raises(RetryableJobError) as raised:
        await job_handlers(context)[STATE_CHANGED_JOB.name](job)
    assert raised.value.retry_after == retry_after
    assert str(status) in str(raised.value)
    stored = await reload_callback(store, callback)
    assert stored.status is CallbackStatus.ACTIVE
    assert stored.processor_json == callback.processor_json
    assert await jobs_of_kind(store, REPLY_JOB) == []

    # The retry, once the agent is back, does the work exactly once.
    await job_handlers(context)[STATE_CHANGED_JOB.name](job)
    assert len(agent_server.sent_messages(conversation_id)) == 1


async def test_the_last_failed_attempt_closes_the_callbacks_with_a_readable_failure(
    store: Store,
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    conversation_id: str,
) -> None:
    callback = await insert_webhook_callback(store, conversation_id)
    finished = agent_server.status_change(conversation_id, "finished")
    agent_server.fail_next("GET", "/events/search", 503, times=100)
    await context.queue.enqueue(
        STATE_CHANGED_JOB,
        StateChangedPayload(
            observation=observation_of(conversation_id, AgentState.FINISHED, finished)
        ),
        key=conversation_id,
        max_attempts=1,
    )
    job = await claim_job(context.queue, STATE_CHANGED_JOB)

    with pytest.raises(RetryableJobError):
        await job_handlers(context)[STATE_CHANGED_JOB.name](job)

    stored = await reload_callback(store, callback)
    assert stored.status is CallbackStatus.ERROR
    assert stored.status_reason is not None and "gave up after 1 attempts" in stored.status_reason
    [reply_job] = await jobs_of_kind(store, REPLY_JOB)
    assert reply_job["payload"]["status"] == "error"
    assert reply_job["payload"]["summary"].startswith(GAVE_UP_TEXT)
    assert_readable(reply_job["payload"]["summary"], conversation_id)


# -- rows that cannot be loaded -------------------------------------------------------------


async def test_unknown_processor_type_is_closed_without_importing_anything(
    store: Store, context: ProcessorContext, conversation_id: str
) -> None:
    module_name = "email.mime.audio"
    assert module_name not in sys.modules
    stamp = 1_700_000_000.0
    unknown = await insert_callback(
        store,
        ConversationCallback(
            conversation_id=conversation_id,
            processor_type=f"{module_name}.MIMEAudio",
            processor_json="{}",
            created_at=stamp,
            updated_at=stamp,
        ),
    )
    known = await insert_webhook_callback(store, conversation_id)

    await queue_state_change(context, conversation_id, AgentState.ERROR)
    await run_next_job(context, STATE_CHANGED_JOB)

    assert module_name not in sys.modules
    stored = await reload_callback(store, unknown)
    assert stored.status is CallbackStatus.ERROR
    assert stored.status_reason is not None
    assert "not registered" in stored.status_reason
    assert "email.mime.audio.MIMEAudio" in stored.status_reason
    assert (await reload_callback(store, known)).status is CallbackStatus.ERROR
    [reply_job] = await jobs_of_kind(store, REPLY_JOB)
    assert reply_job["payload"]["callback_id"] == known.id


async def test_invalid_processor_json_is_closed_with_a_readable_reason(
    store: Store, context: ProcessorContext, conversation_id: str
) -> None:
    stamp = 1_700_000_000.0
    broken = await insert_callback(
        store,
        ConversationCallback(
            conversation_id=conversation_id,
            processor_type="webhook",
            processor_json='{"url": "ftp://nowhere", "secret": "s3cr3t-value-123"}',
            created_at=stamp,
            updated_at=stamp,
        ),
    )
    await queue_state_change(context, conversation_id, AgentState.FINISHED)
    await run_next_job(context, STATE_CHANGED_JOB)

    stored = await reload_callback(store, broken)
    assert stored.status is CallbackStatus.ERROR
    assert stored.status_reason is not None
    assert "webhook" in stored.status_reason
    assert "s3cr3t-value-123" not in stored.status_reason
    assert await jobs_of_kind(store, REPLY_JOB) == []


async def test_a_deletion_ends_the_turn_only_when_the_conversation_is_gone(
    store: Store,
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    conversation_id: str,
) -> None:
    # A start whose checkout did not finish deletes the conversation and starts it
    # again under the same id; the deletion's notice may come after that.
    callback = await insert_webhook_callback(store, conversation_id)
    notice = StateChangedPayload(observation=deletion_notice(conversation_id, None))
    await context.queue.enqueue(STATE_CHANGED_JOB, notice, key=conversation_id)
    await run_next_job(context, STATE_CHANGED_JOB)

    assert (await reload_callback(store, callback)).status is CallbackStatus.ACTIVE
    assert await jobs_of_kind(store, REPLY_JOB) == []

    # Deleted for good: the turn ends with a failure reply.
    agent_server.conversations.pop(uuid.UUID(conversation_id).hex)
    await context.queue.enqueue(STATE_CHANGED_JOB, notice, key=conversation_id)
    await run_next_job(context, STATE_CHANGED_JOB)

    [reply_job] = await jobs_of_kind(store, REPLY_JOB)
    assert reply_job["payload"]["status"] == "error"
    assert (await reload_callback(store, callback)).status is CallbackStatus.ERROR


async def test_reply_for_a_deleted_callback_fails_for_good(context: ProcessorContext) -> None:
    await context.queue.enqueue(
        REPLY_JOB,
        Reply(
            callback_id=999_999,
            conversation_id=uuid.uuid4().hex,
            status=ReplyStatus.COMPLETED,
            summary="text",
            delivery_id="d1",
        ),
    )
    job = await claim_job(context.queue, REPLY_JOB)
    with pytest.raises(PermanentJobError):
        await job_handlers(context)[REPLY_JOB.name](job)


# -- conversation.start -----------------------------------------------------------------------


async def queue_start(context: ProcessorContext, conversation_id: str) -> None:
    await context.queue.enqueue(
        START_JOB,
        StartPayload(
            conversation_id=conversation_id, prompt="Fix issue #2", tags={"source": "api"}
        ),
        key=conversation_id,
    )


async def test_start_job_starts_the_conversation_under_our_id(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation_id = uuid.uuid4().hex
    callback = await insert_webhook_callback(store, conversation_id)
    await queue_start(context, conversation_id)
    job = await claim_job(context.queue, START_JOB)

    await job_handlers(context)[START_JOB.name](job)
    await job_handlers(context)[START_JOB.name](job)  # a re-run lands on the same conversation

    starts = agent_server.calls_to("POST", "/api/conversations")
    assert len(starts) == 2
    body = starts[0].body
    assert body["conversation_id"] == str(uuid.UUID(conversation_id))
    assert body["initial_message"]["content"] == [{"type": "text", "text": "Fix issue #2"}]
    assert body["initial_message"]["role"] == "user"
    assert body["tags"] == {"source": "api"}
    assert body["agent_settings"]["llm"]["model"] == "openai/fake-model"
    # Without a repository, the conversation's own directory under the root.
    assert body["workspace"] == {"working_dir": f"workspace/{conversation_id}"}
    # The system prompt says that thread text is information, not orders.
    additions = body["agent_launch_additions"]
    assert additions == {"system_message_suffix_append": CONTEXT_IS_DATA}
    assert list(agent_server.conversations) == [conversation_id]
    assert (await reload_callback(store, callback)).status is CallbackStatus.ACTIVE


async def test_a_start_about_a_repository_works_in_a_directory_named_after_it(
    context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation_id = uuid.uuid4().hex
    await context.queue.enqueue(
        START_JOB,
        StartPayload(conversation_id=conversation_id, prompt="Fix it", repository="acme/api"),
        key=conversation_id,
    )

    await job_handlers(context)[START_JOB.name](await claim_job(context.queue, START_JOB))

    [start] = agent_server.calls_to("POST", "/api/conversations")
    assert start.body["workspace"] == {"working_dir": f"workspace/{conversation_id}/api"}


async def test_start_refused_by_the_agent_closes_the_callbacks_with_an_error_reply(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation_id = uuid.uuid4().hex
    callback = await insert_webhook_callback(store, conversation_id)
    agent_server.fail_next("POST", "/api/conversations", 422)
    await queue_start(context, conversation_id)
    job = await claim_job(context.queue, START_JOB)

    with pytest.raises(PermanentJobError):
        await job_handlers(context)[START_JOB.name](job)

    stored = await reload_callback(store, callback)
    assert stored.status is CallbackStatus.ERROR
    [reply_job] = await jobs_of_kind(store, REPLY_JOB)
    assert reply_job["payload"]["status"] == "error"
    assert reply_job["payload"]["summary"] == START_FAILED_TEXT
    assert_readable(reply_job["payload"]["summary"], conversation_id)


async def test_a_refused_start_unlinks_its_thread(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    # The next mention in the thread must start afresh, not continue a conversation
    # that does not exist.
    conversation_id = uuid.uuid4().hex
    await insert_webhook_callback(store, conversation_id)
    await store.execute(
        "INSERT INTO conversation_links (platform, thread_key, conversation_id, cursor,"
        " created_at, updated_at) VALUES ('slack', 'T1:C1:1.0', :id, NULL, 0, 0)",
        {"id": conversation_id},
    )
    agent_server.fail_next("POST", "/api/conversations", 422)
    await queue_start(context, conversation_id)
    job = await claim_job(context.queue, START_JOB)

    with pytest.raises(PermanentJobError):
        await job_handlers(context)[START_JOB.name](job)

    assert await find_link(store, "slack", "T1:C1:1.0") is None


async def test_start_during_an_agent_outage_is_retried(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation_id = uuid.uuid4().hex
    callback = await insert_webhook_callback(store, conversation_id)
    agent_server.fail_next("POST", "/api/conversations", 502)
    await queue_start(context, conversation_id)
    job = await claim_job(context.queue, START_JOB)

    with pytest.raises(RetryableJobError):
        await job_handlers(context)[START_JOB.name](job)
    assert (await reload_callback(store, callback)).status is CallbackStatus.ACTIVE
    assert await jobs_of_kind(store, REPLY_JOB) == []
