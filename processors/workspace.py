"""A conversation's checkout, prepared by the relay before the agent's first step.

The start job (processors.runtime) runs `start_in_workspace`: it finds the platform
that hosts the repository, records the workspace (with the hash of a fresh
capability), starts the agent conversation WITHOUT its first message, so that it
runs nothing yet (openhands-agent-server 1.58.2), writes the credential helper and
hooks into the checkout, runs the checkout script through the agent-server's terminal
API, and only then sends the prompt. Every step may run again after a crash: a
conversation whose checkout did not finish is deleted and started afresh with a new
capability (nobody holds the old one any more: it was never stored), the script
stops at once once a run completed, and the prompt is sent once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from agent.checkout import (
    RELAY_DIR,
    CheckoutMode,
    RepositoryPlan,
    WorkspaceRequest,
    checkout_script,
    co_author_hook,
    credential_helper,
    push_guard_hook,
    workspace_instructions,
)
from agent.client import LookupSecret
from agent.events import StartPayload
from db.job_kinds import PermanentJobError, RetryableJobError
from db.store import now
from db.workspaces import Workspace, get_workspace, insert_workspace, update_workspace
from processors.context import ProcessorContext
from processors.credentials import new_capability
from processors.hosts import CheckoutRefused, RepositoryHost, WorkspacePolicy
from processors.summary import send_user_message_once

log = logging.getLogger(__name__)

# The order in which platforms are asked whether they can serve a repository named
# without one (a Slack mention, the API): a GitHub App installation first.
HOST_ORDER = ("github", "gitlab")
# The checkout script's time limit on the agent-server's terminal.
CHECKOUT_SECONDS = 600
# git's messages that no retry will change.
_PERMANENT_GIT_FAILURE = re.compile(
    r"not found|authentication failed|could not read username|403|401|"
    r"couldn't find remote ref|access denied|permission",
    re.IGNORECASE,
)


async def locate(
    hosts: Mapping[str, RepositoryHost], request: WorkspaceRequest
) -> WorkspaceRequest | None:
    """`request` with the platform that serves its repository (and its handle there),
    or None when no configured platform can."""
    names = [request.host] if request.host else [n for n in HOST_ORDER if n in hosts]
    for name in names:
        host = hosts.get(name) if name else None
        if host is None:
            continue
        locator = request.locator or await host.locate(request.repository)
        if locator is not None:
            return request.model_copy(update={"host": name, "locator": locator})
    return None


@dataclass(frozen=True)
class HostedRepository:
    """A repository as people pick it: its platform and its name there."""

    host: str
    name: str


async def reachable_repositories(hosts: Mapping[str, RepositoryHost]) -> list[HostedRepository]:
    """Every repository the configured platforms can serve, in HOST_ORDER. A platform
    that cannot list its own now (down, refusing) is left out, not the others."""
    found: list[HostedRepository] = []
    for name in [n for n in HOST_ORDER if n in hosts]:
        try:
            names = await hosts[name].list_repositories()
        except (RetryableJobError, PermanentJobError) as exc:
            log.warning("%s lists no repositories now: %s", name, exc)
            continue
        found += [HostedRepository(name, repository) for repository in names]
    return found


def work_branch(policy: WorkspacePolicy, request: WorkspaceRequest, conversation_id: str) -> str:
    """`{BRANCH_PREFIX}{issue number, or where it was asked}-{8 hex of the conversation}`."""
    origin = request.requester.platform if request.requester else "api"
    number = request.issue_number if request.issue_number is not None else origin
    return f"{policy.branch_prefix}{number}-{conversation_id[:8]}"


def _mode(plan: RepositoryPlan, policy: WorkspacePolicy) -> CheckoutMode:
    if plan.change_request is not None and plan.from_fork:
        return CheckoutMode.FORK_HEAD
    if not policy.pushes:
        return CheckoutMode.READ_ONLY
    if plan.change_request is not None:
        return CheckoutMode.HEAD_BRANCH
    return CheckoutMode.NEW_BRANCH


async def _new_workspace(
    context: ProcessorContext, start: StartPayload, located: WorkspaceRequest
) -> tuple[Workspace, str]:
    """Plan the checkout of a `located` request and record it; the workspace and its
    capability."""
    assert located.host is not None and located.locator is not None
    host = context.hosts[located.host]
    plan = await host.plan(located, located.locator)
    mode = _mode(plan, context.workspace_policy)
    branch = {
        CheckoutMode.NEW_BRANCH: work_branch(
            context.workspace_policy, located, start.conversation_id
        ),
        CheckoutMode.HEAD_BRANCH: plan.head_branch,
    }.get(mode)
    capability, digest = new_capability()
    workspace = Workspace(
        conversation_id=start.conversation_id,
        host=host.name,
        repository=located.repository,
        locator=located.locator,
        mode=mode.value,
        working_dir=context.agent.working_dir(start.conversation_id, located.repository),
        base_branch=plan.default_branch,
        branch=branch,
        plan=plan.model_dump_json(),
        request=located.model_dump_json(),
        capability_hash=digest,
        change_request=plan.change_request.model_dump_json() if plan.change_request else None,
    )
    await insert_workspace(context.store, workspace)
    return workspace, capability


async def start_in_workspace(context: ProcessorContext, start: StartPayload) -> None:
    """Start `start`'s conversation in its checkout (see the module's docstring)."""
    assert start.workspace is not None
    conversation_id = start.conversation_id
    workspace = await get_workspace(context.store, conversation_id)
    if workspace is None or workspace.checked_out_at is None:
        if workspace is not None:
            # An attempt died before the checkout finished: the agent has run
            # nothing, and the capability it was given is known to nobody now.
            await context.agent.delete_conversation(conversation_id)
            capability, digest = new_capability()
            await update_workspace(context.store, conversation_id, capability_hash=digest)
            workspace.capability_hash = digest
        else:
            located = await locate(context.hosts, start.workspace)
            if located is None:
                # No platform can serve it (said in the "on it" where there is one).
                log.info("no platform serves %s: no checkout", start.workspace.repository)
                await context.agent.start_conversation(
                    start.prompt,
                    conversation_id=conversation_id,
                    tags=start.tags,
                    repository=start.workspace.repository,
                )
                return
            workspace, capability = await _new_workspace(context, start, located)
        await _check_out(context, start, workspace, capability)
        # The conversation was (re)started by this attempt and holds no message yet:
        # no need to look for one sent before.
        await context.agent.send_message(conversation_id, start.prompt)
        return
    await send_user_message_once(
        context,
        conversation_id,
        start.prompt,
        pending=True,  # a new conversation: any user message in it is this one
        sent_after=None,
        mark=_unused_mark,
    )


async def _unused_mark(sent_after: str | None) -> None:
    raise AssertionError("a first message is never marked")


def _secret(
    context: ProcessorContext, workspace: Workspace, host: RepositoryHost, cap: str
) -> LookupSecret:
    relay_url = context.workspace_policy.relay_url
    if relay_url is None:
        raise CheckoutRefused(
            "agent-relay has no address the agent-server can reach it at"
            " (set AGENT_RELAY_URL or PUBLIC_URL), so it cannot hand out credentials."
        )
    return LookupSecret(
        url=f"{relay_url}/agent/credentials/{workspace.conversation_id}/{host.token_name}",
        headers={"Authorization": f"Bearer {cap}"},
    )


async def _check_out(
    context: ProcessorContext, start: StartPayload, workspace: Workspace, capability: str
) -> None:
    host = context.hosts.get(workspace.host)
    if host is None:
        raise CheckoutRefused(f"{workspace.host} is not configured in this process.")
    plan = RepositoryPlan.model_validate_json(workspace.plan)
    request = WorkspaceRequest.model_validate_json(workspace.request)
    mode = CheckoutMode(workspace.mode)
    secret = _secret(context, workspace, host, capability)
    await context.agent.start_conversation(
        None,
        conversation_id=workspace.conversation_id,
        tags=start.tags,
        repository=workspace.repository,
        secrets={host.token_name: secret},
        instructions=workspace_instructions(
            directory=workspace.working_dir,
            repository=workspace.repository,
            mode=mode,
            branch=workspace.branch,
            base_branch=workspace.base_branch,
        ),
    )
    directory = await _absolute_directory(context, workspace)
    relay = f"{directory}/{RELAY_DIR}"
    files = {
        f"{relay}/credential-helper": credential_helper(secret.url, capability, host.git_username),
        f"{relay}/hooks/commit-msg": co_author_hook(request.requester),
        f"{relay}/hooks/pre-push": push_guard_hook(
            workspace.branch
            if mode in (CheckoutMode.NEW_BRANCH, CheckoutMode.HEAD_BRANCH)
            else None
        ),
    }
    for path, content in files.items():
        await context.agent.upload_file(workspace.conversation_id, path, content.encode())
    script = checkout_script(
        directory=directory,
        clone_url=plan.clone_url,
        mode=mode,
        base_branch=workspace.base_branch,
        branch=workspace.branch,
        fetch_ref=plan.head_ref,
        bot_name=plan.bot_name,
        bot_email=plan.bot_email,
    )
    await context.agent.upload_file(
        workspace.conversation_id, f"{relay}/checkout.sh", script.encode()
    )
    result = await context.agent.run_command(
        workspace.conversation_id, f"sh {relay}/checkout.sh", seconds=CHECKOUT_SECONDS
    )
    if result.exit_code != 0:
        _raise_checkout_failure(workspace, result.stderr or result.stdout)
    start_commit = result.stdout.strip().rsplit(" ", 1)[-1]
    # A request's branch may have moved on the host since it was fetched; a new work
    # branch starts at the commit just checked out.
    turn_start = (
        await host.branch_head(workspace, workspace.branch)
        if mode is CheckoutMode.HEAD_BRANCH and workspace.branch
        else None
    )
    await update_workspace(
        context.store,
        workspace.conversation_id,
        checked_out_at=now(),
        turn_start_sha=turn_start or start_commit,
    )
    log.info(
        "checked out %s (%s) for conversation %s",
        workspace.repository,
        workspace.branch or start_commit[:12],
        workspace.conversation_id,
    )


async def _absolute_directory(context: ProcessorContext, workspace: Workspace) -> str:
    """The working directory as an absolute path (uploads need one; the root may be
    relative to the agent-server's own directory)."""
    if workspace.working_dir.startswith("/"):
        return workspace.working_dir.rstrip("/")
    result = await context.agent.run_command(workspace.conversation_id, "pwd -P", seconds=30)
    if result.exit_code != 0 or not result.stdout.strip().startswith("/"):
        raise RetryableJobError("the agent-server did not say where the working directory is")
    return result.stdout.strip().splitlines()[-1]


def _raise_checkout_failure(workspace: Workspace, output: str) -> None:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    reason = next(
        (line for line in reversed(lines) if "fatal" in line.lower()),
        lines[-1] if lines else "git failed",
    )
    text = f"I could not check out {workspace.repository}: {reason}"
    if _PERMANENT_GIT_FAILURE.search(output):
        raise CheckoutRefused(text)
    raise RetryableJobError(text)


async def begin_turn(context: ProcessorContext, conversation_id: str) -> None:
    """A follow-up turn starts: remember where its branch stands, so that its reply
    counts only the commits it pushed."""
    workspace = await get_workspace(context.store, conversation_id)
    host = context.hosts.get(workspace.host) if workspace is not None else None
    if workspace is None or host is None or workspace.branch is None:
        return
    head = await host.branch_head(workspace, workspace.branch)
    await update_workspace(context.store, conversation_id, turn_start_sha=head)


async def end_turn(
    context: ProcessorContext, conversation_id: str, *, workspace: Workspace | None = None
) -> None:
    """A turn ended (answered or failed): its token dies, and the clean-up clock starts.
    `workspace`: the conversation's, when the caller has just read it."""
    workspace = workspace or await get_workspace(context.store, conversation_id)
    if workspace is None:
        return
    if context.credentials is not None:
        await context.credentials.revoke(conversation_id)
    await update_workspace(context.store, conversation_id, last_turn_ended_at=now())
