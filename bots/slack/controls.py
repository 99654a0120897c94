"""The controls on a turn's Slack messages: Stop, Approve and Reject, and who may use them.

A turn's status message (its "on it" reply, bots.slack.job) carries a Stop button
until the turn ends; an approval request (processors.approvals) carries Approve and
Reject (Reject asks for an optional reason in a modal first). Whoever asked for the
turn may use them, and so may the members in SLACK_APPROVERS; anyone else is told so
privately and nothing changes. An answer goes the way GitHub's and GitLab's do
(processors.approvals.answer_approval): the first one wins, once.
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
from db.approvals import PENDING, get_approval
from db.callbacks import active_callbacks
from db.conversation_links import find_link
from processors.approvals import answer_approval, turn_processor

log = logging.getLogger(__name__)

NOTHING_RUNNING = "Nothing is running in this thread."
ALREADY_ANSWERED = "That request was answered already; nothing changed."


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

    async def on_approve(self, interaction: SlackInteraction, team: SlackTeam) -> None:
        await self._answer(interaction, team, accept=True)

    async def on_reject(self, interaction: SlackInteraction, team: SlackTeam) -> None:
        """The Reject modal's submission (the button only opens the modal)."""
        await self._answer(interaction, team, accept=False)

    async def _answer(
        self, interaction: SlackInteraction, team: SlackTeam, *, accept: bool
    ) -> None:
        value = interaction.value or ""
        approval = await get_approval(self.turns.store, int(value)) if value.isdigit() else None
        if approval is None or approval.state != PENDING:
            await tell_privately(team, interaction, ALREADY_ANSWERED)
            return
        asker = await turn_processor(self.turns.store, approval)
        asked_by = asker.user if isinstance(asker, SlackCallbackProcessor) else None
        if interaction.user != asked_by and interaction.user not in self.approvers:
            who = f"<@{asked_by}>" if asked_by else "the person who asked"
            await tell_privately(
                team, interaction, f"Only {who} or an approver can answer this request."
            )
            log.info("slack %s: %s may not answer it", interaction.thread_key, interaction.user)
            return
        await answer_approval(
            self.turns.queue,
            approval_id=approval.id,
            accept=accept,
            reason=interaction.reason,
            who=interaction.who,
            delivery_id=f"slack:{interaction.delivery_id}",
        )
