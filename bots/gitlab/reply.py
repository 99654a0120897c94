"""GitlabCallbackProcessor: the agent's answer, posted where the GitLab request was made.

A mention in a note is answered in that note's discussion; a label trigger with a
new note on the issue or merge request. The row holds only where the answer goes
(project, issue or MR, discussion, who asked), never a token: the process's GitLab
client (GITLAB_TOKEN) is taken from the context when the reply is delivered.

One reply per callback, also when the reply job runs again: the posted note's id is
saved in the row, and the note carries a hidden marker, so an attempt whose POST
reached GitLab but whose answer was lost finds that note instead of posting again.
"""

from __future__ import annotations

import logging

from bots.gitlab.api import GitlabApi, Place
from bots.gitlab.triggers import PLATFORM, Noteable
from bots.mentions import marker
from db.callbacks import register_processor_kind
from db.jobs import PermanentJobError
from processors.base import ProcessorContext, Reply, ReplyingProcessor, trim_to_limit

log = logging.getLogger(__name__)

# GitLab refuses notes over 1,000,000 characters.
NOTE_LIMIT = 1_000_000


@register_processor_kind("gitlab")
class GitlabCallbackProcessor(ReplyingProcessor):
    project_id: int
    noteable: Noteable
    iid: int
    # The triggering note's discussion; None for a label trigger (a new note).
    discussion_id: str | None = None
    note_id: int | None = None
    username: str
    ack_note_id: int | None = None
    # The answer's note, once posted.
    reply_note_id: int | None = None

    async def deliver(self, reply: Reply, context: ProcessorContext) -> None:
        if self.reply_note_id is not None:
            return
        api = gitlab_api(context)
        place = Place(self.project_id, self.noteable, self.iid, self.discussion_id)
        mark = marker("reply", str(reply.callback_id))
        text = reply_text(reply, self.username, mark)
        self.reply_note_id = await api.post_once(place, text, mark)
        await self.remember_delivery(reply, context)
        log.info("callback %s: answered in gitlab note %s", reply.callback_id, self.reply_note_id)


def reply_text(reply: Reply, username: str, mark: str = "") -> str:
    """The answer as one note: the asker mentioned, the link kept, trimmed to fit
    together with the marker that follows it."""
    text = f"@{username} {reply.summary}"
    if reply.url and reply.url not in reply.summary:
        text += f"\n\n[View the conversation]({reply.url})"
    # post_once puts two newlines and the marker after the text.
    return trim_to_limit(text, NOTE_LIMIT - len(mark) - 2, reply.url)


def gitlab_api(context: ProcessorContext) -> GitlabApi:
    api = context.platforms.get(PLATFORM)
    if not isinstance(api, GitlabApi):
        raise PermanentJobError("GitLab is not configured in this process")
    return api
