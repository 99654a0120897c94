"""Doctor's Slack checks: does Slack take the bot token (one workspace), or each
installed workspace's stored token (OAuth)? Asked with `auth.test`, through the
relay's own Slack client and SLACK_API_URL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import SecretStr

from bots.checks import (
    CheckResult,
    CheckRun,
    PublicUrlSettings,
    done,
    fail,
    ok,
    public_link,
    reason,
    skip,
    warn,
)
from bots.slack import PLATFORM as SLACK_PLATFORM
from bots.slack.api import SlackApi, SlackTeam, new_web_client
from bots.slack.installations import DatabaseInstallationStore
from bots.slack.socket_mode import SOCKET_CHECK, socket_mode_check
from db.installations import STATUS_ACTIVE, list_installations
from db.job_kinds import PermanentJobError, RetryableJobError
from db.secrets import secret_text

# Workspaces of a Slack OAuth deployment are asked this many at a time.
SLACK_CHECKS_AT_ONCE = 8
_SLACK_DOWN = "check SLACK_API_URL and Slack's status"


class SlackCheckSettings(PublicUrlSettings, Protocol):
    """The settings Slack's checks read."""

    slack_api_url: str
    slack_bot_token: SecretStr | None
    slack_app_token: SecretStr | None

    @property
    def slack_mode(self) -> Literal["oauth", "single"] | None: ...


@dataclass(frozen=True)
class SlackCheck:
    settings: SlackCheckSettings

    async def check(self, run: CheckRun) -> list[CheckResult]:
        mode = self.settings.slack_mode
        if mode is None:
            return [skip("slack", "not configured")]
        if mode == "single":
            results = [await run.bounded("slack", self._single, _SLACK_DOWN)]
            app_token = secret_text(self.settings.slack_app_token)
            if app_token is not None:
                opened = await run.bounded(
                    SOCKET_CHECK,
                    lambda: socket_mode_check(self.settings.slack_api_url, app_token),
                    _SLACK_DOWN,
                )
                results.append(opened)
            return results
        unavailable = await run.database_ready()
        if unavailable:
            return [skip("slack", f"cannot list the installed workspaces: {unavailable}")]
        return await self._workspaces(run)

    async def _single(self) -> CheckResult:
        teams = SlackApi(
            self.settings.slack_api_url, bot_token=secret_text(self.settings.slack_bot_token)
        )
        return await _auth_test(
            "slack",
            await teams.team(team_id="-"),
            "set SLACK_BOT_TOKEN to the app's Bot User OAuth Token (xoxb-...)",
        )

    async def _workspaces(self, run: CheckRun) -> list[CheckResult]:
        try:
            async with asyncio.timeout(run.timeout):
                rows = await list_installations(run.store, platform=SLACK_PLATFORM)
        except TimeoutError:
            return [
                fail("slack", "listing the installed workspaces timed out", "check the database")
            ]
        install = public_link(self.settings.public_url, "/slack/install")
        if not rows:
            return [warn("slack", "no workspace has installed the app yet", f"open {install}")]
        installations = DatabaseInstallationStore(run.store, run.secrets)
        at_once = asyncio.Semaphore(SLACK_CHECKS_AT_ONCE)

        async def check(details: dict[str, Any], name: str) -> CheckResult:
            async with at_once:
                return await run.bounded(
                    name,
                    lambda: self._workspace(run, installations, name, details, install),
                    _SLACK_DOWN,
                )

        checks: list[Awaitable[CheckResult]] = []
        for row in rows:
            details = row.details
            name = f"slack workspace {details.get('team_id') or row.account_id}"
            if row.status != STATUS_ACTIVE:
                checks.append(done(skip(name, f"installation is {row.status}")))
            else:
                checks.append(check(details, name))
        return list(await asyncio.gather(*checks))

    async def _workspace(
        self,
        run: CheckRun,
        installations: DatabaseInstallationStore,
        name: str,
        details: dict[str, Any],
        install: str,
    ) -> CheckResult:
        reinstall = f"reinstall the app in that workspace at {install}"
        try:
            bot = await installations.async_find_bot(
                enterprise_id=details.get("enterprise_id"),
                team_id=details.get("team_id"),
                is_enterprise_install=bool(details.get("is_enterprise_install")),
            )
        except Exception as exc:
            return fail(
                name,
                f"stored bot token unreadable ({type(exc).__name__})",
                "set SECRET_KEY back to the key it was stored with, or " + reinstall,
            )
        if bot is None or not bot.bot_token:
            return fail(name, "no bot token stored", reinstall)
        run.add_secret(bot.bot_token)
        team = SlackTeam(
            str(details.get("team_id") or "-"),
            new_web_client(self.settings.slack_api_url, bot.bot_token),
        )
        return await _auth_test(name, team, reinstall)


async def _auth_test(name: str, team: SlackTeam, fix: str) -> CheckResult:
    try:
        answer = await team.call("auth.test")
    except PermanentJobError as exc:
        return fail(name, f"token refused: {reason(exc)}", fix)
    except RetryableJobError as exc:
        return fail(name, reason(exc), _SLACK_DOWN)
    return ok(
        name,
        f"bot @{answer.get('user') or '?'} in {answer.get('team') or '?'}"
        f" ({answer.get('team_id') or '?'})",
    )
