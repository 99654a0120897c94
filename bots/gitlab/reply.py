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
from typing import ClassVar

from bots.gitlab import PLATFORM
from bots.gitlab.api import GitlabApi, GitlabThread, Place
from bots.gitlab.triggers import Noteable
from bots.markers import marker, post_once
from bots.texts import approval_request_text, comment_answer, comment_approval_hint, status_text
from processors.base import Reply, ReplyingProcessor
from processors.confirmation import ApprovalRequest
from processors.context import ProcessorContext
from processors.status import TurnStatus

log = logging.getLogger(__name__)

# GitLab refuses notes over 1,000,000 characters.
NOTE_LIMIT = 1_000_000


class GitlabCallbackProcessor(ReplyingProcessor):
    processor_kind: ClassVar[str] = PLATFORM
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
    # The marker the "on it" note carries (kept in every edit of the status).
    status_marker: str | None = None
    # BOT_MENTION, which an approval request tells people to answer with.
    bot_mention: str = "@openhands"

    # GitLab: at most one edit of a note per 10 s.
    status_interval: ClassVar[float | None] = 10.0

    def has_status_message(self) -> bool:
        return self.ack_note_id is not None

    async def edit_status(self, status: TurnStatus, context: ProcessorContext) -> None:
        if self.ack_note_id is None:
            return
        api = context.platform(PLATFORM, GitlabApi, "GitLab")
        place = Place(self.project_id, self.noteable, self.iid, self.discussion_id)
        text = status_text(status)
        body = f"{text}\n\n{self.status_marker}" if self.status_marker else text
        await api.edit_note(place, self.ack_note_id, body)

    def _place(self) -> Place:
        return Place(self.project_id, self.noteable, self.iid, self.discussion_id)

    async def post_approval(self, request: ApprovalRequest, context: ProcessorContext) -> str:
        api = context.platform(PLATFORM, GitlabApi, "GitLab")
        text = approval_request_text(request, hint=comment_approval_hint(self.bot_mention))
        mark = marker("approval", str(request.id))
        return str(await post_once(GitlabThread(api, self._place()), text, mark))

    async def edit_approval(
        self, request: ApprovalRequest, message_id: str, context: ProcessorContext
    ) -> None:
        api = context.platform(PLATFORM, GitlabApi, "GitLab")
        text = approval_request_text(request, hint=comment_approval_hint(self.bot_mention))
        mark = marker("approval", str(request.id))
        await api.edit_note(self._place(), int(message_id), f"{text}\n\n{mark}")

    async def deliver(self, reply: Reply, context: ProcessorContext) -> None:
        if self.reply_note_id is not None:
            return
        api = context.platform(PLATFORM, GitlabApi, "GitLab")
        place = Place(self.project_id, self.noteable, self.iid, self.discussion_id)
        mark = marker("reply", str(reply.callback_id))
        # post_once puts two newlines and the marker after the text.
        text = comment_answer(reply, self.username, NOTE_LIMIT - len(mark) - 2)
        self.reply_note_id = await post_once(GitlabThread(api, place), text, mark)
        await self.remember_delivery(reply, context)
        log.info("callback %s: answered in gitlab note %s", reply.callback_id, self.reply_note_id)
