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
    # The callback whose turn opened it (processors.outcome), when the relay did: a
    # retried reply still says "Opened".
    opened_by_callback: int | None = None


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


# Where the relay's own files live in a checkout: inside .git, so that nothing the
# agent commits or cleans (`git clean -xfd`) reaches them.
RELAY_DIR = ".git/agent-relay"
CHECKOUT_DONE_KEY = "agent-relay.checkout"
START_COMMIT_KEY = "agent-relay.start"


def shell_quote(value: str) -> str:
    """`value` as one POSIX shell word."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def credential_helper(url: str, capability: str, username: str) -> str:
    """A git credential helper that asks the relay for the conversation's token.

    It holds the capability, not a token: the agent-server stores every command and
    its output on its disk unmasked (openhands-agent-server 1.58.2), so the
    capability travels in this uploaded file and never in a command. The relay
    answers only while a turn is in progress, and hands out a fresh token before the
    last one expires, so a long run still pushes.
    """
    header = shell_quote(f"Authorization: Bearer {capability}")
    return f"""#!/bin/sh
# git credential helper written by agent-relay: the token comes from the relay.
[ "$1" = get ] || exit 0
cat >/dev/null
token=$(curl -fsS --max-time 30 -H {header} {shell_quote(url)} 2>/dev/null \\
  || python3 -c 'import sys, urllib.request
request = urllib.request.Request(sys.argv[1], headers={{"Authorization": sys.argv[2]}})
print(urllib.request.urlopen(request, timeout=30).read().decode())' {shell_quote(url)} \\
  {shell_quote(f"Bearer {capability}")}) || exit 1
printf 'username=%s\\npassword=%s\\n' {shell_quote(username)} "$token"
"""


def co_author_hook(requester: Requester | None) -> str:
    """commit-msg hook: every commit names the person who asked as co-author."""
    trailer = (
        f"Co-authored-by: {requester.name or requester.login} <{requester.email}>"
        if requester is not None and requester.email
        else None
    )
    command = (
        "git interpret-trailers --in-place --if-exists addIfDifferent"
        f' --trailer {shell_quote(trailer)} "$1"'
        if trailer
        else "exit 0"
    )
    return f"#!/bin/sh\n# commit-msg hook written by agent-relay.\n{command}\n"


def push_guard_hook(branch: str | None) -> str:
    """pre-push hook: only `branch` may be pushed, never deleted or forced; with no
    branch, nothing may be pushed (a fork's request, PULL_REQUESTS=off). The token
    is what really limits the agent; this turns mistakes into clear messages."""
    if branch is None:
        return (
            "#!/bin/sh\necho 'agent-relay: this checkout is read-only; describe or leave"
            " your change in the working tree instead of pushing' >&2\nexit 1\n"
        )
    ref = shell_quote(f"refs/heads/{branch}")
    return f"""#!/bin/sh
# pre-push hook written by agent-relay.
zero=0000000000000000000000000000000000000000
while read -r local_ref local_sha remote_ref remote_sha; do
  if [ "$remote_ref" != {ref} ]; then
    echo "agent-relay: only {branch} may be pushed from this checkout" >&2; exit 1
  fi
  if [ "$local_sha" = "$zero" ]; then
    echo "agent-relay: {branch} may not be deleted" >&2; exit 1
  fi
  if [ "$remote_sha" != "$zero" ] && ! git merge-base --is-ancestor "$remote_sha" "$local_sha"; then
    echo "agent-relay: force-pushing is not allowed; fetch and rebase or merge first" >&2; exit 1
  fi
done
exit 0
"""


def checkout_script(
    *,
    directory: str,
    clone_url: str,
    mode: CheckoutMode,
    base_branch: str,
    branch: str | None,
    fetch_ref: str | None,
    bot_name: str,
    bot_email: str,
) -> str:
    """The shell script that turns the conversation's (git-initialised) directory into
    a partial clone on the right branch. It holds no secret (git asks the credential
    helper), and running it again finishes or repeats an interrupted checkout: it
    stops at once when an earlier run completed."""
    q = shell_quote
    relay = f"{directory}/{RELAY_DIR}"
    lines = [
        "set -e",
        f"cd {q(directory)}",
        f'if [ "$(git config --get {CHECKOUT_DONE_KEY} || true)" = done ]; then',
        f"  echo checked-out $(git config --get {START_COMMIT_KEY}); exit 0",
        "fi",
        # The agent-server ran `git init` here; an interrupted run may have left more.
        "git remote remove origin 2>/dev/null || true",
        f"git remote add origin {q(clone_url)}",
        "git config core.repositoryformatversion 1",
        # A partial clone (blobs fetched when first needed) starts large repositories fast.
        "git config extensions.partialClone origin",
        "git config remote.origin.promisor true",
        "git config remote.origin.partialclonefilter blob:none",
        f"git config credential.helper {q('!sh ' + q(relay + '/credential-helper'))}",
        "git config credential.useHttpPath true",
        f"git config user.name {q(bot_name)}",
        f"git config user.email {q(bot_email)}",
        f"chmod 700 {q(relay)} && chmod 755 {q(relay + '/hooks/commit-msg')}"
        f" {q(relay + '/hooks/pre-push')}",
        f"git config core.hooksPath {q(relay + '/hooks')}",
        "git config push.default simple",
        "export GIT_TERMINAL_PROMPT=0",
    ]
    fetch = "git fetch --filter=blob:none --no-tags origin"
    if mode is CheckoutMode.FORK_HEAD:
        assert fetch_ref is not None
        local = f"pr-head-{fetch_ref.rstrip('/').rsplit('/', 2)[-2]}"
        lines += [f"{fetch} {q(fetch_ref)}", f"git checkout -q --no-track -B {q(local)} FETCH_HEAD"]
    else:
        source = branch if mode is CheckoutMode.HEAD_BRANCH else base_branch
        assert source is not None
        local = branch if branch is not None else base_branch
        lines += [
            f"{fetch} {q(f'+refs/heads/{source}:refs/remotes/origin/{source}')}",
            f"git checkout -q --no-track -B {q(local)} {q(f'refs/remotes/origin/{source}')}",
        ]
        if branch is not None:
            # `git push` with no arguments pushes this branch to its namesake.
            lines += [
                f"git config branch.{branch}.remote origin",
                f"git config branch.{branch}.merge {q(f'refs/heads/{branch}')}",
            ]
    lines += [
        f"git config {START_COMMIT_KEY} $(git rev-parse HEAD)",
        f"git config {CHECKOUT_DONE_KEY} done",
        f"echo checked-out $(git config --get {START_COMMIT_KEY})",
    ]
    return "\n".join(lines) + "\n"


def workspace_instructions(
    *, directory: str, repository: str, mode: CheckoutMode, branch: str | None, base_branch: str
) -> str:
    """What the agent's system prompt says of its checkout."""
    where = f"Your working directory {directory} is a git checkout of {repository}"
    if mode is CheckoutMode.FORK_HEAD or branch is None:
        return (
            f"{where}, read-only: nothing can be pushed from it. Make the change in the"
            " working tree; agent-relay shows it to the team as a suggested diff."
        )
    since = "" if mode is CheckoutMode.HEAD_BRANCH else f", started from {base_branch}"
    return (
        f"{where}, on branch {branch}{since}. To hand your change to the team, commit it"
        " and run `git push` with no arguments: pushing is how it reaches them, and"
        " agent-relay opens the pull request (or merge request) itself, so do not open"
        " one. Never force-push, never push any other branch, and never read, print or"
        " change CI secrets or the repository's settings. Credentials are provided:"
        " never write a token into a file, a commit or your answer."
    )
