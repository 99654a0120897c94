"""processors/workspace_cleanup.py: idle conversations lose their working directory and
agent conversation, on real SQLite and PostgreSQL against the fake agent-server; the
removal command itself runs in a real shell."""

from __future__ import annotations

import logging
import subprocess
import uuid
from pathlib import Path

import pytest

from db.callbacks import CallbackStatus, get_callback, save_callback
from db.conversation_links import ConversationLink, find_link, save_link
from db.jobs import JobQueue
from db.retention import DAY_SECONDS, PRUNE_JOB, PrunePayload, Retention
from db.store import Store, now
from db.workspaces import Workspace, get_workspace, idle_before, insert_workspace
from processors.context import ProcessorContext
from processors.workspace_cleanup import CleanupResult, WorkspaceCleanup, removal_command
from relay.app import Relay
from relay.settings import Settings
from tests.support.fake_agent_api import FakeAgentServer, claim_job, insert_webhook_callback

RETENTION_DAYS = 7.0
LONG_AGO = now() - 30 * DAY_SECONDS
CUTOFF = now() - RETENTION_DAYS * DAY_SECONDS


def new_id() -> str:
    return uuid.uuid4().hex


def workspace_row(conversation_id: str, working_dir: str, **fields: object) -> Workspace:
    values: dict[str, object] = {
        "conversation_id": conversation_id,
        "host": "github",
        "repository": "acme/api",
        "locator": "71",
        "mode": "new_branch",
        "working_dir": working_dir,
        "base_branch": "main",
        "branch": f"openhands/12-{conversation_id[:8]}",
        "plan": "{}",
        "request": "{}",
        "capability_hash": "0" * 64,
        "token_ciphertext": "sealed-token",
        "token_expires_at": now() + 3600,
        **fields,
    }
    return Workspace(**values)  # type: ignore[arg-type]


async def idle_workspace(
    context: ProcessorContext,
    agent_server: FakeAgentServer,
    *,
    ended_at: float | None = LONG_AGO,
    created_at: float = LONG_AGO,
    status: str = "finished",
) -> str:
    """A conversation on the fake agent-server with a workspaces row whose last turn
    ended at `ended_at`, and a thread linked to it."""
    conversation_id = agent_server.add_conversation(new_id(), execution_status=status)
    working_dir = context.agent.working_dir(conversation_id, "acme/api")
    row = workspace_row(conversation_id, working_dir, last_turn_ended_at=ended_at)
    assert await insert_workspace(context.store, row)
    await context.store.execute(
        "UPDATE workspaces SET created_at = :at WHERE conversation_id = :id",
        {"at": created_at, "id": conversation_id},
    )
    thread = f"acme/api#{conversation_id[:6]}"
    await save_link(context.store, ConversationLink("github", thread, conversation_id, None))
    return conversation_id


async def removed(store: Store, conversation_id: str) -> bool:
    workspace = await get_workspace(store, conversation_id)
    assert workspace is not None
    return workspace.removed_at is not None


# -- the command, in a real shell ------------------------------------------------


def conversation_tree(root: Path, conversation_id: str, repository: str | None) -> Path:
    """`root/{id}/{repository}` with a checkout's kind of content."""
    working_dir = root / conversation_id / repository if repository else root / conversation_id
    objects = working_dir / ".git" / "objects" / "ab"
    objects.mkdir(parents=True)
    (objects / "cdef").write_bytes(b"blob")
    # Git writes its objects read-only.
    (objects / "cdef").chmod(0o444)
    (working_dir / "README.md").write_text("hello\n")
    return working_dir


def run_in(working_dir: Path, command: str) -> subprocess.CompletedProcess[str]:
    # As the agent-server runs it: a shell started in the working directory.
    return subprocess.run(
        command, shell=True, cwd=working_dir, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("repository", ["api", None])
def test_the_command_removes_the_conversations_directory_and_nothing_else(
    tmp_path: Path, repository: str | None
) -> None:
    # A relative root, as AGENT_WORKSPACE_ROOT=workspace gives: the command must not
    # depend on where the agent-server runs.
    conversation_id, neighbour = new_id(), new_id()
    root = tmp_path / "workspace"
    working_dir = conversation_tree(root, conversation_id, repository)
    conversation_tree(root, neighbour, "api")
    relative = f"workspace/{conversation_id}" + (f"/{repository}" if repository else "")
    command = removal_command(workspace_row(conversation_id, relative))
    assert command is not None

    result = run_in(working_dir, command)

    assert result.returncode == 0, result.stderr
    assert not (root / conversation_id).exists()
    assert (root / neighbour / "api" / "README.md").exists()
    assert root.exists()
    assert command.endswith(f"rm -rf -- {conversation_id}")


def test_the_command_removes_nothing_where_the_directory_is_not_the_conversations(
    tmp_path: Path,
) -> None:
    conversation_id = new_id()
    # The row says {root}/{id}/api, yet the shell runs two levels deeper.
    working_dir = conversation_tree(tmp_path / "root", conversation_id, "api/deeper/still")
    command = removal_command(workspace_row(conversation_id, f"/srv/root/{conversation_id}/api"))
    assert command is not None

    result = run_in(working_dir, command)

    assert result.returncode != 0
    assert (working_dir / "README.md").exists()


def test_a_working_directory_outside_a_directory_of_its_own_gets_no_command() -> None:
    assert removal_command(workspace_row(new_id(), "workspace/project")) is None


# -- the clean-up, against the fake agent-server ----------------------------------


async def test_an_idle_conversation_loses_its_directory_and_agent_conversation(
    context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    idle = await idle_workspace(context, agent_server)
    recent = await idle_workspace(context, agent_server, ended_at=now() - DAY_SECONDS)

    result = await WorkspaceCleanup(context.store, context.agent).run(CUTOFF)

    assert result == CleanupResult(removed=1, kept=0)
    [command] = agent_server.commands(idle)
    assert command == removal_command(workspace_row(idle, f"workspace/{idle}/api"))
    assert agent_server.calls_to("DELETE", f"/conversations/{idle}")
    assert idle not in agent_server.conversations
    workspace = await get_workspace(context.store, idle)
    assert workspace is not None and workspace.removed_at is not None
    assert (workspace.token_ciphertext, workspace.token_expires_at) == (None, None)
    # Branch and request are the host's, and stay; the row keeps what they were.
    assert workspace.branch == f"openhands/12-{idle[:8]}"
    # The thread's next mention starts a new conversation.
    assert await find_link(context.store, "github", f"acme/api#{idle[:6]}") is None

    assert agent_server.commands(recent) == []
    assert recent in agent_server.conversations
    assert not await removed(context.store, recent)
    assert await find_link(context.store, "github", f"acme/api#{recent[:6]}") is not None


async def test_a_second_run_changes_nothing(
    context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    await idle_workspace(context, agent_server)
    cleanup = WorkspaceCleanup(context.store, context.agent)
    await cleanup.run(CUTOFF)
    calls = len(agent_server.calls)

    assert await cleanup.run(CUTOFF) == CleanupResult(removed=0, kept=0)
    assert len(agent_server.calls) == calls


async def test_a_turn_under_way_keeps_its_workspace(
    context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    # A follow-up weeks later: its callback is ACTIVE until it answers.
    busy = await idle_workspace(context, agent_server)
    callback = await insert_webhook_callback(context.store, busy)
    # A turn someone started on the agent-server itself has no callback of ours.
    running = await idle_workspace(context, agent_server, status="running")

    result = await WorkspaceCleanup(context.store, context.agent).run(CUTOFF)

    assert result == CleanupResult(removed=0, kept=1)
    assert agent_server.commands(busy) == [] and agent_server.commands(running) == []
    assert not await removed(context.store, busy) and not await removed(context.store, running)

    # Once the turn has answered (and ended long enough ago), it goes.
    assert callback.id is not None
    closed = await get_callback(context.store, callback.id)
    assert closed is not None
    closed.status = CallbackStatus.COMPLETED
    await save_callback(context.store, closed)
    await WorkspaceCleanup(context.store, context.agent).run(CUTOFF)
    assert await removed(context.store, busy)


async def test_each_run_removes_a_batch_oldest_first(
    context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    ids = [
        await idle_workspace(context, agent_server, ended_at=LONG_AGO + offset)
        for offset in (3.0, 1.0, 2.0)
    ]
    cleanup = WorkspaceCleanup(context.store, context.agent, batch_size=2)

    assert await cleanup.run(CUTOFF) == CleanupResult(removed=2, kept=0)
    assert [await removed(context.store, i) for i in ids] == [False, True, True]
    assert await cleanup.run(CUTOFF) == CleanupResult(removed=1, kept=0)
    assert await removed(context.store, ids[0])


async def test_an_unreachable_agent_server_leaves_the_rows_for_the_next_run(
    context: ProcessorContext, agent_server: FakeAgentServer, caplog: pytest.LogCaptureFixture
) -> None:
    first = await idle_workspace(context, agent_server, ended_at=LONG_AGO)
    second = await idle_workspace(context, agent_server, ended_at=LONG_AGO + 1)
    agent_server.fail_next("POST", "/bash/execute_bash_command", 503)
    cleanup = WorkspaceCleanup(context.store, context.agent)

    with caplog.at_level(logging.WARNING, logger="processors.workspace_cleanup"):
        assert await cleanup.run(CUTOFF) == CleanupResult(removed=0, kept=2)

    assert "could not be reached" in caplog.text
    # It stopped at the first refusal: the second was not tried.
    assert agent_server.commands(second) == []
    assert first in agent_server.conversations
    assert not await removed(context.store, first)
    assert await cleanup.run(CUTOFF) == CleanupResult(removed=2, kept=0)


async def test_a_failed_removal_is_tried_again_and_holds_up_nobody(
    context: ProcessorContext, agent_server: FakeAgentServer, caplog: pytest.LogCaptureFixture
) -> None:
    stubborn = await idle_workspace(context, agent_server, ended_at=LONG_AGO)
    other = await idle_workspace(context, agent_server, ended_at=LONG_AGO + 1)
    agent_server.answer_commands(exit_code=1, stderr="rm: cannot remove 'x': Permission denied")
    cleanup = WorkspaceCleanup(context.store, context.agent)

    with caplog.at_level(logging.WARNING, logger="processors.workspace_cleanup"):
        assert await cleanup.run(CUTOFF) == CleanupResult(removed=1, kept=1)

    assert "exit code 1: rm: cannot remove 'x': Permission denied" in caplog.text
    assert stubborn in agent_server.conversations
    assert not await removed(context.store, stubborn)
    assert await removed(context.store, other)
    assert await cleanup.run(CUTOFF) == CleanupResult(removed=1, kept=0)


async def test_a_refused_conversation_is_skipped_and_tried_again(
    context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    refused = await idle_workspace(context, agent_server, ended_at=LONG_AGO)
    other = await idle_workspace(context, agent_server, ended_at=LONG_AGO + 1)
    agent_server.fail_next("POST", f"/{refused}/bash/execute_bash_command", 422)
    cleanup = WorkspaceCleanup(context.store, context.agent)

    assert await cleanup.run(CUTOFF) == CleanupResult(removed=1, kept=1)
    assert await removed(context.store, other) and not await removed(context.store, refused)
    assert await cleanup.run(CUTOFF) == CleanupResult(removed=1, kept=0)


async def test_a_directory_removed_by_an_interrupted_run_counts_as_removed(
    context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    # The last run removed the directory, then stopped before deleting the
    # conversation: the command cannot start where there is no directory.
    conversation_id = await idle_workspace(context, agent_server)
    working_dir = context.agent.working_dir(conversation_id, "acme/api")
    agent_server.answer_commands(
        exit_code=-1,
        stderr=f"Error executing command: [Errno 2] No such file or directory: '{working_dir}'",
    )

    assert await WorkspaceCleanup(context.store, context.agent).run(CUTOFF) == CleanupResult(1, 0)
    assert conversation_id not in agent_server.conversations
    assert await removed(context.store, conversation_id)


async def test_a_conversation_the_agent_server_forgot_is_marked_and_said(
    context: ProcessorContext, agent_server: FakeAgentServer, caplog: pytest.LogCaptureFixture
) -> None:
    conversation_id = await idle_workspace(context, agent_server)
    del agent_server.conversations[conversation_id]

    with caplog.at_level(logging.WARNING, logger="processors.workspace_cleanup"):
        result = await WorkspaceCleanup(context.store, context.agent).run(CUTOFF)

    assert result == CleanupResult(removed=1, kept=0)
    assert agent_server.commands(conversation_id) == []
    assert await removed(context.store, conversation_id)
    assert f"no longer knows conversation {conversation_id}" in caplog.text


async def test_a_checkout_whose_turn_never_ended_counts_from_its_creation(
    context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    # A checkout that failed: no turn ever ended.
    old = await idle_workspace(context, agent_server, ended_at=None)
    new = await idle_workspace(context, agent_server, ended_at=None, created_at=now())

    assert [w.conversation_id for w in await idle_before(context.store, CUTOFF, limit=10)] == [old]
    await WorkspaceCleanup(context.store, context.agent).run(CUTOFF)
    assert await removed(context.store, old) and not await removed(context.store, new)


async def test_the_prune_job_runs_the_clean_up_with_its_cutoff(
    context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    idle = await idle_workspace(context, agent_server)
    recent = await idle_workspace(context, agent_server, ended_at=now() - DAY_SECONDS)
    queue = JobQueue(context.store)
    retention = Retention(
        context.store,
        queue,
        retention_days=RETENTION_DAYS,
        also=[WorkspaceCleanup(context.store, context.agent)],
    )
    await queue.enqueue(PRUNE_JOB, PrunePayload(period=0))

    await retention.handle(await claim_job(queue, PRUNE_JOB))

    assert await removed(context.store, idle)
    assert not await removed(context.store, recent)


async def test_retention_days_zero_keeps_every_workspace(
    context: ProcessorContext, agent_server: FakeAgentServer
) -> None:
    idle = await idle_workspace(context, agent_server)
    queue = JobQueue(context.store)
    retention = Retention(
        context.store,
        queue,
        retention_days=0,
        also=[WorkspaceCleanup(context.store, context.agent)],
    )
    await queue.enqueue(PRUNE_JOB, PrunePayload(period=0))

    await retention.handle(await claim_job(queue, PRUNE_JOB))

    assert agent_server.commands(idle) == []
    assert not await removed(context.store, idle)


def test_the_relay_cleans_workspaces_in_its_retention_runs(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'r.db'}")  # type: ignore[call-arg]
    relay = Relay.build(settings)
    assert relay.retention is not None
    [step] = relay.retention.also
    assert isinstance(step, WorkspaceCleanup) and step.agent is relay.agent
