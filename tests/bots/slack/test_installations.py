"""Bolt's installation and state stores over the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization.async_authorize import AsyncInstallationStoreAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.oauth.installation_store import Installation as SlackInstallation

from bots.slack import PLATFORM
from bots.slack.installations import (
    DatabaseInstallationStore,
    DatabaseOAuthStateStore,
    slack_account_id,
)
from db.installations import get_installation, list_installations, set_installation_status
from db.secrets import CredentialsUnreadable, SecretBox
from db.store import Store

BOT_TOKEN = "xoxb-1111-2222-bot-token-of-acme"
USER_TOKEN = "xoxp-1111-2222-user-token-of-installer"
INSTALLER = "U_INSTALLER"
INSTALLED_AT = 1_700_000_000.5


@pytest.fixture
def box() -> SecretBox:
    return SecretBox("a-test-secret-key-that-is-long-enough")


@pytest.fixture
def installations(store: Store, box: SecretBox) -> DatabaseInstallationStore:
    return DatabaseInstallationStore(store, box)


def acme(
    *,
    team_id: str | None = "T1",
    enterprise_id: str | None = None,
    bot_token: str = BOT_TOKEN,
    **overrides: Any,
) -> SlackInstallation:
    values: dict[str, Any] = {
        "app_id": "A1",
        "enterprise_id": enterprise_id,
        "team_id": team_id,
        "team_name": "Acme",
        "bot_token": bot_token,
        "bot_id": "B1",
        "bot_user_id": "UBOT",
        "bot_scopes": ["app_mentions:read", "chat:write"],
        "user_id": INSTALLER,
        "installed_at": INSTALLED_AT,
        **overrides,
    }
    return SlackInstallation(**values)


async def stored_account_ids(store: Store) -> list[str]:
    return [i.account_id for i in await list_installations(store, platform=PLATFORM)]


# --- saving and finding ----------------------------------------------------------------


async def test_an_installation_round_trips_field_for_field(
    installations: DatabaseInstallationStore,
) -> None:
    original = acme(
        enterprise_id="E1",
        enterprise_name="Acme Corp",
        enterprise_url="https://acme.enterprise.slack.com/",
        bot_refresh_token="xoxe-1-bot-refresh",
        bot_token_expires_at=1_800_000_000,
        user_token=USER_TOKEN,
        user_scopes="search:read",
        user_refresh_token="xoxe-1-user-refresh",
        user_token_expires_in=3600,
        incoming_webhook_url="https://hooks.slack.com/services/T1/B2/x",
        incoming_webhook_channel="#general",
        incoming_webhook_channel_id="C1",
        incoming_webhook_configuration_url="https://acme.slack.com/services/B2",
        token_type="bot",
        custom_values={"plan": "pro"},
    )
    await installations.async_save(original)

    found = await installations.async_find_installation(enterprise_id="E1", team_id="T1")

    assert found is not None
    assert found.to_dict_for_copying() == original.to_dict_for_copying()
    assert found.installed_at == INSTALLED_AT
    assert found.bot_scopes == ["app_mentions:read", "chat:write"]
    assert found.get_custom_value("plan") == "pro"


async def test_find_bot_gives_the_bot_token(installations: DatabaseInstallationStore) -> None:
    await installations.async_save(acme())

    bot = await installations.async_find_bot(enterprise_id=None, team_id="T1")

    assert bot is not None
    assert bot.bot_token == BOT_TOKEN
    assert (bot.team_id, bot.bot_id, bot.bot_user_id) == ("T1", "B1", "UBOT")
    assert bot.installed_at == INSTALLED_AT


async def test_an_installation_without_scopes_keeps_empty_scopes(
    installations: DatabaseInstallationStore,
) -> None:
    await installations.async_save(acme(bot_scopes=""))

    found = await installations.async_find_installation(enterprise_id=None, team_id="T1")

    assert found is not None
    assert found.bot_scopes == []
    assert found.user_scopes == []


async def test_tokens_are_stored_encrypted_and_details_carry_none(
    store: Store, installations: DatabaseInstallationStore
) -> None:
    await installations.async_save(acme(user_token=USER_TOKEN, bot_refresh_token="xoxe-1-r"))

    row = await store.fetch_one("SELECT details, credentials FROM installations")

    assert row is not None
    for secret in (BOT_TOKEN, USER_TOKEN, "xoxe-1-r"):
        assert secret not in row["credentials"]
    # No token of any kind in the plain column (the ciphertext, being random
    # base64, may contain "xox" by chance, so only the details are checked for it).
    assert "xox" not in row["details"]
    details = json.loads(row["details"])
    assert details == {
        "team_id": "T1",
        "team_name": "Acme",
        "enterprise_id": None,
        "enterprise_name": None,
        "is_enterprise_install": False,
        "app_id": "A1",
        "bot_id": "B1",
        "bot_user_id": "UBOT",
        "bot_scopes": ["app_mentions:read", "chat:write"],
        "installer_user_id": INSTALLER,
        "installed_at": INSTALLED_AT,
    }


async def test_another_secret_key_cannot_read_the_tokens(
    store: Store, installations: DatabaseInstallationStore
) -> None:
    await installations.async_save(acme())
    other = DatabaseInstallationStore(store, SecretBox("another-secret-key-entirely"))

    with pytest.raises(CredentialsUnreadable):
        await other.async_find_bot(enterprise_id=None, team_id="T1")


async def test_reinstalling_keeps_one_row_and_its_created_at(
    store: Store, installations: DatabaseInstallationStore
) -> None:
    await installations.async_save(acme())
    await store.execute("UPDATE installations SET created_at = 1000")

    await installations.async_save(acme(bot_token="xoxb-reinstalled", team_name="Acme 2"))

    assert await stored_account_ids(store) == ["-:T1"]
    row = await store.fetch_one("SELECT created_at FROM installations")
    assert row is not None and row["created_at"] == 1000
    bot = await installations.async_find_bot(enterprise_id=None, team_id="T1")
    assert bot is not None and bot.bot_token == "xoxb-reinstalled"
    assert bot.team_name == "Acme 2"


async def test_workspaces_are_kept_apart(
    store: Store, installations: DatabaseInstallationStore
) -> None:
    await installations.async_save(acme())
    await installations.async_save(acme(team_id="T2", team_name="Beta", bot_token="xoxb-beta"))

    one = await installations.async_find_bot(enterprise_id=None, team_id="T1")
    two = await installations.async_find_bot(enterprise_id=None, team_id="T2")

    assert one is not None and one.bot_token == BOT_TOKEN
    assert two is not None and two.bot_token == "xoxb-beta"
    assert await installations.async_find_bot(enterprise_id=None, team_id="T3") is None
    assert await installations.async_find_bot(enterprise_id="E1", team_id="T1") is None
    assert await stored_account_ids(store) == ["-:T1", "-:T2"]


async def test_an_org_wide_install_serves_every_workspace_of_the_org(
    store: Store, installations: DatabaseInstallationStore
) -> None:
    await installations.async_save(
        acme(enterprise_id="E1", team_id=None, is_enterprise_install=True)
    )

    bot = await installations.async_find_bot(
        enterprise_id="E1", team_id="T_ANY", is_enterprise_install=True
    )
    found = await installations.async_find_installation(
        enterprise_id="E1", team_id=None, is_enterprise_install=True
    )

    assert await stored_account_ids(store) == ["E1:-"]
    assert bot is not None and bot.bot_token == BOT_TOKEN and bot.is_enterprise_install
    assert found is not None and found.team_id is None


async def test_listing_shows_details_and_never_tokens(
    store: Store, installations: DatabaseInstallationStore
) -> None:
    await installations.async_save(acme(user_token=USER_TOKEN))

    [listed] = await list_installations(store)

    assert listed.credentials is None
    assert listed.details["team_name"] == "Acme"
    assert "xox" not in repr(listed) + json.dumps(listed.details)


async def test_any_user_of_the_workspace_gets_the_bot_but_not_the_installers_token(
    installations: DatabaseInstallationStore,
) -> None:
    await installations.async_save(acme(user_token=USER_TOKEN, user_scopes="search:read"))

    for_installer = await installations.async_find_installation(
        enterprise_id=None, team_id="T1", user_id=INSTALLER
    )
    for_someone_else = await installations.async_find_installation(
        enterprise_id=None, team_id="T1", user_id="U_OTHER"
    )

    assert for_installer is not None and for_installer.user_token == USER_TOKEN
    assert for_someone_else is not None
    assert for_someone_else.bot_token == BOT_TOKEN
    assert for_someone_else.user_token is None
    assert for_someone_else.user_scopes == []


async def test_a_suspended_installation_is_not_found(
    store: Store, installations: DatabaseInstallationStore
) -> None:
    await installations.async_save(acme())
    await set_installation_status(store, PLATFORM, "-:T1", "suspended")

    assert await installations.async_find_bot(enterprise_id=None, team_id="T1") is None
    assert await installations.async_find_installation(enterprise_id=None, team_id="T1") is None

    await installations.async_save(acme())  # reinstalling makes it active again
    assert await installations.async_find_bot(enterprise_id=None, team_id="T1") is not None


async def test_save_bot_stores_a_rotated_token_in_the_workspace_row(
    installations: DatabaseInstallationStore,
) -> None:
    await installations.async_save(acme(bot_refresh_token="xoxe-old", user_token=USER_TOKEN))
    bot = await installations.async_find_bot(enterprise_id=None, team_id="T1")
    assert bot is not None
    bot.bot_token, bot.bot_refresh_token = "xoxb-rotated", "xoxe-new"
    bot.bot_token_expires_at = 1_900_000_000

    await installations.async_save_bot(bot)

    found = await installations.async_find_installation(enterprise_id=None, team_id="T1")
    assert found is not None
    assert (found.bot_token, found.bot_refresh_token) == ("xoxb-rotated", "xoxe-new")
    assert found.bot_token_expires_at == 1_900_000_000
    assert (found.user_id, found.user_token) == (INSTALLER, USER_TOKEN)


async def test_save_bot_does_not_bring_back_an_uninstalled_workspace(
    store: Store, installations: DatabaseInstallationStore
) -> None:
    await installations.async_save(acme())
    bot = await installations.async_find_bot(enterprise_id=None, team_id="T1")
    assert bot is not None
    await installations.async_delete_all(enterprise_id=None, team_id="T1")

    await installations.async_save_bot(bot)

    assert await stored_account_ids(store) == []


# --- deleting --------------------------------------------------------------------------


async def test_delete_installation_without_a_user_removes_the_workspace_only(
    store: Store, installations: DatabaseInstallationStore
) -> None:
    await installations.async_save(acme())
    await installations.async_save(acme(team_id="T2"))

    await installations.async_delete_installation(enterprise_id=None, team_id="T1")

    assert await installations.async_find_bot(enterprise_id=None, team_id="T1") is None
    assert await stored_account_ids(store) == ["-:T2"]


async def test_delete_installation_of_a_user_drops_only_the_installers_user_token(
    store: Store, installations: DatabaseInstallationStore
) -> None:
    await installations.async_save(acme(user_token=USER_TOKEN))

    await installations.async_delete_installation(
        enterprise_id=None, team_id="T1", user_id="U_OTHER"
    )
    kept = await installations.async_find_installation(enterprise_id=None, team_id="T1")
    assert kept is not None and kept.user_token == USER_TOKEN

    await installations.async_delete_installation(
        enterprise_id=None, team_id="T1", user_id=INSTALLER
    )
    scrubbed = await installations.async_find_installation(enterprise_id=None, team_id="T1")
    assert scrubbed is not None
    assert scrubbed.user_token is None
    assert scrubbed.bot_token == BOT_TOKEN
    assert await stored_account_ids(store) == ["-:T1"]


async def test_delete_bot_and_delete_all_remove_the_workspace(
    store: Store, installations: DatabaseInstallationStore
) -> None:
    await installations.async_save(acme())
    await installations.async_save(acme(team_id="T2"))

    await installations.async_delete_bot(enterprise_id=None, team_id="T1")
    await installations.async_delete_all(enterprise_id=None, team_id="T2")
    await installations.async_delete_all(enterprise_id=None, team_id="T3")  # nothing there

    assert await stored_account_ids(store) == []


# --- through Bolt ----------------------------------------------------------------------


def revocation_app(installations: DatabaseInstallationStore) -> AsyncApp:
    app = AsyncApp(
        signing_secret="not-checked",
        installation_store=installations,
        request_verification_enabled=False,
        # Run listeners before answering, so their deletes are done when dispatch returns.
        process_before_response=True,
    )
    app.enable_token_revocation_listeners()
    return app


def event_request(event: dict[str, Any], *, team_id: str = "T1") -> AsyncBoltRequest:
    body = {
        "type": "event_callback",
        "team_id": team_id,
        "api_app_id": "A1",
        "event": event,
        "event_id": "Ev1",
        "event_time": 1_700_000_000,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": "UBOT",
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
    }
    return AsyncBoltRequest(body=json.dumps(body), headers={"content-type": ["application/json"]})


async def test_app_uninstalled_removes_the_workspace(
    store: Store, installations: DatabaseInstallationStore
) -> None:
    await installations.async_save(acme())
    await installations.async_save(acme(team_id="T2"))

    response = await revocation_app(installations).async_dispatch(
        event_request({"type": "app_uninstalled"})
    )

    assert response.status == 200
    assert await stored_account_ids(store) == ["-:T2"]


async def test_revoking_the_installers_user_token_keeps_the_bot(
    store: Store, installations: DatabaseInstallationStore
) -> None:
    await installations.async_save(acme(user_token=USER_TOKEN))

    response = await revocation_app(installations).async_dispatch(
        event_request({"type": "tokens_revoked", "tokens": {"oauth": [INSTALLER]}})
    )

    assert response.status == 200
    found = await installations.async_find_installation(enterprise_id=None, team_id="T1")
    assert found is not None
    assert found.user_token is None
    assert found.bot_token == BOT_TOKEN


async def test_revoking_the_bot_token_removes_the_workspace(
    store: Store, installations: DatabaseInstallationStore
) -> None:
    await installations.async_save(acme())

    response = await revocation_app(installations).async_dispatch(
        event_request({"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["B1"]}})
    )

    assert response.status == 200
    assert await stored_account_ids(store) == []


class AuthTestOnlyClient:
    """Answers Bolt's auth.test from the token alone, as Slack would for a valid one."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    async def auth_test(self, *, token: str) -> dict[str, Any]:
        self.tokens.append(token)
        return {"ok": True, "team_id": "T1", "user_id": "UBOT", "bot_id": "B1"}


async def test_bolts_authorize_finds_the_bot_token_for_any_user(
    installations: DatabaseInstallationStore,
) -> None:
    await installations.async_save(acme(user_token=USER_TOKEN))
    authorize = AsyncInstallationStoreAuthorize(
        logger=logging.getLogger(__name__), installation_store=installations
    )
    client = AuthTestOnlyClient()
    context = AsyncBoltContext(client=client)

    result = await authorize(context=context, enterprise_id=None, team_id="T1", user_id="U_OTHER")

    assert result is not None
    assert result.bot_token == BOT_TOKEN
    assert result.user_token is None
    assert client.tokens == [BOT_TOKEN]


# --- OAuth states ----------------------------------------------------------------------


async def test_a_slack_state_is_consumed_once(store: Store) -> None:
    states = DatabaseOAuthStateStore(store)

    state = await states.async_issue()

    assert await states.async_consume(state) is True
    assert await states.async_consume(state) is False
    assert await DatabaseOAuthStateStore(store).async_consume("never-issued") is False


async def test_a_slack_state_expires(store: Store) -> None:
    states = DatabaseOAuthStateStore(store, expiration_seconds=-1)

    assert await states.async_consume(await states.async_issue()) is False


async def test_a_slack_state_is_stored_for_slack_only(store: Store) -> None:
    state = await DatabaseOAuthStateStore(store).async_issue()

    row = await store.fetch_one("SELECT platform FROM oauth_states WHERE state = :s", {"s": state})

    assert row == {"platform": PLATFORM}


def test_account_ids_name_the_org_and_the_workspace() -> None:
    assert slack_account_id(None, "T1") == "-:T1"
    assert slack_account_id("E1", None) == "E1:-"
    assert slack_account_id("E1", "T1") == "E1:T1"


async def test_a_saved_row_is_readable_through_the_repository(
    store: Store, box: SecretBox, installations: DatabaseInstallationStore
) -> None:
    await installations.async_save(acme())

    row = await get_installation(store, box, PLATFORM, "-:T1")

    assert row is not None and row.credentials is not None
    assert row.credentials["bot_token"] == BOT_TOKEN
