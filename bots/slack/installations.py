"""Bolt's installation and OAuth state stores, kept in the relay's database.

The relay uses only bot tokens, so it keeps ONE row per workspace (or per org, for
an org-wide install) in `installations`, platform "slack", account id
"<enterprise_id or ->:<team_id or ->". The whole Slack Installation, tokens included,
is the row's encrypted `credentials`; `details` holds only what operators may see.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from slack_sdk.oauth.installation_store import Bot
from slack_sdk.oauth.installation_store import Installation as SlackInstallation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from bots.slack import PLATFORM
from db.installations import (
    STATUS_ACTIVE,
    Installation,
    delete_installation,
    get_installation,
    save_installation,
)
from db.oauth_states import consume_state, issue_state
from db.secrets import SecretBox
from db.store import Store

_NO_ID = "-"

log = logging.getLogger(__name__)

# Fields of an Installation that are the installer's own user token; never handed
# out for another user, and removed when Slack revokes them.
_USER_TOKEN_FIELDS: dict[str, Any] = {
    "user_token": None,
    "user_refresh_token": None,
    "user_token_expires_at": None,
    "user_scopes": [],
}


def slack_account_id(enterprise_id: str | None, team_id: str | None) -> str:
    """The `installations.account_id` of a workspace; an org-wide install has no team."""
    return f"{enterprise_id or _NO_ID}:{team_id or _NO_ID}"


def _credentials_of(installation: SlackInstallation) -> dict[str, Any]:
    """The Installation as JSON-ready values its constructor accepts back.

    to_dict_for_copying() is the SDK's form for rebuilding an Installation (to_dict()
    flattens custom_values among the fields, which the constructor refuses). Its
    timestamps are datetimes: stored as ISO strings, which the constructor parses.
    Scopes are kept as lists, because the joined string form turns "no scopes" into
    None.
    """
    values = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in installation.to_dict_for_copying().items()
    }
    values["bot_scopes"] = list(installation.bot_scopes or [])
    values["user_scopes"] = list(installation.user_scopes or [])
    return values


def _details_of(installation: SlackInstallation) -> dict[str, Any]:
    """What an operator listing installations may see: no token of any kind."""
    return {
        "team_id": installation.team_id,
        "team_name": installation.team_name,
        "enterprise_id": installation.enterprise_id,
        "enterprise_name": installation.enterprise_name,
        "is_enterprise_install": installation.is_enterprise_install,
        "app_id": installation.app_id,
        "bot_id": installation.bot_id,
        "bot_user_id": installation.bot_user_id,
        "bot_scopes": list(installation.bot_scopes or []),
        "installer_user_id": installation.user_id,
        "installed_at": installation.installed_at,
    }


class DatabaseInstallationStore(AsyncInstallationStore):
    """Slack installations in the `installations` table, tokens encrypted."""

    def __init__(self, store: Store, box: SecretBox) -> None:
        self._store = store
        self._box = box

    @property
    def logger(self) -> logging.Logger:
        return log

    # --- saving ---------------------------------------------------------------------

    async def async_save(self, installation: SlackInstallation) -> None:
        # A (re)install is a workspace admin's explicit act: it makes the row active.
        await self._write(installation, status=STATUS_ACTIVE)

    async def async_save_bot(self, bot: Bot) -> None:
        """Store a bot's rotated token into its workspace's installation.

        Bolt calls this only after rotating the token of a bot it found, so the row
        exists; if it is gone, the app was uninstalled meanwhile, and bringing the
        workspace back from a refresh would undo the uninstall.
        """
        async with self._store.transaction():
            row = await self._row(bot.enterprise_id, bot.team_id, bot.is_enterprise_install)
            if row is None or row.credentials is None:
                log.warning(
                    "not saving a rotated bot token: no installation for %s",
                    row.account_id if row else slack_account_id(bot.enterprise_id, bot.team_id),
                )
                return
            installation = SlackInstallation(
                **{
                    **row.credentials,
                    "bot_token": bot.bot_token,
                    "bot_id": bot.bot_id,
                    "bot_user_id": bot.bot_user_id,
                    "bot_scopes": list(bot.bot_scopes or []),
                    "bot_refresh_token": bot.bot_refresh_token,
                    "bot_token_expires_at": bot.bot_token_expires_at,
                }
            )
            await self._write(installation, status=row.status)

    # --- finding --------------------------------------------------------------------

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        installation = await self.async_find_installation(
            enterprise_id=enterprise_id,
            team_id=team_id,
            is_enterprise_install=is_enterprise_install,
        )
        if installation is None or installation.bot_token is None:
            return None
        return installation.to_bot()

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> SlackInstallation | None:
        """The workspace's installation, whoever `user_id` is.

        The relay acts only with the bot token, so every user of a workspace gets the
        workspace's installation (Bolt asks with the user of each event). For a user
        who is not the installer, the installer's user token is removed: Bolt would
        otherwise act for that user with someone else's token.
        """
        row = await self._row(enterprise_id, team_id, is_enterprise_install)
        # A suspended installation (set_installation_status) is as good as absent:
        # Bolt finds no token and ignores the workspace's events.
        if row is None or row.status != STATUS_ACTIVE or row.credentials is None:
            return None
        credentials = row.credentials
        if user_id is not None and user_id != credentials.get("user_id"):
            credentials = {**credentials, **_USER_TOKEN_FIELDS}
        return SlackInstallation(**credentials)

    # --- deleting -------------------------------------------------------------------

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        # The bot token is all the relay uses: without it the row is worth nothing.
        await self._delete(enterprise_id, team_id)

    async def async_delete_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
    ) -> None:
        """Without a user: remove the workspace. With one: remove only that user's token.

        Slack's tokens_revoked event names the users whose tokens were revoked; the
        bot keeps working for the workspace, so only the installer's user token (the
        only user token kept) is dropped, and only if that user is the installer.
        """
        if user_id is None:
            await self._delete(enterprise_id, team_id)
            return
        async with self._store.transaction():
            row = await self._row(enterprise_id, team_id, is_enterprise_install=False)
            if row is None or row.credentials is None:
                return
            if row.credentials.get("user_id") != user_id or not row.credentials.get("user_token"):
                return
            installation = SlackInstallation(**{**row.credentials, **_USER_TOKEN_FIELDS})
            await self._write(installation, status=row.status)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        # One row holds everything of a workspace: one delete (Bolt's default would
        # call delete_bot and then delete_installation).
        await self._delete(enterprise_id, team_id)

    # --- rows -----------------------------------------------------------------------

    async def _row(
        self, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None
    ) -> Installation | None:
        # An org-wide install is stored without a team; events from any workspace of
        # the org name that workspace's team, and say is_enterprise_install.
        account_id = slack_account_id(enterprise_id, None if is_enterprise_install else team_id)
        return await get_installation(self._store, self._box, PLATFORM, account_id)

    async def _write(self, installation: SlackInstallation, *, status: str) -> None:
        team_id = None if installation.is_enterprise_install else installation.team_id
        await save_installation(
            self._store,
            self._box,
            platform=PLATFORM,
            account_id=slack_account_id(installation.enterprise_id, team_id),
            details=_details_of(installation),
            credentials=_credentials_of(installation),
            status=status,
        )

    async def _delete(self, enterprise_id: str | None, team_id: str | None) -> None:
        account_id = slack_account_id(enterprise_id, team_id)
        if await delete_installation(self._store, PLATFORM, account_id):
            log.info("removed Slack installation %s", account_id)


class DatabaseOAuthStateStore(AsyncOAuthStateStore):
    """Bolt's OAuth states as single-use rows of `oauth_states` (platform "slack")."""

    def __init__(self, store: Store, *, expiration_seconds: int = 600) -> None:
        self._store = store
        self.expiration_seconds = expiration_seconds

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        return await issue_state(self._store, PLATFORM, ttl_seconds=self.expiration_seconds)

    async def async_consume(self, state: str) -> bool:
        return await consume_state(self._store, PLATFORM, state)
