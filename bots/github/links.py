"""Links to GitHub threads: the issue or pull request, or the review thread."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import quote

from bots.github import PLATFORM
from bots.links import Thread, ThreadLink
from db.store import Store

_GITHUB_KEY = re.compile(r"(?P<repo>[^#\s]+/[^#\s]+)#(?P<number>\d+)(?:/r(?P<review>\d+))?")


@dataclass(frozen=True)
class GithubLinks:
    """Issues, pull requests and review threads on GitHub (`web_url`)."""

    web_url: str
    platform: ClassVar[str] = PLATFORM
    title: ClassVar[str] = "GitHub"

    async def thread_links(self, store: Store, threads: Sequence[Thread]) -> list[ThreadLink]:
        return [thread_link(thread.key, self.web_url) for thread in threads]


def thread_link(thread_key: str, github_url: str) -> ThreadLink:
    """`owner/repo#n` (or `owner/repo#n/r{id}`, a review thread) -> label and web URL."""
    match = _GITHUB_KEY.fullmatch(thread_key)
    if match is None:
        return ThreadLink(thread_key, None)
    repo, number, review = match.group("repo", "number", "review")
    base = f"{github_url.rstrip('/')}/{quote(repo, safe='/')}"
    if review is not None:
        return ThreadLink(
            f"{repo}#{number} (review thread)", f"{base}/pull/{number}#discussion_r{review}"
        )
    # GitHub sends /issues/{n} of a pull request on to /pull/{n}.
    return ThreadLink(f"{repo}#{number}", f"{base}/issues/{number}")
