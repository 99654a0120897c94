"""What a conversation's checkout is: the request a mention makes, and the plan a
repository host answers it with.

The relay prepares each checkout through the agent-server's own API before the agent's
first step (processors.workspace): a conversation started without `initial_message`
runs nothing (openhands-agent-server 1.58.2), so the relay has the working directory
to itself until it sends the prompt.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

# Work branches are `{BRANCH_PREFIX}{issue number or "slack"}-{8 hex of the conversation id}`.
DEFAULT_BRANCH_PREFIX = "openhands/"


class Requester(BaseModel):
    """The person who asked: reviewer of the pull request, co-author of its commits."""

    # Their handle on the platform they asked on ("alice"), as mentions write it.
    login: str
    # The platform that handle belongs to ("github", "gitlab", "slack").
    platform: str
    # For the `Co-authored-by:` trailer; without an email there is no trailer.
    name: str | None = None
    email: str | None = None


class WorkspaceRequest(BaseModel):
    """What a mention asks the checkout to be: recorded with the turn, answered in the
    start job."""

    # "owner/name" on GitHub, "group/sub/name" on GitLab.
    repository: str
    # The platform that hosts it ("github", "gitlab"), when the mention came from
    # there; None (Slack, the API): whichever platform can serve it.
    host: str | None = None
    # The host's own handle of the repository, when the mention knows it: the GitHub
    # App installation id, the GitLab project id.
    locator: str | None = None
    # The issue the mention was made on (the pull request then says "Fixes #N").
    issue_number: int | None = None
    # The pull or merge request the mention was made on: its branch is checked out.
    change_request_number: int | None = None
    # The request in a line, for the pull request's title.
    title: str = ""
    requester: Requester | None = None
    # Where the conversation's thread is, for the pull request's body.
    thread_url: str | None = None


class CheckoutMode(StrEnum):
    # A new work branch from the default branch; the relay opens the pull request.
    NEW_BRANCH = "new_branch"
    # The head branch of a pull or merge request of the same repository.
    HEAD_BRANCH = "head_branch"
    # The head commit of a pull or merge request from a fork: nothing can be pushed.
    FORK_HEAD = "fork_head"
    # The default branch, with nothing to push (PULL_REQUESTS=off).
    READ_ONLY = "read_only"


class ChangeRequest(BaseModel):
    """A pull request (GitHub) or merge request (GitLab)."""

    number: int
    url: str
    title: str = ""
    draft: bool = False


class RepositoryPlan(BaseModel):
    """How a host answers a WorkspaceRequest: what to clone, and which branch."""

    clone_url: str
    default_branch: str
    # The web page of the repository (links in replies).
    web_url: str | None = None
    # On a pull or merge request: whose branch (same repository or a fork), its head
    # branch, the ref of its head commit (`refs/pull/N/head`) and the request itself.
    from_fork: bool = False
    head_branch: str | None = None
    head_ref: str | None = None
    change_request: ChangeRequest | None = None
    # Who the commits are by: the bot, as the host knows it.
    bot_name: str
    bot_email: str
