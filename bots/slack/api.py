"""Slack Web API calls made from jobs, and what their failures mean for the job.

slack-sdk's AsyncWebClient makes the calls; every client points at SLACK_API_URL.
Its own retry handlers are switched off: a rate limit or an outage goes back to the
job queue (honouring Retry-After), so no worker slot ever sleeps waiting for Slack.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.web.async_client import AsyncWebClient

from agent.http import retry_after
from db.job_kinds import PermanentJobError, RetryableJobError

log = logging.getLogger(__name__)

SLACK_TIMEOUT_SECONDS = 30
# Slack errors that say "later" rather than "never"; every other error is permanent
# (channel_not_found, not_in_channel, is_archived, invalid_auth, account_inactive...).
_TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# Reactions are a courtesy: these outcomes of reactions.add/remove are not failures.
_HARMLESS_REACTION_ERRORS = frozenset({"already_reacted", "no_reaction", "message_not_found"})
USER_NAME_TTL_SECONDS = 3600.0
# Methods Slack serves on GET with query parameters; the others take a JSON body.
_READ_METHODS = frozenset({"conversations.replies", "users.info"})


def new_web_client(api_url: str, token: str | None = None) -> AsyncWebClient:
    client = AsyncWebClient(
        token=token, base_url=api_url.rstrip("/") + "/", timeout=SLACK_TIMEOUT_SECONDS
    )
    client.retry_handlers = []
    return client


@asynccontextmanager
async def slack_errors(method: str) -> AsyncIterator[None]:
    """Turn a failed Web API call into the job error that says whether to try again.

    The message names the method and Slack's error code (never the token), so it is
    readable in `agent-relay jobs list`.
    """
    try:
        yield
    except SlackApiError as exc:
        response = exc.response
        # A response that was not JSON comes as aiohttp's, with `status`.
        status = int(getattr(response, "status_code", 0) or getattr(response, "status", 0) or 0)
        data = getattr(response, "data", None)
        error = data.get("error") if isinstance(data, dict) else None
        what = f"slack {method}: {error or f'HTTP {status}'}"
        if status == 429 or status >= 500 or error in _TRANSIENT_ERRORS:
            raise RetryableJobError(
                what, retry_after=retry_after(getattr(response, "headers", None) or {})
            ) from None
        raise PermanentJobError(what) from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise RetryableJobError(f"slack {method}: {type(exc).__name__}") from None


@dataclass(frozen=True)
class SlackPerson:
    name: str
    email: str | None


@dataclass
class SlackTeam:
    """A workspace's Web API client, authorised with its bot token."""

    team_id: str
    client: AsyncWebClient
    _people: dict[str, tuple[SlackPerson, float]] = field(default_factory=dict)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        async with slack_errors(method):
            if method in _READ_METHODS:
                response = await self.client.api_call(method, http_verb="GET", params=params)
            else:
                response = await self.client.api_call(method, json=params)
        return dict(response.data) if isinstance(response.data, dict) else {}

    async def post_in_thread(
        self,
        channel: str,
        thread_ts: str,
        text: str,
        *,
        metadata: dict[str, Any] | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> str:
        """Post `text` (mrkdwn; with `blocks`, the notification's text) in the thread;
        returns the new message's ts."""
        params: dict[str, Any] = {
            "channel": channel,
            "thread_ts": thread_ts,
            "text": text,
            "mrkdwn": True,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if metadata is not None:
            params["metadata"] = metadata
        if blocks is not None:
            params["blocks"] = blocks
        posted = await self.call("chat.postMessage", **params)
        return str(posted.get("ts", ""))

    async def post_once_in_thread(
        self,
        channel: str,
        thread_ts: str,
        text: str,
        *,
        event_type: str,
        key: dict[str, str],
        blocks: list[dict[str, Any]] | None = None,
        thread: list[dict[str, Any]] | None = None,
    ) -> str:
        """Post in the thread unless an earlier attempt did; the message's ts. The
        message carries metadata (`event_type`, with `key` as its payload) by which a
        retried job finds it; `thread`: the thread's messages when already read."""
        if thread is None:
            thread = await self.thread_messages(channel, thread_ts)
        for message in thread:
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == event_type and all(
                str(payload.get(name)) == value for name, value in key.items()
            ):
                return str(message["ts"])
        return await self.post_in_thread(
            channel,
            thread_ts,
            text,
            metadata={"event_type": event_type, "event_payload": key},
            blocks=blocks,
        )

    async def react(self, channel: str, ts: str, name: str, *, remove: bool = False) -> None:
        method = "reactions.remove" if remove else "reactions.add"
        try:
            await self.call(method, channel=channel, timestamp=ts, name=name)
        except PermanentJobError as exc:
            if not str(exc).endswith(tuple(_HARMLESS_REACTION_ERRORS)):
                raise

    async def thread_messages(
        self, channel: str, thread_ts: str, *, limit: int = 200
    ) -> list[dict[str, Any]]:
        """The thread's messages, oldest first (the parent first), with their metadata.

        Bounded: a thread of thousands of messages is read up to `limit` of them,
        which is more than any prompt uses.
        """
        messages: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(messages) < limit:
            params: dict[str, Any] = {
                "channel": channel,
                "ts": thread_ts,
                "limit": min(200, limit),
                "include_all_metadata": "true",
            }
            if cursor:
                params["cursor"] = cursor
            page = await self.call("conversations.replies", **params)
            messages.extend(page.get("messages") or [])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not page.get("has_more") or not cursor:
                break
        return messages

    async def display_name(self, user_id: str) -> str:
        """The name people see for `user_id`, cached for an hour; the id if unknown."""
        return (await self.person(user_id)).name

    async def person(self, user_id: str) -> SlackPerson:
        """`user_id`'s name and, when the app may read it (users:read.email), email;
        cached for an hour; the id as name if unknown."""
        cached = self._people.get(user_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        try:
            info = await self.call("users.info", user=user_id)
        except PermanentJobError:
            return SlackPerson(user_id, None)
        user = info.get("user") or {}
        profile = user.get("profile") or {}
        name = (
            profile.get("display_name")
            or profile.get("real_name")
            or user.get("real_name")
            or user.get("name")
            or user_id
        )
        person = SlackPerson(str(name), str(profile["email"]) if profile.get("email") else None)
        self._people[user_id] = (person, time.monotonic() + USER_NAME_TTL_SECONDS)
        return person


class SlackApi:
    """Finds the bot token of a workspace: SLACK_BOT_TOKEN for one workspace, the
    installation store (OAuth) for many. Clients are reused, names cached per team."""

    def __init__(
        self,
        api_url: str,
        *,
        bot_token: str | None = None,
        installation_store: AsyncInstallationStore | None = None,
    ) -> None:
        self.api_url = api_url
        self.bot_token = bot_token
        self.installation_store = installation_store
        self._teams: dict[tuple[str | None, str, str], SlackTeam] = {}

    async def team(self, team_id: str, enterprise_id: str | None = None) -> SlackTeam:
        token = self.bot_token
        if self.installation_store is not None:
            bot = await self.installation_store.async_find_bot(
                enterprise_id=enterprise_id, team_id=team_id
            )
            if bot is None or not bot.bot_token:
                raise PermanentJobError(f"slack workspace {team_id} is not installed")
            token = bot.bot_token
        if not token:
            raise PermanentJobError("no Slack bot token is configured")
        # Keyed by token too: a re-install with a new token gets a new client.
        key = (enterprise_id, team_id, token)
        if key not in self._teams:
            self._teams[key] = SlackTeam(team_id, new_web_client(self.api_url, token))
        return self._teams[key]
