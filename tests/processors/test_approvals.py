"""Approvals through the real job handlers, a fake agent-server and a recording thread.

The turn's processor is a ReplyingProcessor that records what it was asked to post
and edit (the platforms' own hooks are tested with their fakes in tests/bots); the
rest is agent-relay's: the stop recorded once, the request posted once, the first
answer winning, the agent-server answered once even when a job runs again.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

import pytest

from agent.events import STATE_CHANGED_JOB, AgentState, StateChangedPayload
from db.approvals import (
    ANSWERING,
    APPROVED,
    EXPIRED,
    REJECTED,
    get_approval,
    pending_approval,
)
from db.callbacks import (
    CallbackStatus,
    ConversationCallback,
    insert_callback,
    register_processor_kind,
)
from db.job_kinds import Job
from db.store import Store
from processors.approvals import answer_approval, give_answer, turn_processor
from processors.base import REPLY_JOB, Reply, ReplyingProcessor
from processors.confirmation import (
    APPROVAL_ANSWER_JOB,
    APPROVAL_POST_JOB,
    TIMEOUT_REASON,
    ApprovalAnswerPayload,
    ApprovalRequest,
    held_actions,
)
from processors.context import ProcessorContext
from processors.runtime import job_handlers
from tests.support.fake_agent_api import (
    FakeAgentServer,
    claim_job,
    jobs_of_kind,
    observation_of,
    reload_callback,
)


class ThreadProcessor(ReplyingProcessor):
    """A turn whose thread is a list: what was posted and each edit, by message id."""

    processor_kind: ClassVar[str] = "test-thread"
    asker: str = "U1"
    posted: ClassVar[dict[str, list[ApprovalRequest]]] = {}
    edits: ClassVar[dict[str, list[ApprovalRequest]]] = {}

    async def post_approval(self, request: ApprovalRequest, context: ProcessorContext) -> str:
        message_id = f"m{request.id}"
        self.posted.setdefault(message_id, []).append(request)
        return message_id

    async def edit_approval(
        self, request: ApprovalRequest, message_id: str, context: ProcessorContext
    ) -> None:
        self.edits.setdefault(message_id, []).append(request)

    async def deliver(self, reply: Reply, context: ProcessorContext) -> None:
        raise AssertionError("an approval turn answers nothing by itself")


@pytest.fixture(autouse=True)
def thread_kind() -> None:
    register_processor_kind(ThreadProcessor.processor_kind, ThreadProcessor)
    ThreadProcessor.posted.clear()
    ThreadProcessor.edits.clear()


async def run(context: ProcessorContext, job: Job) -> None:
    await job_handlers(context)[job.kind](job)
    await context.queue.complete(job)


async def waiting_turn(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer, command: str = "make"
) -> tuple[ConversationCallback, str]:
    """A turn whose agent holds `command`, and the stop's state_changed job run."""
    conversation_id = agent_server.add_conversation()
    callback = await insert_callback(
        store, ConversationCallback.for_processor(conversation_id, ThreadProcessor())
    )
    agent_server.user_message(conversation_id, "clean the cache")
    agent_server.agent_action(conversation_id, command)
    stop = agent_server.status_change(conversation_id, "waiting_for_confirmation")
    await stop_seen(context, conversation_id, stop)
    return callback, conversation_id


async def stop_seen(context: ProcessorContext, conversation_id: str, event: dict) -> None:
    observation = observation_of(conversation_id, AgentState.AWAITING_USER_CONFIRMATION, event)
    await context.queue.enqueue(
        STATE_CHANGED_JOB, StateChangedPayload(observation=observation), key=conversation_id
    )
    await run(context, await claim_job(context.queue, STATE_CHANGED_JOB))


def confirmations(agent_server: FakeAgentServer) -> list[dict]:
    return [c.body for c in agent_server.calls_to("POST", "/events/respond_to_confirmation")]


def runs(agent_server: FakeAgentServer) -> int:
    return len(agent_server.calls_to("POST", "/run"))


async def answer(
    context: ProcessorContext,
    approval_id: int,
    *,
    accept: bool,
    who: str = "@ada",
    reason: str | None = None,
    delivery_id: str | None = None,
) -> None:
    """Queue an answer as a platform does, and run its job."""
    queued = await answer_approval(
        context.queue,
        approval_id=approval_id,
        accept=accept,
        reason=reason,
        who=who,
        delivery_id=delivery_id or f"test:{uuid.uuid4().hex}",
    )
    if queued:
        await run(context, await claim_job(context.queue, APPROVAL_ANSWER_JOB))


# -- what is held --------------------------------------------------------------------------


def test_held_actions_are_the_newest_calls_without_an_observation_oldest_first() -> None:
    token = "ghp_" + "a" * 36
    events = [  # newest first, as the relay asks for them
        {"kind": "ConversationStateUpdateEvent", "source": "environment", "id": "s"},
        {
            "kind": "ActionEvent",
            "source": "agent",
            "id": "a3",
            "tool_name": "file_editor",
            "action": {"command": "create", "path": "/w/x.py", "kind": "FileEditorAction"},
            "summary": 'file_editor: {"command": "create"}',
        },
        {
            "kind": "ActionEvent",
            "source": "agent",
            "id": "a2",
            "tool_name": "terminal",
            "action": {"command": f"curl -H 'token {token}' x\nrm -rf /", "kind": "TerminalAction"},
            "thought": [{"type": "text", "text": "Fetch it.\nThen clean."}],
        },
        {"kind": "ObservationEvent", "source": "environment", "id": "o1", "action_id": "a1"},
        {"kind": "ActionEvent", "source": "agent", "id": "a1", "tool_name": "terminal"},
    ]

    held = held_actions(events)

    assert [a.action_id for a in held] == ["a2", "a3"]
    fetch, create = held
    assert token not in fetch.detail and "***" in fetch.detail
    assert fetch.detail.endswith("rm -rf /")  # the whole command, not its first line
    assert fetch.reason == "Fetch it."
    assert (create.tool, create.detail, create.reason) == ("file_editor", "create /w/x.py", "")


def test_nothing_is_held_after_a_user_message() -> None:
    events = [
        {"kind": "MessageEvent", "source": "user", "id": "u"},
        {"kind": "ActionEvent", "source": "agent", "id": "a0", "tool_name": "terminal"},
    ]
    assert held_actions(events) == []


# -- recording and posting -----------------------------------------------------------------


async def test_a_wait_is_recorded_once_keeps_the_turn_and_posts_one_request(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    callback, conversation_id = await waiting_turn(store, context, agent_server, "make clean")

    approval = await pending_approval(store, conversation_id)
    assert approval is not None and approval.callback_id == callback.id
    # Not the end of the turn: no summary instruction, no reply, the callback ACTIVE.
    assert agent_server.sent_messages(conversation_id) == []
    assert (await reload_callback(store, callback)).status is CallbackStatus.ACTIVE
    [timeout] = await jobs_of_kind(store, APPROVAL_ANSWER_JOB)
    assert timeout["payload"]["reason"] == TIMEOUT_REASON
    row = await store.fetch_one("SELECT run_after FROM jobs WHERE id = :id", {"id": timeout["id"]})
    assert row is not None and row["run_after"] > approval.created_at + 86_000

    post = await claim_job(context.queue, APPROVAL_POST_JOB)
    await run(context, post)
    await job_handlers(context)[post.kind](post)  # delivered twice: posted once
    # The same stop again (a reconciliation, a redelivered webhook) records nothing more.
    again = agent_server.status_change(conversation_id, "waiting_for_confirmation")
    await stop_seen(context, conversation_id, again)
    assert len(await jobs_of_kind(store, APPROVAL_POST_JOB)) == 1

    [request] = ThreadProcessor.posted[f"m{approval.id}"]
    assert [a.detail for a in request.actions] == ["make clean"]
    stored = await get_approval(store, approval.id)
    assert stored is not None and stored.message_id == f"m{approval.id}"
    asker = await turn_processor(store, stored)
    assert isinstance(asker, ThreadProcessor) and asker.asker == "U1"


# -- answers -------------------------------------------------------------------------------


async def posted_request(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> tuple[int, str]:
    _, conversation_id = await waiting_turn(store, context, agent_server)
    await run(context, await claim_job(context.queue, APPROVAL_POST_JOB))
    approval = await pending_approval(store, conversation_id)
    assert approval is not None
    return approval.id, conversation_id


async def test_the_first_approval_wins_and_reaches_the_agent_once(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    approval_id, conversation_id = await posted_request(store, context, agent_server)

    await answer(context, approval_id, accept=True, who="@ada", delivery_id="github:d1")
    await answer(context, approval_id, accept=False, who="@bob", reason="no")
    # The same delivery again queues nothing.
    assert not await answer_approval(
        context.queue,
        approval_id=approval_id,
        accept=True,
        reason=None,
        who="@ada",
        delivery_id="github:d1",
    )

    assert confirmations(agent_server) == [{"accept": True}]
    assert runs(agent_server) == 0
    approval = await get_approval(store, approval_id)
    assert approval is not None
    assert (approval.state, approval.answered_by) == (APPROVED, "@ada")
    [edit] = ThreadProcessor.edits[f"m{approval_id}"]
    assert (edit.accept, edit.answered_by) == (True, "@ada")
    assert await pending_approval(store, conversation_id) is None


async def test_a_rejection_sends_its_reason_and_lets_the_agent_go_on(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    approval_id, conversation_id = await posted_request(store, context, agent_server)

    await answer(context, approval_id, accept=False, who="@bob", reason="  not on a Friday ")

    assert confirmations(agent_server) == [{"accept": False, "reason": "@bob: not on a Friday"}]
    assert runs(agent_server) == 1
    assert agent_server.conversations[conversation_id]["execution_status"] == "running"
    approval = await get_approval(store, approval_id)
    assert approval is not None and (approval.state, approval.reason) == (
        REJECTED,
        "not on a Friday",
    )
    [edit] = ThreadProcessor.edits[f"m{approval_id}"]
    assert (edit.accept, edit.reason) == (False, "not on a Friday")


async def test_an_answer_claimed_before_a_crash_is_sent_once(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    approval_id, _ = await posted_request(store, context, agent_server)
    # The answer's first attempt fails at the agent-server, after its claim.
    agent_server.fail_next("POST", "/events/respond_to_confirmation", 503)
    with pytest.raises(Exception, match="503"):
        await answer(context, approval_id, accept=True, delivery_id="github:d2")
    approval = await get_approval(store, approval_id)
    assert approval is not None and approval.state == ANSWERING

    # Another answer meanwhile does nothing: the claimed one wins.
    await give_answer(
        context,
        ApprovalAnswerPayload(
            approval_id=approval_id, accept=False, reason="no", who="@bob", delivery_id="x:2"
        ),
    )
    # The retry sends it (the agent still holds the action).
    await _rerun(context, "approval-answer:github:d2")

    assert len(agent_server.calls_to("POST", "/events/respond_to_confirmation")) == 2
    assert confirmations(agent_server)[-1] == {"accept": True}

    # Once more, after the agent has it: the action has its observation, nothing is sent.
    await _rerun(context, "approval-answer:github:d2")
    assert len(confirmations(agent_server)) == 2
    approval = await get_approval(store, approval_id)
    assert approval is not None and approval.state == APPROVED


async def test_a_rejection_that_reached_the_agent_before_a_crash_only_runs_it(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    approval_id, conversation_id = await posted_request(store, context, agent_server)
    agent_server.fail_next("POST", "/run", 503)
    with pytest.raises(Exception, match="503"):
        await answer(context, approval_id, accept=False, reason="later", delivery_id="gitlab:d3")
    assert agent_server.conversations[conversation_id]["execution_status"] == "idle"

    await _rerun(context, "approval-answer:gitlab:d3")

    assert len(confirmations(agent_server)) == 1
    assert agent_server.conversations[conversation_id]["execution_status"] == "running"
    approval = await get_approval(store, approval_id)
    assert approval is not None and approval.state == REJECTED


async def test_a_request_nobody_answers_is_rejected_when_its_time_is_up(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    approval_id, _ = await posted_request(store, context, agent_server)
    await store.execute(
        "UPDATE jobs SET run_after = 0 WHERE idempotency_key = :key",
        {"key": f"approval-timeout:{approval_id}"},
    )

    await run(context, await claim_job(context.queue, APPROVAL_ANSWER_JOB))

    assert confirmations(agent_server) == [
        {"accept": False, "reason": f"agent-relay: {TIMEOUT_REASON}"}
    ]
    approval = await get_approval(store, approval_id)
    assert approval is not None and (approval.state, approval.answered_by) == (REJECTED, None)
    [edit] = ThreadProcessor.edits[f"m{approval_id}"]
    assert (edit.accept, edit.reason) == (False, TIMEOUT_REASON)


async def test_an_answer_the_agent_no_longer_waits_for_sends_nothing(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    approval_id, conversation_id = await posted_request(store, context, agent_server)
    agent_server.status_change(conversation_id, "paused")  # stopped meanwhile

    await answer(context, approval_id, accept=True)

    assert confirmations(agent_server) == []
    assert runs(agent_server) == 0
    assert (await get_approval(store, approval_id)) is not None


async def test_no_answer_job_for_a_request_that_does_not_exist(
    store: Store, context: ProcessorContext
) -> None:
    assert not await answer_approval(
        context.queue, approval_id=404, accept=True, reason=None, who="@x", delivery_id="x:1"
    )
    assert await pending_approval(store, "0" * 32) is None
    assert (await store.fetch_one("SELECT COUNT(*) AS n FROM jobs")) == {"n": 0}


async def _rerun(context: ProcessorContext, idempotency_key: str) -> None:
    """Run a job again as the queue does after a failed attempt (its payload unchanged)."""
    await context.store.execute(
        "UPDATE jobs SET status = 'queued', run_after = 0, lease_token = NULL"
        " WHERE idempotency_key = :key",
        {"key": idempotency_key},
    )
    job = await claim_job(context.queue, APPROVAL_ANSWER_JOB)
    assert job.idempotency_key == idempotency_key
    await run(context, job)


async def test_a_turn_that_ends_unanswered_expires_its_request(
    store: Store, context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    approval_id, conversation_id = await posted_request(store, context, agent_server)
    # The turn ends another way (here the agent fails) before anyone answers.
    failed = agent_server.status_change(conversation_id, "error")
    observation = observation_of(conversation_id, AgentState.ERROR, failed)
    await context.queue.enqueue(
        STATE_CHANGED_JOB, StateChangedPayload(observation=observation), key=conversation_id
    )
    await run(context, await claim_job(context.queue, STATE_CHANGED_JOB))

    approval = await get_approval(store, approval_id)
    assert approval is not None and approval.state == EXPIRED
    # The failure's reply is queued first (not delivered here: the thread is a list).
    await context.queue.complete(await claim_job(context.queue, REPLY_JOB))
    await run(context, await claim_job(context.queue, APPROVAL_POST_JOB))
    [edit] = ThreadProcessor.edits[f"m{approval_id}"]
    assert edit.state == EXPIRED and not edit.waiting
    assert len(ThreadProcessor.posted[f"m{approval_id}"]) == 1

    await answer(context, approval_id, accept=True)
    assert confirmations(agent_server) == []
