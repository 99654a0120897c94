"""Reconciliation against a fake agent-server, on real SQLite and PostgreSQL: which
conversations are asked about, what a stopped, a lost and a running one lead to, an
unreachable agent-server, the bounds of a run, and the periodic series.

Jobs are claimed through the real JobQueue and run by the handlers the relay uses.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from agent.events import STATE_CHANGED_JOB, AgentState, StateChangedPayload
from db.callbacks import CallbackStatus, ConversationCallback
from db.conversation_links import ConversationLink, find_link, save_link
from db.job_kinds import Job, JobStatus
from db.jobs import JobQueue
from db.marks import last_runs
from db.metrics import RECONCILED
from db.store import Store, now
from processors.base import REPLY_JOB
from processors.context import ProcessorContext
from processors.reconcile import (
    LOST_JOB,
    LOST_TEXT,
    RECONCILE_JOB,
    Reconciler,
)
from processors.runtime import job_handlers
from processors.summary import SUMMARY_INSTRUCTION
from tests.support.fake_agent_api import (
    FakeAgentServer,
    FakeWebhookReceiver,
    insert_webhook_callback,
    jobs_of_kind,
    observation_of,
    reload_callback,
)

AFTER = 300.0
INTERVAL = 60.0


def reconciler(context: ProcessorContext, **limits: Any) -> Reconciler:
    return Reconciler(context, interval=INTERVAL, after=AFTER, **limits)


async def quiet_callback(
    store: Store, conversation_id: str, *, age: float = 2 * AFTER
) -> ConversationCallback:
    """A webhook callback registered `age` seconds ago."""
    callback = await insert_webhook_callback(store, conversation_id)
    await store.execute(
        "UPDATE conversation_callbacks SET created_at = :at WHERE id = :id",
        {"at": now() - age, "id": callback.id},
    )
    return await reload_callback(store, callback)


async def heard_from(store: Store, conversation_id: str, *, ago: float) -> None:
    """The relay's row of what it heard: the conversation's last event `ago` seconds ago."""
    await store.execute(
        "INSERT INTO agent_conversations (conversation_id, execution_status, updated_at)"
        " VALUES (:id, 'running', :at)",
        {"id": conversation_id, "at": now() - ago},
    )


async def run_jobs(context: ProcessorContext, reconcile: Reconciler) -> list[str]:
    """Run every runnable job (but the next period's run), as a worker would; the kinds run."""
    handlers = {**job_handlers(context), **reconcile.job_handlers()}
    ran = []
    while (job := await context.queue.claim()) is not None:
        await handlers[job.kind](job)
        await context.queue.complete(job)
        ran.append(job.kind)
    return ran


def lookups(agent_server: FakeAgentServer) -> list[list[str]]:
    """The ids of each batch lookup, in order."""
    return [
        [value for name, value in call.query if name == "ids"]
        for call in agent_server.calls
        if call.method == "GET" and call.path == "/api/conversations"
    ]


def stopped_conversation(agent_server: FakeAgentServer, status: str = "finished") -> str:
    conversation = agent_server.add_conversation()
    agent_server.user_message(conversation, "Please fix issue #1")
    agent_server.agent_finish(conversation, "Fixed it.")
    agent_server.status_change(conversation, status)
    return conversation


# -- what is asked about ----------------------------------------------------------------


async def test_only_conversations_quiet_since_their_callback_and_last_event_are_asked(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    quiet = stopped_conversation(agent_server)
    new_callback = stopped_conversation(agent_server)
    recent_event = stopped_conversation(agent_server)
    closed = stopped_conversation(agent_server)
    await quiet_callback(store, quiet)
    await heard_from(store, quiet, ago=2 * AFTER)
    await quiet_callback(store, new_callback, age=10)
    await quiet_callback(store, recent_event)
    await heard_from(store, recent_event, ago=10)
    done = await quiet_callback(store, closed)
    await store.execute(
        "UPDATE conversation_callbacks SET status = 'COMPLETED' WHERE id = :id", {"id": done.id}
    )

    run = await reconciler(context).run(period=1)

    assert lookups(agent_server) == [[quiet]]
    assert (run.quiet, run.stopped) == (1, 1)


async def test_a_conversation_a_job_is_working_for_is_left_to_it(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation = agent_server.add_conversation()
    agent_server.forget(conversation)  # e.g. its start job is still being retried
    await quiet_callback(store, conversation)
    await context.queue.enqueue(STATE_CHANGED_JOB, _payload(conversation), key=conversation)

    run = await reconciler(context).run(period=1)

    assert lookups(agent_server) == []
    assert run.quiet == 0


# -- a stopped conversation -------------------------------------------------------------


async def test_a_stopped_conversation_is_answered_once_as_if_its_webhook_had_arrived(
    store: Store,
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    receiver: FakeWebhookReceiver,
) -> None:
    conversation = stopped_conversation(agent_server)
    callback = await quiet_callback(store, conversation)
    reconcile = reconciler(context)

    await reconcile.run(period=1)
    assert await run_jobs(context, reconcile) == [STATE_CHANGED_JOB.name]
    [sent] = agent_server.sent_messages(conversation)
    assert sent.body["content"][0]["text"] == SUMMARY_INSTRUCTION

    # At work on the summary: nothing to do.
    agent_server.status_change(conversation, "running")
    await reconcile.run(period=2)
    assert await run_jobs(context, reconcile) == []

    # Its answer's webhooks are lost too: the next look finds the new stop.
    agent_server.agent_message(conversation, "Done: branch fix-1.")
    agent_server.status_change(conversation, "finished")
    await reconcile.run(period=3)
    assert await run_jobs(context, reconcile) == [STATE_CHANGED_JOB.name, REPLY_JOB.name]

    [delivery] = receiver.received
    assert delivery.json()["summary"] == "Done: branch fix-1."
    assert (await reload_callback(store, callback)).status is CallbackStatus.COMPLETED
    assert len(agent_server.sent_messages(conversation)) == 1


async def test_a_late_webhook_racing_the_reconciliation_gives_no_second_answer(
    store: Store,
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    receiver: FakeWebhookReceiver,
) -> None:
    conversation = stopped_conversation(agent_server)
    agent_server.agent_message(conversation, "Shall I also update the docs?")
    finished = agent_server.status_change(conversation, "finished")
    await quiet_callback(store, conversation)
    reconcile = reconciler(context)

    await reconcile.run(period=1)
    # The lost webhook arrives after all, at the same moment: the intake's job.
    await context.queue.enqueue(
        STATE_CHANGED_JOB,
        _payload(conversation, AgentState.AWAITING_USER_INPUT, finished),
        key=conversation,
    )
    await run_jobs(context, reconcile)
    agent_server.agent_message(conversation, "Summary: docs are next.")
    answered = agent_server.status_change(conversation, "finished")
    await reconcile.run(period=2)  # finds the answer's stop, whose webhook comes next
    await context.queue.enqueue(
        STATE_CHANGED_JOB,
        _payload(conversation, AgentState.AWAITING_USER_INPUT, answered),
        key=conversation,
    )
    await run_jobs(context, reconcile)

    assert len(agent_server.sent_messages(conversation)) == 1
    assert [d.json()["summary"] for d in receiver.received] == ["Summary: docs are next."]


@pytest.mark.parametrize(
    ("status", "state"), [("error", "error"), ("stuck", "stuck"), ("deleting", "stopped")]
)
async def test_a_failed_conversation_gets_its_readable_failure(
    store: Store,
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    receiver: FakeWebhookReceiver,
    status: str,
    state: str,
) -> None:
    conversation = stopped_conversation(agent_server, status)
    callback = await quiet_callback(store, conversation)
    reconcile = reconciler(context)

    await reconcile.run(period=1)
    await run_jobs(context, reconcile)

    [delivery] = receiver.received
    assert delivery.json()["status"] == "error"
    stored = await reload_callback(store, callback)
    assert (stored.status, stored.status_reason) == (CallbackStatus.ERROR, f"agent state {state}")


async def test_the_same_stop_found_again_queues_nothing(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation = stopped_conversation(agent_server, "paused")
    callback = await quiet_callback(store, conversation)
    reconcile = reconciler(context)

    await reconcile.run(period=1)
    assert await run_jobs(context, reconcile) == [STATE_CHANGED_JOB.name]
    await reconcile.run(period=2)
    assert await run_jobs(context, reconcile) == []
    assert (await reload_callback(store, callback)).status is CallbackStatus.ACTIVE


async def test_a_running_conversation_is_left_alone(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation = agent_server.add_conversation(execution_status="running")
    callback = await quiet_callback(store, conversation)
    before = RECONCILED.labels(outcome="running")._value.get()
    reconcile = reconciler(context)

    await reconcile.handle(await _period_job(context, reconcile))

    assert RECONCILED.labels(outcome="running")._value.get() == before + 1
    assert [job.kind for job in await _queued(context)] == [RECONCILE_JOB.name]
    assert (await reload_callback(store, callback)).status is CallbackStatus.ACTIVE
    [recorded] = await last_runs(store)
    assert recorded["running"] == 1
    assert recorded["summary"] == "1 quiet conversations: 0 stopped, 0 lost, 1 running"


# -- a lost conversation ----------------------------------------------------------------


async def test_a_conversation_the_agent_server_lost_closes_with_a_readable_reply(
    store: Store,
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    receiver: FakeWebhookReceiver,
) -> None:
    conversation = agent_server.add_conversation()
    agent_server.forget(conversation)
    first = await quiet_callback(store, conversation)
    follow_up = await quiet_callback(store, conversation)
    link = ConversationLink("slack", "T1:C1:1.0", conversation, cursor=None)
    await save_link(store, link)
    reconcile = reconciler(context)

    run = await reconcile.run(period=1)
    assert run.lost == 1
    assert await run_jobs(context, reconcile) == [LOST_JOB.name, REPLY_JOB.name, REPLY_JOB.name]

    assert [d.json()["summary"] for d in receiver.received] == [LOST_TEXT, LOST_TEXT]
    for callback in (first, follow_up):
        assert (await reload_callback(store, callback)).status is CallbackStatus.ERROR
    # The next mention in the thread starts over.
    assert await find_link(store, "slack", "T1:C1:1.0") is None


async def test_a_conversation_found_again_when_the_job_runs_is_not_closed(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversation = agent_server.add_conversation()
    callback = await quiet_callback(store, conversation)
    agent_server.forget(conversation)
    reconcile = reconciler(context)
    await reconcile.run(period=1)
    agent_server.add_conversation(conversation)  # back, e.g. its disk mounted again

    await run_jobs(context, reconcile)

    assert (await reload_callback(store, callback)).status is CallbackStatus.ACTIVE
    assert await jobs_of_kind(store, REPLY_JOB) == []


# -- an unreachable agent-server, and bounds --------------------------------------------


async def test_an_unreachable_agent_server_changes_nothing_and_the_next_run_retries(
    store: Store,
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    receiver: FakeWebhookReceiver,
) -> None:
    conversation = stopped_conversation(agent_server)
    callback = await quiet_callback(store, conversation)
    agent_server.fail_next("GET", "/api/conversations", 503)
    reconcile = reconciler(context)

    failed = await reconcile.run(period=1)

    assert failed.error is not None and "503" in failed.error
    assert await run_jobs(context, reconcile) == []
    assert (await reload_callback(store, callback)).status is CallbackStatus.ACTIVE
    [recorded] = await last_runs(store)
    assert recorded["error"] == failed.error

    await reconcile.run(period=2)
    assert await run_jobs(context, reconcile) == [STATE_CHANGED_JOB.name]


async def test_lookups_take_at_most_99_ids(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversations = [agent_server.add_conversation() for _ in range(200)]
    for conversation in conversations:
        await quiet_callback(store, conversation)

    run = await reconciler(context).run(period=1)

    assert [len(ids) for ids in lookups(agent_server)] == [99, 99, 2]
    assert [i for ids in lookups(agent_server) for i in ids] == conversations
    assert run.running == 200


async def test_each_run_does_a_bounded_share_and_the_next_goes_on_from_there(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    conversations = [agent_server.add_conversation() for _ in range(5)]
    for conversation in conversations:
        await quiet_callback(store, conversation)
    reconcile = reconciler(context, scan_limit=3, per_run=2)

    for period in range(1, 5):
        await reconcile.run(period)

    windows = [(0, 2), (2, 4), (4, 5), (0, 2)]  # the end of the callbacks, and round again
    assert lookups(agent_server) == [conversations[a:b] for a, b in windows]


# -- the periodic series ----------------------------------------------------------------


async def test_one_run_per_period_however_many_processes_start(
    store: Store, context: ProcessorContext
) -> None:
    assert await reconciler(context).schedule() is not None
    assert await reconciler(context).schedule() is None

    [job] = await _queued(context)
    assert job.kind == RECONCILE_JOB.name
    assert job.payload == {"period": math.floor(now() / INTERVAL)}


async def test_a_run_queues_the_next_one_first(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    reconcile = reconciler(context)
    job = await _period_job(context, reconcile)
    agent_server.fail_next("GET", "/api/conversations", 503)

    await reconcile.handle(job)

    [following] = [j for j in await _queued(context) if j.kind == RECONCILE_JOB.name]
    assert following.payload == {"period": job.payload["period"] + 1}


# -- helpers ----------------------------------------------------------------------------


def _payload(
    conversation: str, state: AgentState = AgentState.FINISHED, event: Any = None
) -> StateChangedPayload:
    return StateChangedPayload(observation=observation_of(conversation, state, event))


async def _period_job(context: ProcessorContext, reconcile: Reconciler) -> Job:
    await reconcile.schedule()
    job = await context.queue.claim()
    assert job is not None and job.kind == RECONCILE_JOB.name
    return job


async def _queued(context: ProcessorContext) -> list[Job]:
    return await JobQueue(context.store).newest(status=JobStatus.QUEUED, limit=100)
