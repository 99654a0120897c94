"""The fake Slack Web API, driven by slack_sdk's real AsyncWebClient."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
from slack_bolt.async_app import AsyncApp, AsyncSay
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.fake_slack import (
    FakeSlack,
    app_mention,
    event_callback,
    im_message,
    slack_signature_headers,
)

TEAM = "T0TEAM"
TOKEN = "xoxb-fake-team-token"
BOT_USER = "U0BOT"
BOT_ID = "B0BOT"
CHANNEL = "C0GENERAL"
PERSON = "U0ALICE"


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        server.add_team(
            TEAM, bot_token=TOKEN, bot_user_id=BOT_USER, bot_id=BOT_ID, team_name="Acme"
        )
        yield server


def client_for(fake: FakeSlack, token: str | None = TOKEN) -> AsyncWebClient:
    return AsyncWebClient(base_url=fake.api_url, token=token)


async def test_auth_test_describes_the_bot(fake: FakeSlack) -> None:
    response = await client_for(fake).auth_test()

    assert response.status_code == 200
    assert response["team_id"] == TEAM
    assert response["team"] == "Acme"
    assert response["user_id"] == BOT_USER
    assert response["bot_id"] == BOT_ID
    assert response["app_id"] == "A0RELAY"
    assert response["enterprise_id"] is None
    assert response["is_enterprise_install"] is False
    assert fake.calls("auth.test")[0].token == TOKEN


async def test_posted_reply_is_read_back_through_conversations_replies(fake: FakeSlack) -> None:
    parent = fake.add_message(TEAM, CHANNEL, user=PERSON, text="<@U0BOT> fix the build")
    earlier = fake.add_message(TEAM, CHANNEL, user=PERSON, text="it's red", thread_ts=parent)
    client = client_for(fake)

    posted = await client.chat_postMessage(
        channel=CHANNEL,
        text="On it.",
        thread_ts=parent,
        mrkdwn=True,
        unfurl_links=False,
        metadata={"event_type": "relay_reply", "event_payload": {"conversation": "c1"}},
    )

    assert posted["channel"] == CHANNEL
    assert float(posted["ts"]) > float(earlier) > float(parent)
    assert posted["message"]["user"] == BOT_USER
    assert posted["message"]["bot_id"] == BOT_ID
    assert posted["message"]["thread_ts"] == parent
    call = fake.calls("chat.postMessage")[0]
    assert call.token == TOKEN and call.ok and call.http_status == 200
    # chat.postMessage goes as a JSON body: values keep their JSON types.
    assert call.params["unfurl_links"] is False
    assert call.params["metadata"]["event_type"] == "relay_reply"

    plain = await client.conversations_replies(channel=CHANNEL, ts=parent)
    assert [m["text"] for m in plain["messages"]] == [
        "<@U0BOT> fix the build",
        "it's red",
        "On it.",
    ]
    assert plain["has_more"] is False
    assert plain["messages"][0]["reply_count"] == 2
    assert plain["messages"][2]["parent_user_id"] == PERSON
    assert all("metadata" not in m for m in plain["messages"])

    with_metadata = await client.conversations_replies(
        channel=CHANNEL, ts=parent, include_all_metadata=True
    )
    assert with_metadata["messages"][2]["metadata"] == {
        "event_type": "relay_reply",
        "event_payload": {"conversation": "c1"},
    }
    assert [m["ts"] for m in fake.thread(CHANNEL, parent)] == [m["ts"] for m in plain["messages"]]
    assert len(fake.messages(CHANNEL)) == 3


async def test_conversations_replies_paginates_with_next_cursor(fake: FakeSlack) -> None:
    parent = fake.add_message(TEAM, CHANNEL, user=PERSON, text="parent")
    for number in range(4):
        fake.add_message(TEAM, CHANNEL, user=PERSON, text=f"reply {number}", thread_ts=parent)
    client = client_for(fake)

    texts: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await client.conversations_replies(
            channel=CHANNEL, ts=parent, limit=2, cursor=cursor
        )
        pages += 1
        texts += [m["text"] for m in page["messages"]]
        if not page["has_more"]:
            break
        cursor = page["response_metadata"]["next_cursor"]

    assert pages == 3
    assert texts == ["parent", "reply 0", "reply 1", "reply 2", "reply 3"]
    # GET with query parameters; slack_sdk sends booleans/ints as strings.
    assert fake.calls("conversations.replies")[0].params["limit"] == "2"


async def test_conversations_replies_of_unknown_thread(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as raised:
        await client_for(fake).conversations_replies(channel=CHANNEL, ts="1.000001")
    assert raised.value.response["error"] == "thread_not_found"
    assert raised.value.response.status_code == 200


async def test_chat_update_and_errors(fake: FakeSlack) -> None:
    client = client_for(fake)
    posted = await client.chat_postMessage(channel=CHANNEL, text="Working…")

    updated = await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="Done.")
    assert (updated["channel"], updated["ts"], updated["text"]) == (
        CHANNEL,
        posted["ts"],
        "Done.",
    )
    assert fake.messages(CHANNEL)[0]["text"] == "Done."

    with pytest.raises(SlackApiError) as missing:
        await client.chat_update(channel=CHANNEL, ts="1.000001", text="x")
    assert missing.value.response["error"] == "message_not_found"

    with pytest.raises(SlackApiError) as empty:
        await client.api_call("chat.postMessage", json={"channel": CHANNEL})
    assert empty.value.response["error"] == "no_text"


async def test_reactions_add_remove(fake: FakeSlack) -> None:
    ts = fake.add_message(TEAM, CHANNEL, user=PERSON, text="hello")
    client = client_for(fake)

    await client.reactions_add(channel=CHANNEL, timestamp=ts, name="eyes")
    assert fake.reactions(CHANNEL, ts) == {"eyes"}
    with pytest.raises(SlackApiError) as again:
        await client.reactions_add(channel=CHANNEL, timestamp=ts, name="eyes")
    assert again.value.response["error"] == "already_reacted"

    shown = await client.conversations_replies(channel=CHANNEL, ts=ts)
    assert shown["messages"][0]["reactions"] == [{"name": "eyes", "users": [BOT_USER], "count": 1}]

    await client.reactions_remove(channel=CHANNEL, timestamp=ts, name="eyes")
    assert fake.reactions(CHANNEL, ts) == set()
    with pytest.raises(SlackApiError) as gone:
        await client.reactions_remove(channel=CHANNEL, timestamp=ts, name="eyes")
    assert gone.value.response["error"] == "no_reaction"
    assert [c.ok for c in fake.calls() if c.method.startswith("reactions.")] == [
        True,
        False,
        True,
        False,
    ]


async def test_users_info(fake: FakeSlack) -> None:
    fake.add_user(PERSON, name="alice", display_name="Alice", real_name="Alice Liddell")
    client = client_for(fake)

    user = (await client.users_info(user=PERSON))["user"]
    assert user["id"] == PERSON
    assert user["name"] == "alice"
    assert user["real_name"] == "Alice Liddell"
    assert user["profile"]["display_name"] == "Alice"
    assert user["profile"]["real_name"] == "Alice Liddell"

    with pytest.raises(SlackApiError) as unknown:
        await client.users_info(user="U0NOBODY")
    assert unknown.value.response["error"] == "user_not_found"


async def test_oauth_v2_access_is_single_use(fake: FakeSlack) -> None:
    fake.register_oauth_code("code-1", team_id=TEAM, client_id="111.222", client_secret="shh")
    client = client_for(fake, token=None)

    with pytest.raises(SlackApiError) as wrong_secret:
        await client.oauth_v2_access(client_id="111.222", client_secret="nope", code="code-1")
    assert wrong_secret.value.response["error"] == "bad_client_secret"
    with pytest.raises(SlackApiError) as wrong_client:
        await client.oauth_v2_access(client_id="999.999", client_secret="shh", code="code-1")
    assert wrong_client.value.response["error"] == "invalid_client_id"

    installed = await client.oauth_v2_access(
        client_id="111.222", client_secret="shh", code="code-1", redirect_uri="https://x/cb"
    )
    assert installed["access_token"] == TOKEN
    assert installed["token_type"] == "bot"
    assert installed["bot_user_id"] == BOT_USER
    assert installed["app_id"] == "A0RELAY"
    assert installed["team"] == {"id": TEAM, "name": "Acme"}
    assert installed["enterprise"] is None
    assert installed["is_enterprise_install"] is False
    assert installed["authed_user"] == {"id": "U0INSTALLER"}
    assert "chat:write" in installed["scope"].split(",")
    # The client authenticates with HTTP Basic; the fake records the pair as params.
    call = fake.calls("oauth.v2.access")[-1]
    assert call.token is None
    assert call.params["client_id"] == "111.222"
    assert call.params["code"] == "code-1"

    with pytest.raises(SlackApiError) as reused:
        await client.oauth_v2_access(client_id="111.222", client_secret="shh", code="code-1")
    assert reused.value.response["error"] == "invalid_code"


async def test_oauth_v2_access_accepts_client_credentials_as_form_fields(
    fake: FakeSlack,
) -> None:
    fake.register_oauth_code("code-2", team_id=TEAM, client_id="111.222", client_secret="shh")
    response = await client_for(fake, token=None).api_call(
        "oauth.v2.access",
        data={"client_id": "111.222", "client_secret": "shh", "code": "code-2"},
    )
    assert response["access_token"] == TOKEN


async def test_unknown_or_revoked_token_is_invalid_auth(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as unknown:
        await client_for(fake, token="xoxb-who-knows").auth_test()
    assert unknown.value.response["error"] == "invalid_auth"
    assert unknown.value.response.status_code == 200

    fake.revoke_token(TOKEN)
    with pytest.raises(SlackApiError) as revoked:
        await client_for(fake).chat_postMessage(channel=CHANNEL, text="hi")
    assert revoked.value.response["error"] == "invalid_auth"
    assert fake.messages(CHANNEL) == []

    with pytest.raises(SlackApiError) as anonymous:
        await client_for(fake, token=None).auth_test()
    assert anonymous.value.response["error"] == "not_authed"


async def test_unknown_method(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as raised:
        await client_for(fake).api_call("conversations.list")
    assert raised.value.response["error"] == "unknown_method"
    assert fake.calls("conversations.list")[0].ok is False


async def test_fail_next_429_surfaces_status_and_retry_after(fake: FakeSlack) -> None:
    fake.fail_next("chat.postMessage", status=429, retry_after=7)
    client = client_for(fake)

    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel=CHANNEL, text="hi")
    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"
    assert raised.value.response["error"] == "ratelimited"
    assert fake.messages(CHANNEL) == []

    await client.chat_postMessage(channel=CHANNEL, text="hi")
    assert [(c.http_status, c.ok) for c in fake.calls("chat.postMessage")] == [
        (429, False),
        (200, True),
    ]


async def test_fail_next_500_then_error_next_count(fake: FakeSlack) -> None:
    fake.fail_next("auth.test", status=503)
    fake.error_next("chat.postMessage", "channel_not_found", count=2)
    client = client_for(fake)

    with pytest.raises(SlackApiError) as unavailable:
        await client.auth_test()
    assert unavailable.value.response.status_code == 503

    for _ in range(2):
        with pytest.raises(SlackApiError) as raised:
            await client.chat_postMessage(channel=CHANNEL, text="hi")
        assert raised.value.response.status_code == 200
        assert raised.value.response["error"] == "channel_not_found"
    await client.chat_postMessage(channel=CHANNEL, text="hi")
    assert [c.error for c in fake.calls("chat.postMessage")] == [
        "channel_not_found",
        "channel_not_found",
        None,
    ]


def test_token_and_arguments_as_form_fields(fake: FakeSlack) -> None:
    body = urllib.parse.urlencode({"token": TOKEN, "channel": CHANNEL, "text": "form"}).encode()
    request = urllib.request.Request(
        f"{fake.api_url}chat.postMessage",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        answer = json.loads(response.read())
    assert answer["ok"] is True
    call = fake.calls("chat.postMessage")[0]
    assert call.token == TOKEN
    assert "token" not in call.params
    assert fake.messages(CHANNEL)[0]["text"] == "form"


def test_signature_headers_verify_with_slack_sdk() -> None:
    body = json.dumps(
        event_callback(TEAM, app_mention(user=PERSON, text="hi", channel=CHANNEL, ts="1.2"))
    ).encode()
    headers = slack_signature_headers("signing-secret", body)

    verifier = SignatureVerifier("signing-secret")
    assert verifier.is_valid_request(body, headers)
    assert not SignatureVerifier("other-secret").is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b" ", headers)
    stale = slack_signature_headers("signing-secret", body, timestamp=int(time.time()) - 3600)
    assert stale["X-Slack-Request-Timestamp"] == str(int(time.time()) - 3600)
    assert not verifier.is_valid_request(body, stale)
    assert (
        verifier.is_valid(body, stale["X-Slack-Request-Timestamp"], stale["X-Slack-Signature"])
        is False
    )


def test_event_builders() -> None:
    mention = app_mention(
        user=PERSON,
        text="<@U0BOT> help",
        channel=CHANNEL,
        ts="1700000000.000200",
        thread_ts="1700000000.000100",
    )
    assert mention == {
        "type": "app_mention",
        "user": PERSON,
        "text": "<@U0BOT> help",
        "ts": "1700000000.000200",
        "channel": CHANNEL,
        "event_ts": "1700000000.000200",
        "thread_ts": "1700000000.000100",
    }
    dm = im_message(user=PERSON, text="hello", channel="D0DM", ts="1700000000.000300")
    assert dm["type"] == "message" and dm["channel_type"] == "im" and "thread_ts" not in dm

    envelope = event_callback(TEAM, dm, bot_user_id=BOT_USER)
    assert envelope["type"] == "event_callback"
    assert envelope["team_id"] == TEAM
    assert envelope["api_app_id"] == "A0RELAY"
    assert envelope["event"]["ts"] == dm["ts"]
    assert envelope["event"]["team"] == TEAM
    assert envelope["event_id"].startswith("Ev")
    assert isinstance(envelope["event_time"], int)
    assert envelope["is_ext_shared_channel"] is False
    assert envelope["authorizations"] == [
        {
            "enterprise_id": None,
            "team_id": TEAM,
            "user_id": BOT_USER,
            "is_bot": True,
            "is_enterprise_install": False,
        }
    ]
    assert event_callback(TEAM, dm)["event_id"] != event_callback(TEAM, dm)["event_id"]
    assert event_callback(TEAM, dm, event_id="Ev1")["event_id"] == "Ev1"
    assert event_callback(TEAM, dm, enterprise_id="E1")["enterprise_id"] == "E1"


async def test_bolt_app_answers_a_signed_mention_through_the_fake(fake: FakeSlack) -> None:
    """The envelope, signature and Web API fit together for a real Bolt app."""
    parent = fake.add_message(TEAM, CHANNEL, user=PERSON, text="<@U0BOT> hi")
    app = AsyncApp(
        signing_secret="signing-secret",
        client=client_for(fake),
        process_before_response=True,
    )

    @app.event("app_mention")
    async def on_mention(event: dict[str, str], say: AsyncSay) -> None:
        await say(text="hello", thread_ts=event["ts"])

    envelope = event_callback(
        TEAM,
        app_mention(user=PERSON, text="<@U0BOT> hi", channel=CHANNEL, ts=parent),
        bot_user_id=BOT_USER,
    )
    body = json.dumps(envelope).encode()
    headers = {
        "Content-Type": "application/json",
        **slack_signature_headers("signing-secret", body),
    }
    response = await app.async_dispatch(
        AsyncBoltRequest(body=body.decode(), headers={k: [v] for k, v in headers.items()})
    )

    assert response.status == 200
    assert [m["text"] for m in fake.thread(CHANNEL, parent)] == ["<@U0BOT> hi", "hello"]
    assert [c.method for c in fake.calls()] == ["auth.test", "chat.postMessage"]
