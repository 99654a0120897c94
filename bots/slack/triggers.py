"""Which Slack events ask the agent for something (pure functions, no I/O).

Triggers: an `app_mention` (in a channel or a thread), and a `message` in a DM with
the app (`channel_type: im`), where no mention is needed. Never: messages of bots
(the app itself included), and subtypes (edits, deletions, joins, bot messages...)
other than a message with files and a thread reply also sent to the channel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Subtypes that are still a person writing something new: a message with files, and
# a thread reply also sent to the channel. Edits, deletions, joins... are not.
_PERSON_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
_USER_MENTION = re.compile(r"<@(?P<user>[A-Z0-9]+)(?:\|[^>]*)?>")


@dataclass(frozen=True)
class SlackTrigger:
    team_id: str
    channel: str
    user: str
    # The triggering message, and the thread it belongs to (its own ts when it
    # starts one): answers go into that thread.
    ts: str
    thread_ts: str
    is_dm: bool
    # The request with the bot's mention taken out; "" when there was nothing else.
    text: str

    @property
    def thread_key(self) -> str:
        return thread_key(self.team_id, self.channel, self.thread_ts)


def thread_key(team_id: str, channel: str, thread_ts: str) -> str:
    """`{team_id}:{channel}:{thread_ts}`; a message that starts a thread gives its own ts."""
    return f"{team_id}:{channel}:{thread_ts}"


def trigger_of(event: dict[str, Any], team_id: str, bot_user_id: str | None) -> SlackTrigger | None:
    """The trigger an Events API event carries, or None when it asks nothing of the agent."""
    kind = event.get("type")
    if kind not in ("app_mention", "message"):
        return None
    if (
        event.get("subtype") not in _PERSON_SUBTYPES
        or event.get("bot_id")
        or event.get("bot_profile")
    ):
        return None
    user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    if not (isinstance(user, str) and isinstance(channel, str) and isinstance(ts, str)):
        return None
    if bot_user_id is not None and user == bot_user_id:
        return None
    is_dm = event.get("channel_type") == "im"
    if kind == "message" and not is_dm:
        # Channel messages reach the app only as app_mention; a plain message in
        # a channel (should the app be subscribed to one) asks nothing.
        return None
    thread_ts = event.get("thread_ts")
    return SlackTrigger(
        team_id=team_id,
        channel=channel,
        user=user,
        ts=ts,
        thread_ts=thread_ts if isinstance(thread_ts, str) and thread_ts else ts,
        is_dm=is_dm,
        text=request_text(str(event.get("text") or ""), bot_user_id),
    )


def request_text(text: str, bot_user_id: str | None) -> str:
    """The message without the bot's own mention(s), trimmed."""
    if bot_user_id is not None:
        text = _USER_MENTION.sub(
            lambda match: "" if match.group("user") == bot_user_id else match.group(0), text
        )
    return re.sub(r"[ \t]+", " ", text).strip()


def mentioned_users(text: str) -> list[str]:
    """User ids mentioned as <@U…> in a message, in order, without repeats."""
    return list(dict.fromkeys(match.group("user") for match in _USER_MENTION.finditer(text)))
