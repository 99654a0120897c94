"""Slack interactions: the buttons, menus and modals agent-relay puts in its threads.

Slack posts an interaction (a click on a button, a choice in a menu, a submitted
modal) to the same request URL as events, and Bolt verifies it the same way. Every
control of ours has an action id (a modal: a callback id) starting with
`ACTION_PREFIX`. The listener does what must happen within Slack's 3 seconds and
nothing else: it records the interaction in the delivery ledger and queues a
`slack.interaction` job keyed by the thread, in one transaction, then acknowledges
(process_before_response). A relay killed after the acknowledgement finds the job
after restart; a payload Slack sends twice finds its id in the ledger. The handler
registered for the action id runs in the job, in turn with the thread's mentions.

Controls that open a modal (a Reject with a reason) open it in the listener, since
the trigger id they need expires in 3 seconds; opening records nothing, and the
modal's submission is the interaction that counts.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.web.async_client import AsyncWebClient

from bots.intake import Delivery, Intake, count, record_and_queue
from bots.slack import PLATFORM
from bots.slack.api import SlackApi, SlackTeam
from bots.slack.triggers import thread_key
from db.job_kinds import Job, JobKind
from db.jobs import JobQueue
from db.logcontext import bind
from db.store import Store

log = logging.getLogger(__name__)

ACTION_PREFIX = "relay."
_OUR_ACTIONS = re.compile(rf"^{re.escape(ACTION_PREFIX)}")
# The one text input of a modal of ours (a Reject's reason).
REASON_BLOCK = "reason"
REASON_INPUT = "reason"


class SlackInteraction(BaseModel):
    """One click, choice or submitted modal, as the handlers see it."""

    team_id: str
    enterprise_id: str | None = None
    # Who clicked (a member id).
    user: str
    # The control's action id (a modal: its callback id).
    action_id: str
    # The button's value, or the chosen option's.
    value: str | None = None
    channel: str
    # The message that holds the control, and its thread.
    message_ts: str | None = None
    thread_ts: str
    # What was typed into a modal's text input.
    reason: str | None = None
    # Unique per interaction: the ledger's id, and the handlers' idempotency key.
    delivery_id: str

    @property
    def thread_key(self) -> str:
        return thread_key(self.team_id, self.channel, self.thread_ts)

    @property
    def who(self) -> str:
        """The clicker as Slack writes a person in a message."""
        return f"<@{self.user}>"


SLACK_INTERACTION_JOB = JobKind("slack.interaction", SlackInteraction)

InteractionHandler = Callable[[SlackInteraction, SlackTeam], Awaitable[None]]


@dataclass(frozen=True)
class Modal:
    """A control that asks for a reason first: the modal it opens."""

    title: str
    label: str
    submit: str
    # Whether the reason may be left empty.
    optional: bool = True


def interaction_of(body: Mapping[str, Any]) -> SlackInteraction | None:
    """The interaction a block_actions or view_submission payload carries; None for
    a payload that is not one of ours or lacks what a handler needs."""
    team = _id(body.get("team"))
    user = _id(body.get("user"))
    enterprise = _id(body.get("enterprise"))
    if team is None or user is None:
        return None
    if body.get("type") == "block_actions":
        actions = body.get("actions") or []
        action = actions[0] if actions and isinstance(actions[0], dict) else {}
        action_id = action.get("action_id")
        container = body.get("container") or {}
        message = body.get("message") or {}
        channel = container.get("channel_id") or _id(body.get("channel"))
        message_ts = container.get("message_ts") or message.get("ts")
        thread_ts = container.get("thread_ts") or message.get("thread_ts") or message_ts
        clicked = action.get("action_ts")
        if not (isinstance(action_id, str) and channel and thread_ts and clicked):
            return None
        selected = action.get("selected_option") or {}
        return SlackInteraction(
            team_id=team,
            enterprise_id=enterprise,
            user=user,
            action_id=action_id,
            value=action.get("value") or selected.get("value"),
            channel=str(channel),
            message_ts=str(message_ts) if message_ts else None,
            thread_ts=str(thread_ts),
            delivery_id=f"action:{team}:{user}:{clicked}",
        )
    if body.get("type") == "view_submission":
        view = body.get("view") or {}
        try:
            where = json.loads(view.get("private_metadata") or "")
        except ValueError:
            return None
        if not isinstance(where, dict) or not where.get("channel") or not where.get("thread_ts"):
            return None
        values = ((view.get("state") or {}).get("values") or {}).get(REASON_BLOCK) or {}
        reason = (values.get(REASON_INPUT) or {}).get("value")
        return SlackInteraction(
            team_id=team,
            enterprise_id=enterprise,
            user=user,
            action_id=str(view.get("callback_id") or ""),
            value=where.get("value"),
            channel=str(where["channel"]),
            message_ts=where.get("message_ts"),
            thread_ts=str(where["thread_ts"]),
            reason=reason.strip() if isinstance(reason, str) and reason.strip() else None,
            # A modal is submitted once; its view id names the submission.
            delivery_id=f"view:{team}:{view.get('id')}",
        )
    return None


def _id(part: Any) -> str | None:
    value = part.get("id") if isinstance(part, dict) else None
    return value if isinstance(value, str) and value else None


def add_interaction_listeners(
    app: AsyncApp, store: Store, queue: JobQueue, modals: Mapping[str, Modal]
) -> None:
    """Bolt listeners for every control and modal of ours (ACTION_PREFIX)."""

    async def record(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        interaction = interaction_of(body)
        if interaction is None:
            count(PLATFORM, Intake.IGNORED)
            await ack()
            return
        modal = modals.get(interaction.action_id) if body.get("type") == "block_actions" else None
        if modal is not None:
            await ack()
            await _open_modal(client, body, interaction, modal)
            return
        await record_and_queue(
            store,
            queue,
            Delivery(
                platform=PLATFORM,
                delivery_id=interaction.delivery_id,
                description=interaction.action_id,
                job_kind=SLACK_INTERACTION_JOB,
                payload=interaction,
                # The thread's key, as its mentions': they take turns.
                job_key=f"{PLATFORM}:{interaction.thread_key}",
                noun="interaction",
            ),
        )
        await ack()

    app.action(_OUR_ACTIONS)(record)
    app.view(_OUR_ACTIONS)(record)


async def _open_modal(
    client: AsyncWebClient, body: Mapping[str, Any], interaction: SlackInteraction, modal: Modal
) -> None:
    """The modal a control asks for its reason in; its submission carries where it was
    clicked (private metadata) back to the listener. A modal that does not open (the
    trigger id expired) changes nothing: the person clicks again."""
    where = {
        "channel": interaction.channel,
        "thread_ts": interaction.thread_ts,
        "message_ts": interaction.message_ts,
        "value": interaction.value,
    }
    text_input: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": REASON_INPUT,
        "multiline": True,
        "max_length": 1000,
    }
    view = {
        "type": "modal",
        "callback_id": interaction.action_id,
        "private_metadata": json.dumps(where),
        "title": {"type": "plain_text", "text": modal.title},
        "submit": {"type": "plain_text", "text": modal.submit},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "optional": modal.optional,
                "label": {"type": "plain_text", "text": modal.label},
                "element": text_input,
            }
        ],
    }
    try:
        await client.views_open(trigger_id=str(body.get("trigger_id") or ""), view=view)
    except Exception as exc:  # the click is lost, not the work: nothing was recorded
        log.warning("slack: modal for %s not opened: %s", interaction.action_id, exc)


@dataclass(frozen=True)
class SlackInteractionJob:
    """Runs the handler registered for an interaction's action id."""

    api: SlackApi
    handlers: Mapping[str, InteractionHandler]

    async def handle(self, job: Job) -> None:
        interaction = SLACK_INTERACTION_JOB.payload_of(job)
        bind(delivery=interaction.delivery_id)
        handler = self.handlers.get(interaction.action_id)
        if handler is None:
            log.info("slack: no handler for %s; ignored", interaction.action_id)
            return
        team = await self.api.team(interaction.team_id, interaction.enterprise_id)
        await handler(interaction, team)


async def tell_privately(team: SlackTeam, interaction: SlackInteraction, text: str) -> None:
    """A message only the clicker sees, in the thread of the control (a refusal)."""
    await team.call(
        "chat.postEphemeral",
        channel=interaction.channel,
        user=interaction.user,
        thread_ts=interaction.thread_ts,
        text=text,
    )
