"""Block Kit of the relay's Slack messages: their text and the controls people click.

Every control's action id starts with bots.slack.interactions.ACTION_PREFIX, which
is how the Bolt app knows the click is ours.
"""

from __future__ import annotations

from typing import Any

from processors.confirmation import ApprovalRequest

STOP_ACTION = "relay.stop"
# The buttons of an approval request; each one's value is the approval's id.
APPROVE_ACTION = "relay.approve"
REJECT_ACTION = "relay.reject"
# The repository picker's menu (a value per repository) and its "No repository" button.
PICK_ACTION = "relay.pick_repository"
NO_REPOSITORY_ACTION = "relay.no_repository"
# Slack's limit on a section's text.
SECTION_TEXT_CHARS = 3000


def text_section(text: str) -> dict[str, Any]:
    """A block of mrkdwn text, cut to what Slack takes."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_TEXT_CHARS]}}


def settled_blocks(text: str) -> list[dict[str, Any]]:
    """A message whose controls have done their work: its text alone."""
    return [text_section(text)]


def status_blocks(text: str, *, stoppable: bool) -> list[dict[str, Any]]:
    """A status message's blocks: its text, and the Stop button while the turn runs."""
    blocks = settled_blocks(text)
    if stoppable:
        stop = {
            "type": "button",
            "action_id": STOP_ACTION,
            "text": {"type": "plain_text", "text": "Stop"},
            "style": "danger",
            "value": "stop",
            # One click too many would end a run of an hour: Slack asks first.
            "confirm": {
                "title": {"type": "plain_text", "text": "Stop the agent?"},
                "text": {
                    "type": "mrkdwn",
                    "text": "It stops after its current step; what it pushed stays.",
                },
                "confirm": {"type": "plain_text", "text": "Stop"},
                "deny": {"type": "plain_text", "text": "Keep going"},
            },
        }
        blocks.append({"type": "actions", "elements": [stop]})
    return blocks


def approval_blocks(request: ApprovalRequest, text: str) -> list[dict[str, Any]]:
    """A section with the request; while it waits, an Approve and a Reject button."""
    blocks = settled_blocks(text)
    if request.waiting:
        value = str(request.id)
        blocks.append(
            {
                "type": "actions",
                "block_id": f"relay.approval.{request.id}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE_ACTION,
                        "text": {"type": "plain_text", "text": "Approve"},
                        "style": "primary",
                        "value": value,
                    },
                    {
                        "type": "button",
                        "action_id": REJECT_ACTION,
                        "text": {"type": "plain_text", "text": "Reject"},
                        "style": "danger",
                        "value": value,
                    },
                ],
            }
        )
    return blocks
