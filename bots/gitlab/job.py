"""The `gitlab.event` job: from an accepted GitLab delivery to a recorded agent turn.

Runs in a worker, keyed by issue or merge request, so mentions on one of them are
handled in order. It decides again (now knowing the bot's own user), checks that the
person may trigger the agent (Developer or above, `members/all`), acknowledges (an
`eyes` award on the note, or on the issue/MR for a label, and an "on it" reply in the
same discussion with the conversation link), gathers the context (title,
description, the newest notes, an MR's branches) and hands the turn to the shared
turn sequence (bots.turns).
Every step may run again after a crash: an award already there is fine, the notes
the bot posts carry a hidden marker that a retry finds, and the turn is recorded
once per delivery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from agent.checkout import Requester, WorkspaceRequest
from bots.gitlab import PLATFORM
from bots.gitlab.api import (
    DEVELOPER_ACCESS,
    GitlabApi,
    GitlabThread,
    GitlabUser,
    Place,
    private_commit_email,
)
from bots.gitlab.inbound import GITLAB_EVENT_JOB
from bots.gitlab.reply import GitlabCallbackProcessor
from bots.gitlab.triggers import GitlabTrigger, Noteable, trigger_of
from bots.hygiene import visible_text
from bots.markers import marker, post_once
from bots.texts import WORKING_REACTION, markdown_link, request_title, shorten
from bots.turns import Context, Turns, count_refusal, refuse
from db.job_kinds import Job, json_object
from db.logcontext import bind

log = logging.getLogger(__name__)

# What the refusal says is needed: GitLab's role of access_level 30 and above.
NEEDED_ACCESS = "the Developer role or above"

HISTORY_NOTES = 20
# How many of the newest notes are read to find those HISTORY_NOTES people wrote.
NOTES_READ = 100
# A prompt carries the issue, not a book: very long texts are cut.
DESCRIPTION_CHARS = 20_000
NOTE_CHARS = 4_000


@dataclass(frozen=True)
class GitlabEventJob:
    turns: Turns
    api: GitlabApi
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
            count_refusal(PLATFORM, "not_a_trigger")
            log.info("gitlab delivery %s: not a trigger after all (the bot's own?)", delivery_id)
            return
        place = Place(trigger.project_id, trigger.noteable, trigger.iid, trigger.discussion_id)
        mention = GitlabMention(
            GitlabThread(self.api, place),
            trigger,
            bot,
            delivery_id,
            self.trigger_label,
            bot_mention=self.mention,
        )
        level = await self.api.access_level(trigger.project_id, trigger.user_id)
        if level < DEVELOPER_ACCESS:
            await refuse(
                mention.thread,
                PLATFORM,
                trigger.thread_key,
                trigger.username,
                NEEDED_ACCESS,
                key=mention.source,
                detail=f" (access level {level})",
            )
            return
        who = f"@{trigger.username}"
        if await self.turns.command(
            mention.thread, PLATFORM, trigger.thread_key, mention.source, who, trigger.text
        ):
            return
        await self.turns.take(mention, received_at=job.created_at)


class GitlabMention:
    """A GitLab mention as the shared turn sequence (bots.turns) speaks to it."""

    platform = PLATFORM
    link_style = staticmethod(markdown_link)

    def __init__(
        self,
        thread: GitlabThread,
        trigger: GitlabTrigger,
        bot: GitlabUser,
        delivery_id: str,
        label: str,
        *,
        bot_mention: str = "@openhands",
    ) -> None:
        self.thread = thread
        self.trigger = trigger
        self.bot = bot
        self.delivery_id = delivery_id
        self.label = label
        self.bot_mention = bot_mention
        self.thread_key = trigger.thread_key
        self.answer_place = (
            "this thread" if trigger.discussion_id else f"this {trigger.noteable.noun}"
        )
        # Names what the bot's notes answer: the note, or this delivery of a label.
        self.source = f"note-{trigger.note_id}" if trigger.note_id is not None else delivery_id
        self.ack_note_id: int | None = None
        self.item: dict[str, Any] = {}

    async def react(self) -> None:
        await self.thread.api.award_emoji(
            self.thread.place, WORKING_REACTION, note_id=self.trigger.note_id
        )

    async def acknowledge(self, text: str) -> None:
        self.ack_note_id = await post_once(self.thread, text, marker("ack", self.source))

    async def context(self, since: str | None) -> Context:
        api, place = self.thread.api, self.thread.place
        self.item = await api.noteable(place)
        notes = await api.newest_notes(place, NOTES_READ)
        people = _people_notes(notes, self.bot, self.trigger, _cursor_value(since))
        return Context(
            history=await _history(api, self.trigger.project_id, people),
            cursor=_newest_note_id(notes, self.trigger),
        )

    def prompt(self, context: Context) -> str:
        return _new_conversation_prompt(self.trigger, self.item, context.history, self.label)

    def follow_up(self, context: Context) -> str:
        return _follow_up_message(self.trigger, context.history, self.label)

    def processor(self) -> GitlabCallbackProcessor:
        return GitlabCallbackProcessor.of(
            self.trigger,
            ack_note_id=self.ack_note_id,
            status_marker=marker("ack", self.source),
            bot_mention=self.bot_mention,
        )

    def workspace(self) -> WorkspaceRequest:
        trigger = self.trigger
        is_request = trigger.noteable is Noteable.MERGE_REQUEST
        return WorkspaceRequest(
            repository=trigger.project_path,
            host=PLATFORM,
            locator=str(trigger.project_id),
            issue_number=None if is_request else trigger.iid,
            change_request_number=trigger.iid if is_request else None,
            # The issue's title names the change better than "please fix this".
            title=request_title(str(self.item.get("title") or ""), trigger.text),
            requester=Requester(
                login=trigger.username,
                platform=PLATFORM,
                name=trigger.username,
                # GitLab's private commit email links the co-authored commit to them.
                email=private_commit_email(
                    self.thread.api.gitlab_url, trigger.user_id, trigger.username
                ),
            ),
            thread_url=self.item.get("web_url"),
        )

    def tags(self) -> dict[str, str]:
        trigger = self.trigger
        return {
            "platform": PLATFORM,
            "project": trigger.project_path,
            "iid": str(trigger.iid),
            "kind": trigger.noteable.value,
        }


def _cursor_value(cursor: str | None) -> int | None:
    try:
        return int(cursor) if cursor else None
    except ValueError:
        return None


def _people_notes(
    notes: list[dict[str, Any]], bot: GitlabUser, trigger: GitlabTrigger, since: int | None
) -> list[dict[str, Any]]:
    """What people wrote (the newest HISTORY_NOTES notes, oldest first), without the
    triggering note, system notes and the bot's own notes; for a follow-up only what
    came after the last turn's cursor."""
    kept = []
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
        kept.append(note)
        if len(kept) == HISTORY_NOTES:
            break
    # The API gave them newest first.
    return kept[::-1]


async def _history(api: GitlabApi, project_id: int, notes: list[dict[str, Any]]) -> list[str]:
    """One line per note; authors below Developer, who may not change the project,
    are labelled as outside contributors (their access asked once each)."""
    levels: dict[int, int] = {}
    lines = []
    for note in notes:
        author = note.get("author") or {}
        name = author.get("username") or author.get("name") or "someone"
        author_id = author.get("id")
        if isinstance(author_id, int) and author_id not in levels:
            levels[author_id] = await api.access_level(project_id, author_id)
        if levels.get(author_id if isinstance(author_id, int) else -1, 0) < DEVELOPER_ACCESS:
            name = f"{name} (outside contributor)"
        body = visible_text(str(note.get("body") or ""))
        lines.append(f"{name}: {shorten(body, NOTE_CHARS)}")
    return lines


def _newest_note_id(notes: list[dict[str, Any]], trigger: GitlabTrigger) -> str | None:
    """The cursor of this turn: the newest note the agent has now seen (note ids grow)."""
    ids = [note["id"] for note in notes if isinstance(note.get("id"), int)]
    if trigger.note_id is not None:
        ids.append(trigger.note_id)
    return str(max(ids)) if ids else None


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
            visible_text(trigger.text) or f"(Nothing more than the mention: work on this {noun}.)",
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
    description = visible_text(str(item.get("description") or "")).strip()
    lines.append("Description:\n" + (shorten(description, DESCRIPTION_CHARS) or "(none)"))
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
            visible_text(trigger.text)
            or f"(Nothing more than the mention: carry on with this {noun}.)",
        ]
    if history:
        parts.append("Notes since your last answer, oldest first:\n" + "\n".join(history))
    return "\n\n".join(parts)
