"""GithubCallbackProcessor: the agent's answer, as a comment where it was asked.

The row holds where the answer goes (installation, repository, issue or PR number,
review thread) and who asked, never a token: the installation's token is minted or
taken from the cache when the reply is delivered.
"""

from __future__ import annotations

from bots.github.api import GithubApi, GithubThread
from bots.github.triggers import PLATFORM
from bots.mentions import marker
from db.callbacks import register_processor_kind
from db.jobs import PermanentJobError
from processors.base import ProcessorContext, Reply, ReplyingProcessor, trim_to_limit

# GitHub refuses a comment body over 65,536 characters.
GITHUB_COMMENT_LIMIT = 65_536


@register_processor_kind("github")
class GithubCallbackProcessor(ReplyingProcessor):
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
        clients = github_clients(context)
        thread = GithubThread(
            self.installation_id, self.repository, self.number, self.review_thread_id
        )
        body = reply_body(reply, self.asker)
        if self.ack_comment_id is not None:
            # Editing is idempotent: a retry writes the same text again.
            await thread.edit(clients, self.ack_comment_id, body)
            return
        tag = marker("reply", reply.delivery_id)
        if self.reply_attempted and await thread.find_marked(clients, tag) is not None:
            return
        self.reply_attempted = True
        await self.remember_delivery(reply, context)
        await thread.post(clients, body)


def reply_body(reply: Reply, asker: str) -> str:
    """The answer as one GitHub comment: the asker mentioned, trimmed to the limit, with
    the invisible marker a retry looks for."""
    tag = marker("reply", reply.delivery_id)
    text = f"@{asker} {reply.summary}"
    if reply.url and reply.url not in reply.summary:
        text += f"\n\n[View the conversation]({reply.url})"
    return trim_to_limit(text, GITHUB_COMMENT_LIMIT - len(tag) - 2, reply.url) + f"\n\n{tag}"


def github_clients(context: ProcessorContext) -> GithubApi:
    clients = context.platforms.get(PLATFORM)
    if not isinstance(clients, GithubApi):
        raise PermanentJobError("GitHub is not configured in this process")
    return clients
