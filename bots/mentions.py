"""What every platform shares once a mention has been accepted (DESIGN section 6).

A platform's event job decides that a message triggers the agent, acknowledges it
and builds the text; this module then records the turn: it starts a conversation
for a thread that has none, or continues the thread's conversation, and registers
the callback that will carry the answer back. Conversation links remember which
thread belongs to which conversation, so follow-ups reach the same one.

Platform event jobs are keyed by thread key, so two mentions in one thread are
handled one after the other and the "start or continue" decision never races.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field

from pydantic import BaseModel

from agent.events import START_JOB, TURN_MESSAGE_JOB, StartPayload, TurnMessagePayload
from db.callbacks import ConversationCallback, insert_callback
from db.jobs import JobQueue
from db.logcontext import bind
from db.metrics import MENTION_ACCEPTED, MENTIONS
from db.store import Store, now

log = logging.getLogger(__name__)

# uuid5 namespace of the conversation ids agent-relay derives from platform deliveries.
_CONVERSATION_NAMESPACE = uuid.UUID("8a5f3c2e-6f7b-4b7e-9d1a-3c4b5d6e7f80")

# owner/repo as people write it: GitHub and GitLab URLs first, then a bare
# owner/name. GitLab groups nest (group/subgroup/project).
_REPOSITORY_URL = re.compile(
    r"https?://(?:www\.)?(?:github\.com|gitlab\.com|[\w.-]*git[\w.-]*)/"
    r"(?P<path>[\w.-]+(?:/[\w.-]+)+)"
)
_REPOSITORY_NAME = re.compile(r"(?<![\w./:@-])(?P<path>[A-Za-z0-9][\w.-]*/[\w.-]*\w)(?![\w/])")
# Pairs people write with a slash that are not repositories.
_NOT_REPOSITORIES = {"and/or", "either/or", "read/write", "input/output", "yes/no", "true/false"}
# Path segments of a repository URL that are not part of the repository's name.
_URL_STOP_SEGMENTS = {"-", "issues", "pull", "pulls", "merge_requests", "blob", "tree", "commit"}


@dataclass(frozen=True)
class ConversationLink:
    platform: str
    thread_key: str
    conversation_id: str
    cursor: str | None


@dataclass(frozen=True)
class Turn:
    """One accepted mention, ready to be recorded."""

    platform: str
    thread_key: str
    # The platform's id of the triggering delivery: a retried job records it once.
    delivery_id: str
    conversation_id: str
    # The prompt of a new conversation, or the follow-up message of a continued one.
    text: str
    # The platform's processor (a registered ReplyingProcessor kind; bots/ may not
    # import processors/, so the platform job is handed a factory by relay/).
    processor: BaseModel
    tags: dict[str, str] = field(default_factory=dict)
    # Platform marker of the newest message the agent has now seen (see find_link).
    cursor: str | None = None
    # When the platform's delivery arrived (epoch seconds; its event job's created_at),
    # for the mention -> agent latency.
    received_at: float | None = None


def new_conversation_id(platform: str, delivery_id: str) -> str:
    """The id of the conversation a delivery starts: the same on every retry of its job,
    so an "on it" link posted by a failed attempt stays right."""
    return uuid.uuid5(_CONVERSATION_NAMESPACE, f"{platform}:{delivery_id}").hex


async def find_link(store: Store, platform: str, thread_key: str) -> ConversationLink | None:
    row = await store.fetch_one(
        "SELECT platform, thread_key, conversation_id, cursor FROM conversation_links"
        " WHERE platform = :platform AND thread_key = :thread_key",
        {"platform": platform, "thread_key": thread_key},
    )
    return None if row is None else ConversationLink(**row)


async def links_of(store: Store, conversation_id: str) -> list[ConversationLink]:
    rows = await store.fetch_all(
        "SELECT platform, thread_key, conversation_id, cursor FROM conversation_links"
        " WHERE conversation_id = :id ORDER BY created_at",
        {"id": conversation_id},
    )
    return [ConversationLink(**row) for row in rows]


async def forget_links(store: Store, conversation_id: str) -> None:
    """Unlink the threads of a conversation that could not be started."""
    await store.execute(
        "DELETE FROM conversation_links WHERE conversation_id = :id", {"id": conversation_id}
    )


class _AlreadyRecorded(Exception):
    """Rolls back a turn whose delivery was recorded by an earlier attempt."""


async def record_turn(store: Store, queue: JobQueue, turn: Turn, *, continuing: bool) -> int | None:
    """Start or continue the conversation of `turn`, with a callback for its answer.

    One transaction: the link, the callback and the job that starts the
    conversation (or sends the follow-up) exist together or not at all. Returns the
    callback id, or None when this delivery was recorded before (a retried job). An
    accepted mention is counted, and its callback id bound for the log lines after.
    """
    # The processor (a ReplyingProcessor) keeps where its turn came from: its log
    # lines and its reply's carry the delivery id, and a follow-up's message times
    # the mention -> agent latency.
    origin = {"origin_delivery_id": turn.delivery_id, "origin_received_at": turn.received_at}
    processor = turn.processor.model_copy(
        update={**origin, "turn_message": turn.text} if continuing else origin
    )
    try:
        async with store.transaction():
            callback = await insert_callback(
                store, ConversationCallback.for_processor(turn.conversation_id, processor)
            )
            assert callback.id is not None
            if continuing:
                job_id = await queue.enqueue(
                    TURN_MESSAGE_JOB,
                    TurnMessagePayload(callback_id=callback.id),
                    key=turn.conversation_id,
                    idempotency_key=f"mention:{turn.platform}:{turn.delivery_id}",
                )
            else:
                job_id = await queue.enqueue(
                    START_JOB,
                    StartPayload(
                        conversation_id=turn.conversation_id,
                        prompt=turn.text,
                        tags=turn.tags,
                        platform=turn.platform,
                        delivery_id=turn.delivery_id,
                        callback_id=callback.id,
                        received_at=turn.received_at,
                    ),
                    key=turn.conversation_id,
                    idempotency_key=f"mention:{turn.platform}:{turn.delivery_id}",
                )
            if job_id is None:
                raise _AlreadyRecorded
            await _save_link(store, turn)
    except _AlreadyRecorded:
        _log_turn(turn, continuing, "recorded before")
        return None
    MENTIONS.labels(platform=turn.platform, outcome=MENTION_ACCEPTED).inc()
    bind(callback=callback.id)
    _log_turn(turn, continuing, callback.id)
    return callback.id


def _log_turn(turn: Turn, continuing: bool, callback: object) -> None:
    log.info(
        "%s %s: %s conversation %s (callback %s)",
        turn.platform,
        turn.thread_key,
        "continued" if continuing else "started",
        turn.conversation_id,
        callback,
    )


async def _save_link(store: Store, turn: Turn) -> None:
    stamp = now()
    await store.execute(
        "INSERT INTO conversation_links (platform, thread_key, conversation_id, cursor,"
        " created_at, updated_at) VALUES (:platform, :thread_key, :conversation_id, :cursor,"
        " :now, :now) ON CONFLICT (platform, thread_key) DO UPDATE SET"
        " conversation_id = excluded.conversation_id,"
        " cursor = COALESCE(excluded.cursor, conversation_links.cursor),"
        " updated_at = excluded.updated_at",
        {
            "platform": turn.platform,
            "thread_key": turn.thread_key,
            "conversation_id": turn.conversation_id,
            "cursor": turn.cursor,
            "now": stamp,
        },
    )


def infer_repository(text: str, default: str | None = None) -> str | None:
    """The repository a request is about: a GitHub/GitLab URL, else an owner/name,
    else `default`. The case is kept as written (GitLab paths are case-sensitive)."""
    for match in _REPOSITORY_URL.finditer(text):
        segments = []
        for segment in match.group("path").split("/"):
            if segment in _URL_STOP_SEGMENTS:
                break
            segments.append(segment)
        if segments:
            # A URL at the end of a sentence keeps its full stop in the match.
            segments[-1] = segments[-1].rstrip(".").removesuffix(".git")
        if len(segments) >= 2:
            return "/".join(segments)
    for match in _REPOSITORY_NAME.finditer(_without_urls(text)):
        candidate = match.group("path")
        owner, _, name = candidate.partition("/")
        if (
            candidate.lower() not in _NOT_REPOSITORIES
            and re.search(r"[A-Za-z]", owner)
            and re.search(r"[A-Za-z]", name)
        ):
            return candidate
    return default


def _without_urls(text: str) -> str:
    return re.sub(r"<?https?://\S+", " ", text)


# Markdown that quotes or shows code rather than speaking to the bot: fenced blocks
# (``` or ~~~, closed or running to the end), inline code spans, and ">" quote lines.
_FENCED_BLOCK = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*\n.*?(?:^ {0,3}\1[ \t]*$|\Z)", re.M | re.S)
_INLINE_CODE = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
_QUOTE_LINE = re.compile(r"^ {0,3}>.*$", re.M)


def spoken_text(markdown: str) -> str:
    """The parts of a GitHub/GitLab comment its author wrote themselves: quotes
    (replies quote earlier comments, mentions and all) and code removed."""
    text = _FENCED_BLOCK.sub("\n", markdown)
    text = _INLINE_CODE.sub(" ", text)
    return _QUOTE_LINE.sub("", text)


def _mention_pattern(mention: str) -> re.Pattern[str]:
    # A whole word: "@openhands" but not "@openhands-bot", "@openhandsx" or an
    # e-mail address such as "me@openhands.dev".
    return re.compile(rf"(?<![\w@.-]){re.escape(mention)}(?![\w-]|\.\w)", re.I)


def mentions_bot(markdown: str, mention: str) -> bool:
    """True when `mention` (e.g. "@openhands") appears as a whole word, in any case,
    outside quotes and code."""
    return bool(_mention_pattern(mention).search(spoken_text(markdown)))


def request_text(markdown: str, mention: str) -> str:
    """What was asked: the comment without the bot's mention (quotes and code kept,
    they are part of the request)."""
    without = _mention_pattern(mention).sub(" ", markdown)
    return re.sub(r"[ \t]{2,}", " ", without).strip()


def acknowledgement(conversation_url: str | None, *, continuing: bool, where: str) -> str:
    """The "on it" message of GitHub and GitLab (markdown), `where` e.g. "this thread"."""
    text = "On it, continuing our conversation." if continuing else "On it!"
    if conversation_url:
        text += f" Follow along [here]({conversation_url});"
    return f"{text} I'll answer in {where}."


def permission_refusal(needed: str) -> str:
    """The one polite reply to someone who may not start the agent; `needed` names
    the access the platform requires (e.g. "write access or above")."""
    return (
        "Sorry, I can only take requests from people who can change this repository "
        f"({needed}). A maintainer can ask me instead."
    )


def marker(kind: str, key: str) -> str:
    """An invisible tag (an HTML comment, which GitHub and GitLab do not render) in a
    comment the bot posts, so that a retried job finds the comment it posted before
    (its response may have been lost) instead of posting it twice."""
    return f"<!-- agent-relay:{kind}:{key} -->"
