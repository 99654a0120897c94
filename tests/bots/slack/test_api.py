"""What failed Slack Web API calls mean for a job, and how a reply becomes Slack messages."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bots.slack.api import SlackTeam, new_web_client, slack_errors
from bots.slack.reply import reply_messages
from db.job_kinds import PermanentJobError, RetryableJobError
from processors.base import Reply, ReplyStatus
from tests.support.fake_slack import FakeSlack

TEAM = "T0TEAM"
TOKEN = "xoxb-fake-team-token-123456"
CHANNEL = "C0GENERAL"
ASKER = "U0ASKER"
CONVERSATION_URL = "https://agent.example.test/conversations/abc123"


def slack_response(
    status: int, data: dict[str, Any] | bytes, headers: dict[str, str] | None = None
) -> AsyncSlackResponse:
    return AsyncSlackResponse(
        client=AsyncWebClient(token=TOKEN),
        http_verb="POST",
        api_url="https://slack.com/api/chat.postMessage",
        req_args={},
        data=data,
        headers=headers or {},
        status_code=status,
    )


def api_error(
    status: int, data: dict[str, Any] | bytes, headers: dict[str, str] | None = None
) -> SlackApiError:
    """The error slack_sdk raises for this response (its own validate())."""
    with pytest.raises(SlackApiError) as raised:
        slack_response(status, data, headers).validate()
    return raised.value


async def outcome_of(error: BaseException, method: str = "chat.postMessage") -> Exception:
    with pytest.raises((RetryableJobError, PermanentJobError)) as raised:
        async with slack_errors(method):
            raise error
    assert raised.value.__cause__ is None or raised.value.__suppress_context__
    return raised.value


# -- slack_errors with slack_sdk's own errors ----------------------------------------------


@pytest.mark.parametrize("headers", [{"Retry-After": "7"}, {"retry-after": "7"}])
async def test_rate_limit_is_retried_after_the_time_slack_asks(headers: dict[str, str]) -> None:
    error = api_error(429, {"ok": False, "error": "ratelimited"}, headers)

    outcome = await outcome_of(error)

    assert isinstance(outcome, RetryableJobError)
    assert outcome.retry_after == 7
    assert "chat.postMessage" in str(outcome)
    assert "ratelimited" in str(outcome)


async def test_rate_limit_without_retry_after_leaves_the_delay_to_the_queue() -> None:
    outcome = await outcome_of(api_error(429, {"ok": False, "error": "ratelimited"}))
    assert isinstance(outcome, RetryableJobError)
    assert outcome.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retried(status: int) -> None:
    outcome = await outcome_of(api_error(status, {}))

    assert isinstance(outcome, RetryableJobError)
    assert f"HTTP {status}" in str(outcome)


class UnreadableResponse:
    """What slack_sdk puts in a SlackApiError when the body was not JSON: aiohttp's
    response, which has `status` (not `status_code`) and no `data`."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers or {}


async def test_server_error_with_an_unreadable_body_is_retried() -> None:
    error = SlackApiError("Unexpected response body", UnreadableResponse(502, {"Retry-After": "3"}))

    outcome = await outcome_of(error)

    assert isinstance(outcome, RetryableJobError)
    assert outcome.retry_after == 3
    assert "HTTP 502" in str(outcome)


@pytest.mark.parametrize(
    "code",
    ["channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "account_inactive"],
)
async def test_errors_that_will_not_go_away_fail_the_job_for_good(code: str) -> None:
    error = api_error(200, {"ok": False, "error": code})

    outcome = await outcome_of(error, "reactions.add")

    assert isinstance(outcome, PermanentJobError)
    assert code in str(outcome)
    assert "reactions.add" in str(outcome)
    assert TOKEN not in str(outcome)


@pytest.mark.parametrize(
    "code", ["ratelimited", "internal_error", "fatal_error", "service_unavailable"]
)
async def test_transient_error_codes_with_http_200_are_retried(code: str) -> None:
    outcome = await outcome_of(api_error(200, {"ok": False, "error": code}))

    assert isinstance(outcome, RetryableJobError)
    assert code in str(outcome)


@pytest.mark.parametrize(
    "error",
    [
        aiohttp.ClientConnectionError("connection reset"),
        aiohttp.ServerDisconnectedError(),
        TimeoutError(),
    ],
    ids=["connection", "disconnected", "timeout"],
)
async def test_network_failures_are_retried(error: Exception) -> None:
    outcome = await outcome_of(error)

    assert isinstance(outcome, RetryableJobError)
    assert "chat.postMessage" in str(outcome)
    assert type(error).__name__ in str(outcome)


async def test_other_exceptions_pass_through() -> None:
    with pytest.raises(KeyError):
        async with slack_errors("chat.postMessage"):
            raise KeyError("a bug of ours")


async def test_a_successful_call_is_left_alone() -> None:
    async with slack_errors("chat.postMessage"):
        pass


# -- the same, through the real client against the fake Slack ------------------------------


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        server.add_team(TEAM, bot_token=TOKEN, bot_user_id="U0BOT", bot_id="B0BOT")
        yield server


@pytest.fixture
async def team(fake_slack: FakeSlack) -> SlackTeam:
    return SlackTeam(TEAM, new_web_client(fake_slack.api_url, TOKEN))


async def test_real_client_rate_limit_becomes_a_delayed_retry(
    fake_slack: FakeSlack, team: SlackTeam
) -> None:
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=7)

    with pytest.raises(RetryableJobError) as raised:
        await team.post_in_thread(CHANNEL, "1700000000.000100", "hello")

    assert raised.value.retry_after == 7
    # The client's own retry handlers are off: one request, no sleeping in the worker.
    assert len(fake_slack.calls("chat.postMessage")) == 1


async def test_real_client_permanent_error_names_method_and_code(
    fake_slack: FakeSlack, team: SlackTeam
) -> None:
    fake_slack.error_next("chat.postMessage", "channel_not_found")

    with pytest.raises(PermanentJobError) as raised:
        await team.post_in_thread(CHANNEL, "1700000000.000100", "hello")

    assert str(raised.value) == "slack chat.postMessage: channel_not_found"


async def test_real_client_server_error_is_retried(fake_slack: FakeSlack, team: SlackTeam) -> None:
    fake_slack.fail_next("chat.postMessage", status=503)

    with pytest.raises(RetryableJobError):
        await team.post_in_thread(CHANNEL, "1700000000.000100", "hello")
    # Back up: the retry posts.
    ts = await team.post_in_thread(CHANNEL, "1700000000.000100", "hello")
    assert ts


async def test_harmless_reaction_errors_are_not_failures(
    fake_slack: FakeSlack, team: SlackTeam
) -> None:
    fake_slack.error_next("reactions.add", "already_reacted")
    fake_slack.error_next("reactions.remove", "no_reaction")
    await team.react(CHANNEL, "1700000000.000100", "eyes")
    await team.react(CHANNEL, "1700000000.000100", "eyes", remove=True)

    fake_slack.error_next("reactions.add", "channel_not_found")
    with pytest.raises(PermanentJobError):
        await team.react(CHANNEL, "1700000000.000100", "eyes")


async def test_unreachable_slack_is_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more: the connection is refused.
    team = SlackTeam(TEAM, new_web_client(f"http://127.0.0.1:{port}/api/", TOKEN))

    with pytest.raises(RetryableJobError) as raised:
        await team.post_in_thread(CHANNEL, "1700000000.000100", "hello")
    assert "chat.postMessage" in str(raised.value)


# -- reply_messages ---------------------------------------------------------------------------


def reply(summary: str, *, url: str | None = CONVERSATION_URL) -> Reply:
    return Reply(
        callback_id=1,
        conversation_id="abc123",
        status=ReplyStatus.COMPLETED,
        summary=summary,
        url=url,
        delivery_id="d1",
    )


def test_reply_mentions_the_asker_first_and_links_the_conversation() -> None:
    [message] = reply_messages(reply("Fixed the build."), ASKER)

    assert message.startswith(f"<@{ASKER}> Fixed the build.")
    assert message.endswith(f"<{CONVERSATION_URL}|View the conversation>")
    assert message.count(CONVERSATION_URL) == 1


def test_reply_that_already_has_the_link_does_not_repeat_it() -> None:
    [message] = reply_messages(reply(f"The agent stopped. Conversation: {CONVERSATION_URL}"), ASKER)

    assert message.startswith(f"<@{ASKER}> The agent stopped.")
    assert message.count(CONVERSATION_URL) == 1
    assert "View the conversation" not in message


def test_reply_without_a_url_has_no_link() -> None:
    [message] = reply_messages(reply("Done.", url=None), ASKER)
    assert message == f"<@{ASKER}> Done."


def test_reply_markdown_becomes_mrkdwn() -> None:
    [message] = reply_messages(reply("**Done** with [the PR](https://example.test/pr/1)."), ASKER)
    assert "*Done*" in message
    assert "**" not in message
    assert "<https://example.test/pr/1|the PR>" in message


def test_long_reply_is_split_into_postable_parts() -> None:
    paragraphs = [f"Paragraph {n}: " + "word " * 60 for n in range(40)]
    summary = "\n\n".join(paragraphs)
    assert len(summary) > 10_000

    parts = reply_messages(reply(summary), ASKER)

    assert len(parts) >= 3
    assert all(len(part) <= 3900 for part in parts)
    assert parts[0].startswith(f"<@{ASKER}> Paragraph 0:")
    assert parts[-1].endswith(f"<{CONVERSATION_URL}|View the conversation>")
    joined = " ".join(parts)
    assert all(f"Paragraph {n}:" in joined for n in range(40))
    assert " ".join(joined.split()).count("word") == 40 * 60


def test_long_reply_without_spaces_is_split_too() -> None:
    parts = reply_messages(reply("x" * 10_000, url=None), ASKER)

    assert len(parts) >= 3
    assert all(len(part) <= 3900 for part in parts)
    assert "".join(parts).count("x") == 10_000
