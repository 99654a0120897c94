"""Links to platform threads, as the status page lists recent mentions: each platform
turns its thread keys into a label and a web address (bots/<platform>/links.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from db.store import Store


@dataclass(frozen=True)
class Thread:
    """A platform thread with a conversation (a row of conversation_links)."""

    key: str
    conversation_id: str


@dataclass(frozen=True)
class ThreadLink:
    label: str
    # None when the key says too little to point anywhere.
    url: str | None


class ThreadLinks(Protocol):
    """One platform's links: its name in thread keys and links, its title on pages."""

    @property
    def platform(self) -> str: ...

    @property
    def title(self) -> str: ...

    async def thread_links(self, store: Store, threads: Sequence[Thread]) -> list[ThreadLink]:
        """One link per thread, in order."""
        ...
