"""GithubCallbackProcessor: the agent's answer, as a comment where it was asked.

The row holds where the answer goes (installation, repository, issue or PR number,
review thread) and who asked, never a token: the installation's token is minted or
taken from the cache when the reply is delivered.
"""

from __future__ import annotations

from typing import ClassVar

from bots.github import PLATFORM
from bots.github.api import GithubApi, GithubThread
from bots.markers import marker, post_once
from bots.texts import approval_request_text, comment_answer, comment_approval_hint, status_text
from processors.base import Reply, ReplyingProcessor
from processors.confirmation import ApprovalRequest
from processors.context import ProcessorContext
from processors.status import TurnStatus

# GitHub refuses a comment body over 65,536 characters.
GITHUB_COMMENT_LIMIT = 65_536


class GithubCallbackProcessor(ReplyingProcessor):
    processor_kind: ClassVar[str] = PLATFORM
    installation_id: int
    repository: str
    number: int
    # The top comment of the review thread the mention was in; None: the issue or PR.
    review_thread_id: int | None = None
    asker: str
    # Set when GITHUB_EDIT_ACK_COMMENT was on: the "on it" comment becomes the answer.
    ack_comment_id: int | None = None
    # Saved before the answer is posted: a retry then first looks for the comment
    # an attempt whose response was lost may have posted.
    reply_attempted: bool = False
    # The "on it" comment, which shows the turn's status, and the marker it carries
    # (kept in every edit: a retried event job finds the comment by it).
    status_comment_id: int | None = None
    status_marker: str | None = None
    # BOT_MENTION, which an approval request tells people to answer with.
    bot_mention: str = "@openhands"

    # GitHub: at most one edit of a comment per 10 s.
    status_interval: ClassVar[float | None] = 10.0

    def has_status_message(self) -> bool:
        return self.status_comment_id is not None

    async def edit_status(self, status: TurnStatus, context: ProcessorContext) -> None:
        if self.status_comment_id is None or (status.final and self.ack_comment_id is not None):
            return  # GITHUB_EDIT_ACK_COMMENT: the answer itself replaces the status
        text = status_text(status)
        body = f"{text}\n\n{self.status_marker}" if self.status_marker else text
        await self._thread(context).edit(self.status_comment_id, body)

    async def post_approval(self, request: ApprovalRequest, context: ProcessorContext) -> str:
        text = approval_request_text(request, hint=comment_approval_hint(self.bot_mention))
        return str(await post_once(self._thread(context), text, _approval_marker(request)))

    async def edit_approval(
        self, request: ApprovalRequest, message_id: str, context: ProcessorContext
    ) -> None:
        text = approval_request_text(request, hint=comment_approval_hint(self.bot_mention))
        await self._thread(context).edit(int(message_id), f"{text}\n\n{_approval_marker(request)}")

    def _thread(self, context: ProcessorContext) -> GithubThread:
        api = context.platform(PLATFORM, GithubApi, "GitHub")
        return GithubThread(
            api, self.installation_id, self.repository, self.number, self.review_thread_id
        )

    async def deliver(self, reply: Reply, context: ProcessorContext) -> None:
        thread = self._thread(context)
        tag = marker("reply", reply.delivery_id)
        text = comment_answer(reply, self.asker, GITHUB_COMMENT_LIMIT - len(tag) - 2)
        if self.ack_comment_id is not None:
            # Editing is idempotent: a retry writes the same text again.
            await thread.edit(self.ack_comment_id, f"{text}\n\n{tag}")
            return
        # Saved before posting: only an attempt that may have posted looks first.
        look_first = self.reply_attempted
        self.reply_attempted = True
        await self.remember_delivery(reply, context)
        await post_once(thread, text, tag, look_first=look_first)


def _approval_marker(request: ApprovalRequest) -> str:
    return marker("approval", str(request.id))
