"""The `gitlab.event` job: from an accepted GitLab delivery to a recorded agent turn.

Runs in a worker, keyed by issue or merge request, so mentions on one of them are
handled in order. It decides again (now knowing the bot's own user), checks that the
person may trigger the agent (Developer or above, `members/all`), acknowledges (an
`eyes` award on the note, or on the issue/MR for a label, and an "on it" reply in the
same discussion with the conversation link), gathers the context (title,
description, the newest notes, an MR's branches) and hands the turn to bots.mentions.
Every step may run again after a crash: an award already there is fine, the notes
the bot posts carry a hidden marker that a retry finds, and the turn is recorded
once per delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from bots.gitlab.api import DEVELOPER_ACCESS, GitlabApi, GitlabUser, Place
from bots.gitlab.inbound import GITLAB_EVENT_JOB
from bots.gitlab.triggers import PLATFORM, GitlabTrigger, Noteable, trigger_of
from bots.mentions import (
    Turn,
    acknowledgement,
    find_link,
    marker,
    new_conversation_id,
    permission_refusal,
    record_turn,
)
from db.jobs import Job, JobQueue, json_object
from db.logcontext import bind
from db.metrics import MENTIONS
from db.store import Store

log = logging.getLogger(__name__)

# What the refusal says is needed: GitLab's role of access_level 30 and above.
NEEDED_ACCESS = "the Developer role or above"

WORKING_EMOJI = "eyes"
HISTORY_NOTES = 20
# How many of the newest notes are read to find those HISTORY_NOTES people wrote.
NOTES_READ = 100
# A prompt carries the issue, not a book: very long texts are cut.
DESCRIPTION_CHARS = 20_000
NOTE_CHARS = 4_000


@dataclass(frozen=True)
class GitlabMentions:
    store: Store
    queue: JobQueue
    api: GitlabApi
    # Builds the platform's callback processor (bots.gitlab.reply.GitlabCallbackProcessor);
    # handed in by relay, since bots/ does not import processors/.
    new_processor: Callable[..., BaseModel]
    conversation_url: Callable[[str], str | None]
    mention: str
    trigger_label: str

    async def handle(self, job: Job) -> None:
        payload = GITLAB_EVENT_JOB.payload_of(job)
        delivery_id = payload.delivery_id
        # The worker runs each job in a task of its own: what is bound here stays in it.
        bind(delivery=delivery_id)
        bot = await self.api.bot_user()
        trigger = trigger_of(
            payload.event,
            json_object(payload.payload),
            mention=self.mention,
            label=self.trigger_label,
            bot_user_id=bot.id,
        )
        if trigger is None:
            MENTIONS.labels(platform=PLATFORM, outcome="not_a_trigger").inc()
            log.info("gitlab delivery %s: not a trigger after all (the bot's own?)", delivery_id)
            return
        place = Place(trigger.project_id, trigger.noteable, trigger.iid, trigger.discussion_id)
        # Names what the bot's notes answer: the note, or this delivery of a label.
        source = f"note-{trigger.note_id}" if trigger.note_id is not None else delivery_id
        level = await self.api.access_level(trigger.project_id, trigger.user_id)
        if level < DEVELOPER_ACCESS:
            await self.api.post_once(
                place,
                f"@{trigger.username} {permission_refusal(NEEDED_ACCESS)}",
                marker("refusal", source),
            )
            MENTIONS.labels(platform=PLATFORM, outcome="no_permission").inc()
            log.info(
                "gitlab %s: %s (access level %s) may not trigger the agent",
                trigger.thread_key,
                trigger.username,
                level,
            )
            return
        link = await find_link(self.store, PLATFORM, trigger.thread_key)
        await self.api.award_emoji(place, WORKING_EMOJI, note_id=trigger.note_id)
        conversation_id = (
            link.conversation_id if link else new_conversation_id(PLATFORM, delivery_id)
        )
        bind(conversation=conversation_id)
        where = "this thread" if trigger.discussion_id else f"this {trigger.noteable.noun}"
        ack = acknowledgement(
            self.conversation_url(conversation_id), continuing=link is not None, where=where
        )
        ack_note_id = await self.api.post_once(place, ack, marker("ack", source))
        item = await self.api.noteable(place)
        notes = await self.api.newest_notes(place, NOTES_READ)
        since = _cursor_value(link.cursor) if link else None
        history = _history(notes, bot, trigger, since)
        if link is None:
            text = _new_conversation_prompt(trigger, item, history, self.trigger_label)
        else:
            text = _follow_up_message(trigger, history, self.trigger_label)
        turn = Turn(
            platform=PLATFORM,
            thread_key=trigger.thread_key,
            delivery_id=delivery_id,
            conversation_id=conversation_id,
            text=text,
            processor=self.new_processor(
                project_id=trigger.project_id,
                noteable=trigger.noteable,
                iid=trigger.iid,
                discussion_id=trigger.discussion_id,
                note_id=trigger.note_id,
                username=trigger.username,
                ack_note_id=ack_note_id,
            ),
            tags=_tags(trigger),
            cursor=_newest_note_id(notes, trigger),
            received_at=job.created_at,
        )
        await record_turn(self.store, self.queue, turn, continuing=link is not None)


def _cursor_value(cursor: str | None) -> int | None:
    try:
        return int(cursor) if cursor else None
    except ValueError:
        return None


def _history(
    notes: list[dict[str, Any]], bot: GitlabUser, trigger: GitlabTrigger, since: int | None
) -> list[str]:
    """What people wrote (newest HISTORY_NOTES of it, oldest first), without the
    triggering note, system notes and the bot's own notes; for a follow-up only what
    came after the last turn's cursor."""
    lines = []
    for note in notes:
        note_id = note.get("id")
        author = note.get("author") or {}
        if (
            note.get("system")
            or author.get("id") == bot.id
            or note_id == trigger.note_id
            or not isinstance(note_id, int)
            or (since is not None and note_id <= since)
        ):
            continue
        name = author.get("username") or author.get("name") or "someone"
        lines.append(f"{name}: {_cut(str(note.get('body') or ''), NOTE_CHARS)}")
        if len(lines) == HISTORY_NOTES:
            break
    # The API gave them newest first.
    return lines[::-1]


def _newest_note_id(notes: list[dict[str, Any]], trigger: GitlabTrigger) -> str | None:
    """The cursor of this turn: the newest note the agent has now seen (note ids grow)."""
    ids = [note["id"] for note in notes if isinstance(note.get("id"), int)]
    if trigger.note_id is not None:
        ids.append(trigger.note_id)
    return str(max(ids)) if ids else None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " […]"


def reference(trigger: GitlabTrigger) -> str:
    """How GitLab people write it: #12 for an issue, !12 for a merge request."""
    sign = "#" if trigger.noteable is Noteable.ISSUE else "!"
    return f"{trigger.project_path}{sign}{trigger.iid}"


def _new_conversation_prompt(
    trigger: GitlabTrigger, item: dict[str, Any], history: list[str], label: str
) -> str:
    noun = trigger.noteable.noun
    if trigger.is_label:
        parts = [
            f'{trigger.username} added the label "{label}" to GitLab {noun} '
            f"{reference(trigger)}, asking you to work on it."
        ]
    else:
        parts = [
            f"{trigger.username} asked you in a comment on GitLab {noun} {reference(trigger)}:",
            trigger.text or f"(Nothing more than the mention: work on this {noun}.)",
        ]
    parts.append(_item_context(trigger, item))
    if history:
        parts.append("The discussion so far, oldest first:\n" + "\n".join(history))
    where = "thread" if trigger.discussion_id else noun
    parts.append(f"Your answer will be posted as a comment in that GitLab {where}.")
    return "\n\n".join(parts)


def _item_context(trigger: GitlabTrigger, item: dict[str, Any]) -> str:
    lines = [
        f"Title: {item.get('title') or '(none)'}",
        f"Repository: {trigger.project_path} (GitLab)",
    ]
    if item.get("web_url"):
        lines.append(f"URL: {item['web_url']}")
    if trigger.noteable is Noteable.MERGE_REQUEST:
        lines.append(
            f"Source branch: {item.get('source_branch') or '?'}; "
            f"target branch: {item.get('target_branch') or '?'}"
        )
    description = str(item.get("description") or "").strip()
    lines.append("Description:\n" + (_cut(description, DESCRIPTION_CHARS) or "(none)"))
    return "\n".join(lines)


def _follow_up_message(trigger: GitlabTrigger, history: list[str], label: str) -> str:
    noun = trigger.noteable.noun
    if trigger.is_label:
        parts = [
            f'{trigger.username} added the label "{label}" to GitLab {noun} '
            f"{reference(trigger)} again, asking you to carry on with it."
        ]
    else:
        parts = [
            f"{trigger.username} followed up on GitLab {noun} {reference(trigger)}:",
            trigger.text or f"(Nothing more than the mention: carry on with this {noun}.)",
        ]
    if history:
        parts.append("Notes since your last answer, oldest first:\n" + "\n".join(history))
    return "\n\n".join(parts)


def _tags(trigger: GitlabTrigger) -> dict[str, str]:
    # Agent-server tags: lowercase alphanumeric keys, values of at most 256 characters.
    return {
        "platform": PLATFORM,
        "project": trigger.project_path[:256],
        "iid": str(trigger.iid),
        "kind": trigger.noteable.value,
    }
