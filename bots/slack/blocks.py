"""Block Kit of the relay's Slack messages: the controls people click.

Every control's action id starts with bots.slack.interactions.ACTION_PREFIX, which
is how the Bolt app knows the click is ours.
"""

from __future__ import annotations

from typing import Any

STOP_ACTION = "relay.stop"
# Slack's limit on a section's text.
SECTION_TEXT_CHARS = 3000


def status_blocks(text: str, *, stoppable: bool) -> list[dict[str, Any]]:
    """A status message's blocks: its text, and the Stop button while the turn runs."""
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_TEXT_CHARS]}}
    ]
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
