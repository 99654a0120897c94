"""The controls on a turn's Slack messages: the Stop button, and who may use them.

A turn's status message (its "on it" reply, bots.slack.job) carries a Stop button
until the turn ends. Whoever asked for a turn still running in the thread may use
the thread's controls, and so may the members in SLACK_APPROVERS; anyone else is
told so privately and nothing changes.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

from bots.slack import PLATFORM
from bots.slack.api import SlackTeam
from bots.slack.interactions import SlackInteraction, tell_privately
from bots.slack.reply import SlackCallbackProcessor
from bots.turns import Turns
from db.callbacks import active_callbacks
from db.conversation_links import find_link

log = logging.getLogger(__name__)

NOTHING_RUNNING = "Nothing is running in this thread."


@dataclass(frozen=True)
class SlackControls:
    """The handlers of the thread controls, and the rule of who may use them."""

    turns: Turns
    # Member ids who may use any thread's controls (SLACK_APPROVERS).
    approvers: Collection[str] = ()

    async def askers(self, interaction: SlackInteraction) -> set[str]:
        """The member ids who asked for the turns still running in the thread."""
        link = await find_link(self.turns.store, PLATFORM, interaction.thread_key)
        if link is None:
            return set()
        askers = set()
        for callback in await active_callbacks(self.turns.store, link.conversation_id):
            processor = callback.get_processor()
            if isinstance(processor, SlackCallbackProcessor):
                askers.add(processor.user)
        return askers

    async def may_steer(self, interaction: SlackInteraction) -> bool:
        """Whether the clicker may stop the thread's run or answer its approvals."""
        if interaction.user in self.approvers:
            return True
        return interaction.user in await self.askers(interaction)

    async def on_stop(self, interaction: SlackInteraction, team: SlackTeam) -> None:
        askers = await self.askers(interaction)
        if not askers:
            await tell_privately(team, interaction, NOTHING_RUNNING)
            return
        if interaction.user not in askers and interaction.user not in self.approvers:
            who = ", ".join(f"<@{user}>" for user in sorted(askers))
            await tell_privately(team, interaction, f"Only {who} or an approver can stop this run.")
            log.info("slack %s: %s may not stop it", interaction.thread_key, interaction.user)
            return
        await self.turns.stop(
            PLATFORM, interaction.thread_key, interaction.delivery_id, interaction.who
        )
