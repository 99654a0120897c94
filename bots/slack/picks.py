"""A click on a repository picker (bots/slack/repositories.py): the mention that waited
for it runs.

Only the person who asked may pick; anyone else is told so privately and nothing
changes. The pick is claimed in the transaction that queues the mention's
`slack.event` job again, carrying the choice (`repository_choice`), under an
idempotency key of its own: a second pick, or the same click delivered twice, finds
it claimed and starts nothing. Then the picker is edited to say what was picked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bots.slack import PLATFORM
from bots.slack.api import SlackTeam
from bots.slack.blocks import settled_blocks
from bots.slack.interactions import SlackInteraction, tell_privately
from bots.slack.job import SLACK_EVENT_JOB
from bots.slack.repositories import (
    SlackRepositories,
    parse_choice,
    picked_text,
    picker_ref,
    refusal_text,
)
from db.conversation_links import find_link
from db.jobs import JobQueue
from db.repository_choices import choice_at, claim_choice, get_choice

log = logging.getLogger(__name__)

OVERTAKEN_TEXT = (
    "No pick needed any more: a later mention in this thread started the work."
    " Mention me again to continue it."
)


@dataclass(frozen=True)
class RepositoryPicks:
    repositories: SlackRepositories
    queue: JobQueue

    async def on_pick(self, click: SlackInteraction, team: SlackTeam) -> None:
        """A repository picked from the menu."""
        if not click.value:
            # A menu cleared, or a payload without its option: no pick.
            return
        await self._pick(click, team, click.value)

    async def on_no_repository(self, click: SlackInteraction, team: SlackTeam) -> None:
        """The "No repository" button."""
        await self._pick(click, team, "")

    async def _pick(self, click: SlackInteraction, team: SlackTeam, value: str) -> None:
        store = self.repositories.store
        if click.message_ts is None:
            return  # not a message's control (a modal): no picker of ours
        ref = picker_ref(click.team_id, click.channel, click.message_ts)
        pending = await choice_at(store, PLATFORM, ref)
        if pending is None:
            log.info("slack: a pick on %s, which holds no waiting mention", ref)
            return
        if click.user != pending.asker:
            await tell_privately(team, click, refusal_text(pending.asker))
            log.info("slack %s: %s may not pick; refused", pending.thread_key, click.user)
            return
        if await self._overtaken(click, team, pending.thread_key, pending.delivery_id):
            return
        choice = parse_choice(value, self.repositories.hosts())
        if choice is None:
            log.warning("slack %s: a pick of %r, which was not offered", pending.thread_key, value)
            return
        async with store.transaction():
            claimed = await claim_choice(
                store, PLATFORM, pending.delivery_id, value, chosen_by=click.user
            )
            if claimed:
                payload = SLACK_EVENT_JOB.payload.model_validate_json(pending.payload)
                await self.queue.enqueue(
                    SLACK_EVENT_JOB,
                    payload.model_copy(update={"repository_choice": value}),
                    key=f"{PLATFORM}:{pending.thread_key}",
                    idempotency_key=f"{PLATFORM}.pick:{pending.delivery_id}",
                )
        if not claimed:
            stored = await get_choice(store, PLATFORM, pending.delivery_id)
            if stored is None or (stored.chosen, stored.chosen_by) != (value, click.user):
                log.info("slack %s: picked before; this pick changes nothing", pending.thread_key)
                return
            # The same pick again (this job run again after the claim): the picker
            # may not say so yet.
            choice = parse_choice(stored.chosen or "", self.repositories.hosts()) or choice
        await _settle(team, click, picked_text(choice, click.user))
        log.info(
            "slack %s: %s picked %s", pending.thread_key, click.user, choice.repository or "none"
        )

    async def _overtaken(
        self, click: SlackInteraction, team: SlackTeam, thread_key: str, delivery_id: str
    ) -> bool:
        """Whether a later mention started the thread's conversation meanwhile (it named
        its repository): the picker is then settled, and the pick starts nothing."""
        store = self.repositories.store
        if await find_link(store, PLATFORM, thread_key) is None:
            return False
        stored = await get_choice(store, PLATFORM, delivery_id)
        if stored is not None and stored.chosen is not None:
            return False  # this mention's own pick started it: the same pick again
        await _settle(team, click, OVERTAKEN_TEXT)
        log.info("slack %s: a pick after the thread's conversation started; none", thread_key)
        return True


async def _settle(team: SlackTeam, click: SlackInteraction, text: str) -> None:
    """The picker shows `text` and no controls any more."""
    assert click.message_ts is not None  # a message's control (checked by _pick)
    await team.call(
        "chat.update",
        channel=click.channel,
        ts=click.message_ts,
        text=text,
        blocks=settled_blocks(text),
    )
