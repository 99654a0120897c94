"""Links to Slack threads: Slack's documented redirect to the thread's channel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar
from urllib.parse import urlencode

from bots.links import Thread, ThreadLink
from bots.slack import PLATFORM
from db.store import Store

_SLACK_WEB = "https://slack.com"


class SlackLinks:
    """Slack threads, by their channel: the thread keys name no workspace domain."""

    platform: ClassVar[str] = PLATFORM
    title: ClassVar[str] = "Slack"

    async def thread_links(self, store: Store, threads: Sequence[Thread]) -> list[ThreadLink]:
        return [thread_link(thread.key) for thread in threads]


def thread_link(thread_key: str) -> ThreadLink:
    """`{team}:{channel}:{thread_ts}` -> a label and Slack's redirect to the channel
    (a thread permalink needs the workspace's domain, which is not stored)."""
    team, _, rest = thread_key.partition(":")
    channel, _, thread_ts = rest.partition(":")
    if not (team and channel and thread_ts):
        return ThreadLink(thread_key, None)
    query = urlencode({"team": team, "channel": channel})
    return ThreadLink(f"{channel} thread {thread_ts}", f"{_SLACK_WEB}/app_redirect?{query}")
