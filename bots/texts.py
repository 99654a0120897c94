"""The words the bot says on every platform, written once: the "on it"
acknowledgement, the refusal, the usage hint, the answer's frame, and how long texts
are cut. A platform passes its own link syntax (markdown, or Slack's mrkdwn)."""

from __future__ import annotations

from collections.abc import Callable

from db.approvals import EXPIRED
from processors.base import Reply
from processors.confirmation import ApprovalRequest
from processors.status import Outcome, TurnStatus

# The reaction on the message that asked while the agent works (Slack, GitHub and
# GitLab all name it so).
WORKING_REACTION = "eyes"

LinkStyle = Callable[[str, str], str]


def markdown_link(url: str, label: str) -> str:
    return f"[{label}]({url})"


def acknowledgement(
    conversation_url: str | None,
    *,
    continuing: bool,
    where: str,
    link: LinkStyle = markdown_link,
    note: str | None = None,
    working_on: str | None = None,
) -> str:
    """The "on it" message; `where` the answer will be, e.g. "this thread"; `note`
    says anything the asker should know before the answer (a missing checkout);
    `working_on` names the repository when the thread is not on it (a chat)."""
    text = "On it, continuing our conversation." if continuing else "On it!"
    if working_on:
        text += f" Working on {working_on}."
    if conversation_url:
        text += f" Follow along {link(conversation_url, 'here')};"
    text = f"{text} I'll answer in {where}."
    return f"{text} {note}" if note else text


def no_checkout_note(repository: str) -> str:
    """Said when no configured platform can serve the repository a request names."""
    return (
        f"I can't reach {repository} from here (no GitHub App installation or GitLab"
        " project of mine has it), so I'll work without a checkout."
    )


def permission_refusal(needed: str) -> str:
    """The one polite reply to someone who may not start the agent; `needed` names
    the access the platform requires (e.g. "write access or above")."""
    return (
        "Sorry, I can only take requests from people who can change this repository "
        f"({needed}). A maintainer can ask me instead."
    )


def answer(summary: str, conversation_url: str | None, link: LinkStyle = markdown_link) -> str:
    """The agent's answer with the conversation's link, unless it already has it."""
    if conversation_url and conversation_url not in summary:
        return f"{summary}\n\n{link(conversation_url, 'View the conversation')}"
    return summary


def trim_to_limit(text: str, limit: int, url: str | None) -> str:
    """`text` cut to at most `limit` characters, saying so and where the rest is.

    GitHub and GitLab take one comment of bounded size; an answer beyond it ends
    with a note (and the conversation link) instead of being refused.
    """
    if len(text) <= limit:
        return text
    note = "\n\n*The answer was too long for one comment and has been shortened."
    note += f" The full conversation: {url}*" if url else "*"
    return text[: max(0, limit - len(note))].rstrip() + note


# Pull request titles are read in lists: one line, about as long as a commit subject.
TITLE_CHARS = 72


def request_title(text: str, fallback: str) -> str:
    """A pull request's title: the first line of `text` (an issue's title, a Slack
    request), else of `fallback`, cut to one short line."""
    line = next((part.strip() for part in f"{text}\n{fallback}".splitlines() if part.strip()), "")
    title = line or "Changes asked for in the thread"
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1].rstrip() + "…"


def shorten(text: str, limit: int) -> str:
    """Context for the agent, not the whole discussion: a long text cut, marked […]."""
    return text if len(text) <= limit else text[:limit].rstrip() + " […]"


def comment_answer(reply: Reply, asker: str, limit: int) -> str:
    """The answer as one GitHub or GitLab comment: the asker mentioned, the
    conversation linked, trimmed to `limit` characters."""
    text = answer(f"@{asker} {reply.summary}", reply.url)
    return trim_to_limit(text, limit, reply.url)


def duration(seconds: float) -> str:
    """A span of time as people say it: "40s", "2m 13s", "3m", "1h 5m"."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def status_text(status: TurnStatus, link: LinkStyle = markdown_link) -> str:
    """The turn's status message: the current step (or the outcome) on the first
    line, then the facts: steps, time, repository and branch, the conversation."""
    took = duration(status.elapsed) if status.elapsed is not None else None
    if status.outcome is Outcome.DONE:
        head = f"Done in {took}." if took else "Done."
    elif status.outcome is Outcome.FAILED:
        head = f"Failed after {took}." if took else "Failed."
    elif status.outcome is Outcome.STOPPED:
        who = status.stopped_by or "someone"
        head = f"Stopped by {who} after {took}." if took else f"Stopped by {who}."
    elif status.outcome is Outcome.WAITING:
        head = "Waiting for approval."
    elif status.step:
        head = f"Working on it: {status.step}"
    else:
        head = "On it! Starting…"
    # A turn that ended without a tool call took no steps worth counting.
    facts = (
        []
        if status.final and not status.steps
        else [f"{status.steps} step{'' if status.steps == 1 else 's'}"]
    )
    if took and not status.final:
        facts.append(took)
    if status.repository:
        on_branch = f" on {status.branch}" if status.branch else ""
        facts.append(f"{status.repository}{on_branch}")
    if status.url:
        facts.append(link(status.url, "conversation"))
    text = f"{head}\n{' · '.join(facts)}" if facts else head
    return f"{text}\n{status.note}" if status.note else text


def comment_approval_hint(mention: str) -> str:
    """How a GitHub or GitLab thread answers an approval request (`mention`: BOT_MENTION)."""
    return f"Reply `{mention} approve` or `{mention} reject <reason>`."


_FENCE = "```"


def approval_request_text(
    request: ApprovalRequest, *, hint: str | None = None, with_answer: bool = True
) -> str:
    """What the agent waits to run (markdown): each held action's tool, its reason and
    its command or file; then `hint` (how to answer) or, once answered, the answer
    (unless the caller writes it, `with_answer=False`); then the conversation."""
    lines = ["The agent waits for approval to run:"]
    for action in request.actions:
        lines.append(f"**{action.tool}**" + (f": {action.reason}" if action.reason else ""))
        if action.detail:
            # A fence inside the command would end the block early.
            lines.append(f"{_FENCE}\n{action.detail.replace(_FENCE, '` ` `')}\n{_FENCE}")
    answer = approval_answer_text(request)
    if answer is not None:
        if with_answer:
            lines.append(f"**{answer}**")
    elif hint:
        lines.append(hint)
    if request.url:
        lines.append(markdown_link(request.url, "View the conversation"))
    return "\n\n".join(lines)


# What a request says once its turn ended without an answer.
APPROVAL_EXPIRED_TEXT = "No longer waiting: the turn ended without an answer."


def approval_answer_text(request: ApprovalRequest) -> str | None:
    """ "Approved by @x." or "Rejected by @x: reason"; None while unanswered."""
    if request.state == EXPIRED:
        return APPROVAL_EXPIRED_TEXT
    if request.accept is None:
        return None
    verdict = "Approved" if request.accept else "Rejected"
    head = f"{verdict} by {request.answered_by}" if request.answered_by else verdict
    return f"{head}: {request.reason}" if not request.accept and request.reason else f"{head}."


def nothing_to_approve(who: str) -> str:
    """The answer to an approval when the thread's agent waits for none."""
    return f"{who} nothing is waiting for approval here."
