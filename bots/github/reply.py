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
from bots.texts import comment_answer
from processors.base import Reply, ReplyingProcessor
from processors.context import ProcessorContext

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

    async def deliver(self, reply: Reply, context: ProcessorContext) -> None:
        api = context.platform(PLATFORM, GithubApi, "GitHub")
        thread = GithubThread(
            api, self.installation_id, self.repository, self.number, self.review_thread_id
        )
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
