"""What a turn in a checkout handed back: a pull (merge) request opened or updated,
commits pushed, or nothing; the first line of every reply.

Run when the agent stops with an answer (FINISHED or AWAITING_USER_INPUT), before
the reply is queued. Safe to run again: the request is found by its head branch
(and remembered in the workspace row as soon as it is opened), never opened twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from agent.checkout import START_COMMIT_KEY, ChangeRequest, CheckoutMode, WorkspaceRequest
from db.workspaces import Workspace, get_workspace, update_workspace
from processors.context import ProcessorContext
from processors.hosts import ChangeRequestProposal, Comparison, RepositoryHost
from processors.workspace import end_turn

log = logging.getLogger(__name__)

# GitHub refuses pull request bodies over 65,536 characters; GitLab allows more.
BODY_CHARS = 60_000
# A fork's suggested change is shown in the reply, not attached: keep it readable.
DIFF_CHARS = 6_000


@dataclass(frozen=True)
class Outcome:
    # The reply's first line(s): what the turn pushed, with links.
    headline: str
    # For the webhook processor's payload: {"url", "number", "branch", "created"}.
    pull_request: dict[str, Any] | None = None


async def turn_outcome(
    context: ProcessorContext, conversation_id: str, summary: str, *, callback_id: int
) -> Outcome | None:
    """The outcome of the turn that just ended, which also ends the turn's use of its
    workspace (processors.workspace.end_turn: its token dies); None without a checkout
    to report on (no repository, or PULL_REQUESTS=off: the answer is text only)."""
    workspace = await get_workspace(context.store, conversation_id)
    if workspace is None:
        return None  # one read for a conversation without a repository, nothing more
    outcome = await _outcome_of(context, workspace, summary, callback_id)
    await end_turn(context, conversation_id, workspace=workspace)
    return outcome


async def _outcome_of(
    context: ProcessorContext, workspace: Workspace, summary: str, callback_id: int
) -> Outcome | None:
    host = context.hosts.get(workspace.host)
    mode = CheckoutMode(workspace.mode)
    if workspace.checked_out_at is None or host is None or mode is CheckoutMode.READ_ONLY:
        return None
    if mode is CheckoutMode.FORK_HEAD or workspace.branch is None:
        return Outcome(await _fork_headline(context, workspace))
    return await _branch_outcome(context, host, workspace, summary, callback_id)


async def _branch_outcome(
    context: ProcessorContext,
    host: RepositoryHost,
    workspace: Workspace,
    summary: str,
    callback_id: int,
) -> Outcome:
    branch = workspace.branch
    assert branch is not None
    head = await host.branch_head(workspace, branch)
    this_turn = (
        await host.compare(workspace, workspace.turn_start_sha or workspace.base_branch, branch)
        if head is not None and head != workspace.turn_start_sha
        else None
    )
    request = _stored_request(workspace)
    whole = None
    if CheckoutMode(workspace.mode) is CheckoutMode.NEW_BRANCH:
        whole = await host.compare(workspace, workspace.base_branch, branch) if head else None
        if request is None and whole is not None and whole.commits > 0:
            request = await _open_request(context, host, workspace, summary, callback_id)
    await update_workspace(context.store, workspace.conversation_id, turn_start_sha=head)
    created = request is not None and request.opened_by_callback == callback_id
    # A new request's figures are its whole diff; a push's, what this turn added.
    stats = whole if created else this_turn
    if request is not None and created:
        draft = "draft " if request.draft else ""
        headline = f"Opened {draft}{_named(host, request)}: {request.title} {request.url}"
    elif this_turn is not None and this_turn.commits > 0:
        commits = "commit" if this_turn.commits == 1 else "commits"
        headline = f"Pushed {this_turn.commits} {commits} to `{branch}`"
        if request is not None:
            headline += f" ({_named(host, request)}: {request.url})"
    else:
        headline = "No changes were pushed."
        if request is not None:
            headline += f" {_named(host, request)}: {request.url}"
    if stats is not None and stats.commits > 0:
        headline += f"\nBranch `{branch}`, {_diffstat(stats)}."
    pull_request = (
        {"url": request.url, "number": request.number, "branch": branch, "created": created}
        if request is not None
        else None
    )
    return Outcome(headline, pull_request)


def _named(host: RepositoryHost, request: ChangeRequest) -> str:
    """The request as people write it there: "PR #34" on GitHub, "MR !34" on GitLab."""
    return f"{host.change_request_label} {host.change_request_sign}{request.number}"


def _diffstat(stats: Comparison) -> str:
    files = "file" if stats.files == 1 else "files"
    return f"+{stats.additions} -{stats.deletions} in {stats.files} {files}"


def _stored_request(workspace: Workspace) -> ChangeRequest | None:
    if workspace.change_request is None:
        return None
    return ChangeRequest.model_validate_json(workspace.change_request)


async def _open_request(
    context: ProcessorContext,
    host: RepositoryHost,
    workspace: Workspace,
    summary: str,
    callback_id: int,
) -> ChangeRequest:
    branch = workspace.branch
    assert branch is not None
    request = WorkspaceRequest.model_validate_json(workspace.request)
    found = await host.find_change_request(workspace, branch)
    if found is None:
        reviewer = (
            request.requester.login
            if request.requester is not None and request.requester.platform == host.name
            else None
        )
        found = await host.open_change_request(
            workspace,
            ChangeRequestProposal(
                branch=branch,
                title=request.title or f"Changes by the agent on {branch}",
                body=_body(context, host, workspace, request, summary),
                draft=context.workspace_policy.pull_requests == "draft",
                reviewer=reviewer,
            ),
        )
        found = found.model_copy(update={"opened_by_callback": callback_id})
        log.info(
            "opened %s on %s for conversation %s",
            _named(host, found),
            workspace.repository,
            workspace.conversation_id,
        )
    await update_workspace(
        context.store, workspace.conversation_id, change_request=found.model_dump_json()
    )
    return found


def _body(
    context: ProcessorContext,
    host: RepositoryHost,
    workspace: Workspace,
    request: WorkspaceRequest,
    summary: str,
) -> str:
    parts = [summary[:BODY_CHARS]]
    if request.issue_number is not None and request.host == host.name:
        parts.append(f"{host.closes_keyword} #{request.issue_number}")
    asked = []
    if request.requester is not None:
        who = request.requester
        asked.append(
            f"Asked by @{who.login}" if who.platform == host.name else f"Asked by {who.login}"
        )
    if request.thread_url:
        asked.append(f"in {request.thread_url}")
    if asked:
        parts.append(" ".join(asked) + ".")
    url = context.conversation_url(workspace.conversation_id)
    if url:
        parts.append(f"Agent conversation: {url}")
    parts.append(f"<!-- agent-relay:change-request:{workspace.conversation_id} -->")
    return "\n\n".join(parts)


async def _fork_headline(context: ProcessorContext, workspace: Workspace) -> str:
    """A fork's request cannot be pushed to: its suggested change, as a diff."""
    result = await context.agent.run_command(
        workspace.conversation_id,
        # Intent-to-add shows new files in the diff; the index is the checkout's own.
        "git add -A -N . >/dev/null 2>&1;"
        f" git -c core.pager=cat diff --no-color $(git config --get {START_COMMIT_KEY})",
        seconds=120,
    )
    diff = result.stdout.strip() if result.exit_code == 0 else ""
    text = "No changes were pushed: this request comes from a fork, which cannot be pushed to."
    if not diff:
        return text
    if len(diff) > DIFF_CHARS:
        diff = diff[:DIFF_CHARS].rstrip() + "\n[…]"
    return f"{text} The suggested change:\n```diff\n{diff}\n```"
