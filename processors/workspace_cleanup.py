"""Workspace clean-up: a conversation nobody has used for RETENTION_DAYS loses its
working directory and its agent conversation.

It runs as a step of the periodic maintenance job (db.retention.Retention, after its
prune, with the same cutoff; the composition root hands it over), so it needs no
schedule of its own and runs once per period across all processes. What goes:

- the conversation's directory on the agent-server's disk, `{AGENT_WORKSPACE_ROOT}/
  {conversation id}`, checkout included, removed by a command the agent-server runs
  (the relay never sees that disk);
- the agent conversation (`DELETE /api/conversations/{id}`, which leaves the working
  directory on disk in openhands-agent-server 1.58.2: hence the command first);
- the link from its threads: the conversation is gone, so the next mention there
  starts a new one instead of messaging one that no longer exists.

What stays: the branches and pull or merge requests on the host, the callbacks, and
the workspaces row, marked `removed_at` (its stored token, if any, dropped).

Each run removes at most `batch_size` workspaces. A workspace the agent-server cannot
remove now (unreachable, an error) keeps its row unmarked and is tried again at the
next run. Every step may be repeated after a crash: the command removes nothing the
second time, deleting an unknown conversation is no error, and the row is marked
last.

Only conversations with a workspaces row (those about a repository) are cleaned: a
conversation without a repository also gets a directory, `{root}/{conversation id}`,
but no row, and nothing records when its last turn ended; its directory and
conversation stay until removed by hand.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from agent.client import AgentClient
from db.callbacks import active_callbacks
from db.conversation_links import forget_links
from db.job_kinds import PermanentJobError, RetryableJobError
from db.store import Store, now
from db.workspaces import Workspace, idle_before, update_workspace

log = logging.getLogger(__name__)

# Workspaces one run removes at most: each costs three calls to the agent-server and
# the removal of a checkout.
CLEANUP_BATCH_SIZE = 50
# How long the removal command may take on the agent-server.
REMOVE_SECONDS = 120
# openhands-agent-server 1.58.2 starts each command in the conversation's working
# directory; when that directory is gone (an earlier run removed it and stopped before
# deleting the conversation) the command cannot start, and the answer is exit code -1
# with this in stderr ("Error executing command: [Errno 2] No such file or directory").
_NO_WORKING_DIR = "No such file or directory"
# An execution status in which the agent works right now: a turn someone started on
# the agent-server itself (no callback of ours), whose directory is in use.
_RUNNING = "running"


def removal_command(workspace: Workspace) -> str | None:
    """The shell command that removes the conversation's directory when run in its
    working directory (where the agent-server runs it); None when the working directory
    does not lie in a directory named after the conversation.

    AGENT_WORKSPACE_ROOT may be relative to the agent-server's own working directory,
    which the relay does not know, so the command finds the conversation's directory
    by climbing from where it runs, not by its path: up to the directory named after
    the conversation, checked by name before anything is removed, then from its
    parent, `rm -rf` of that one name. It holds nothing but the conversation id (32
    hex digits, checked here), never a secret.
    """
    conversation = uuid.UUID(workspace.conversation_id).hex
    segments = [segment for segment in workspace.working_dir.split("/") if segment]
    if conversation not in segments:
        return None
    # How far below the conversation's directory the working directory is.
    depth = segments[::-1].index(conversation)
    steps = ["cd .."] * depth
    # ${PWD##*/}: the last segment of the directory the shell is in.
    steps += [f'[ "${{PWD##*/}}" = {conversation} ]', "cd ..", f"rm -rf -- {conversation}"]
    return " && ".join(steps)


@dataclass(frozen=True)
class CleanupResult:
    # Workspaces whose directory and conversation are gone (rows marked).
    removed: int
    # Idle workspaces of this batch kept for a later run (in use, or not removable now).
    kept: int


class WorkspaceCleanup:
    """Removes idle conversations' directories and agent conversations (see above)."""

    def __init__(
        self, store: Store, agent: AgentClient, *, batch_size: int = CLEANUP_BATCH_SIZE
    ) -> None:
        self.store = store
        self.agent = agent
        self.batch_size = batch_size

    async def __call__(self, cutoff: float) -> CleanupResult:
        return await self.run(cutoff)

    async def run(self, cutoff: float) -> CleanupResult:
        """Remove the workspaces idle since before `cutoff` (epoch seconds), a batch."""
        workspaces = await idle_before(self.store, cutoff, limit=self.batch_size)
        removed = 0
        for done, workspace in enumerate(workspaces):
            try:
                if await self._remove(workspace):
                    removed += 1
            except RetryableJobError as exc:
                # The agent-server is down or overloaded: the rest waits for the next run.
                log.warning(
                    "workspaces: stopped after %d of %d idle workspaces, the agent-server"
                    " could not be reached (%s); the rest are removed at a later run",
                    done,
                    len(workspaces),
                    exc,
                )
                break
            except PermanentJobError as exc:
                log.warning(
                    "workspaces: the agent-server refused to remove conversation %s (%s);"
                    " tried again at the next run",
                    workspace.conversation_id,
                    exc,
                )
        if workspaces:
            log.info(
                "workspaces: removed %d of %d idle conversations' directories and agent"
                " conversations",
                removed,
                len(workspaces),
            )
        return CleanupResult(removed=removed, kept=len(workspaces) - removed)

    async def _remove(self, workspace: Workspace) -> bool:
        conversation_id = workspace.conversation_id
        # A follow-up may have started since the batch was chosen.
        if await active_callbacks(self.store, conversation_id):
            return False
        info = await self.agent.get_conversation(conversation_id)
        if info is None:
            # Every command runs in a conversation's directory: without the
            # conversation (the agent-server's state was wiped, or it was deleted by
            # hand) the relay cannot reach the directory any more.
            log.warning(
                "workspaces: the agent-server no longer knows conversation %s; its"
                " directory %s, if still there, must be removed on the agent-server's disk",
                conversation_id,
                workspace.working_dir,
            )
        elif info.get("execution_status") == _RUNNING:
            log.info("workspaces: conversation %s is running on the agent-server", conversation_id)
            return False
        elif await self._remove_directory(workspace):
            await self.agent.delete_conversation(conversation_id)
        else:
            return False
        async with self.store.transaction():
            await update_workspace(
                self.store,
                conversation_id,
                removed_at=now(),
                token_ciphertext=None,
                token_expires_at=None,
            )
            await forget_links(self.store, conversation_id)
        log.info("workspaces: removed the directory and agent conversation %s", conversation_id)
        return True

    async def _remove_directory(self, workspace: Workspace) -> bool:
        command = removal_command(workspace)
        if command is None:
            log.warning(
                "workspaces: conversation %s works in %s, outside a directory of its own;"
                " nothing removed",
                workspace.conversation_id,
                workspace.working_dir,
            )
            return False
        result = await self.agent.run_command(
            workspace.conversation_id, command, seconds=REMOVE_SECONDS
        )
        if result.exit_code == 0:
            return True
        if result.exit_code == -1 and _NO_WORKING_DIR in result.stderr:
            return True
        log.warning(
            "workspaces: removing the directory of conversation %s failed (exit code %d: %s);"
            " tried again at the next run",
            workspace.conversation_id,
            result.exit_code,
            " ".join((result.stderr or result.stdout).split())[:300],
        )
        return False
