"""Post once: comments that a retried job finds again instead of posting twice.

GitHub and GitLab comments the bot posts end with an invisible marker (an HTML
comment, which neither renders). A job whose earlier attempt posted a comment but
lost the response looks for its marker before posting again.
"""

from __future__ import annotations

from typing import Protocol


def marker(kind: str, key: str) -> str:
    """The invisible tag of the bot's `kind` comment ("ack", "reply", "refusal") for `key`."""
    return f"<!-- agent-relay:{kind}:{key} -->"


class MarkedThread(Protocol):
    """A thread the bot writes in, whose comments can be searched for a marker."""

    async def find_marked(self, mark: str) -> int | None:
        """The id of the bot's comment that carries `mark`, if there is one."""
        ...

    async def post(self, body: str) -> int:
        """Post a comment; its id."""
        ...


async def post_once(thread: MarkedThread, text: str, mark: str, *, look_first: bool = True) -> int:
    """Post `text` with `mark` unless an earlier attempt did; the comment's id.

    `look_first=False` skips the search when the caller knows no attempt was made
    (it saved that an attempt starts before posting), sparing a listing.
    """
    if look_first:
        found = await thread.find_marked(mark)
        if found is not None:
            return found
    return await thread.post(f"{text}\n\n{mark}")
