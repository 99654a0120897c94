"""Is this deployment set up right? Settings, database, agent-server, platforms, PUBLIC_URL.

`agent-relay doctor` prints these checks; the status page shows them. Every check
that talks to a peer has a short timeout, so a dead peer costs seconds, never a hang;
checks that do not depend on each other run concurrently. Platform calls go through
the clients the relay itself uses (and their *_URL settings), so a check fails for the
reasons the relay's own calls would.

No result carries a secret: details are built from names, ids and the error codes
peers answer with, and every text is scrubbed of the configured secrets (and of
tokens read from the database) before it leaves this module.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import httpx
from pydantic import SecretStr

from agent.http import failure_name, new_http_client
from bots.github.api import GithubApi
from bots.github.credentials import APP_PLATFORM as GITHUB_APP_PLATFORM
from bots.github.credentials import AppCredentials
from bots.gitlab.api import GitlabApi
from bots.gitlab.setup import hook_events, hook_url
from bots.slack import PLATFORM as SLACK
from bots.slack.api import SlackApi, SlackTeam, new_web_client
from db.installations import STATUS_ACTIVE, get_installation, list_installations
from db.jobs import JobStatus, PermanentJobError, RetryableJobError
from db.migrations import LATEST_VERSION, current_version
from db.secrets import CredentialsUnreadable
from db.sqlite import sqlite_path
from relay.settings import Settings, SettingsError

if TYPE_CHECKING:
    from relay.app import Relay

log = logging.getLogger(__name__)

CheckStatus = Literal["ok", "fail", "warn", "skip"]

# Seconds one check may take; a peer slower than this is reported as not answering.
DEFAULT_CHECK_TIMEOUT = 5.0
# Workspaces of a Slack OAuth deployment are asked this many at a time.
SLACK_CHECKS_AT_ONCE = 8
# Secrets shorter than this are not scrubbed from texts: replacing every "abc" in
# a line would garble it while hiding nothing worth hiding.
_MIN_SCRUBBED_SECRET_CHARS = 6
_LABELS: dict[CheckStatus, str] = {"ok": "ok  ", "fail": "FAIL", "warn": "warn", "skip": "skip"}
# Job errors name the peer's HTTP status as "HTTP 401" (platforms) or "answered 401"
# (agent.http.send).
_STATUS_IN_ERROR = re.compile(r"\b(?:HTTP|answered) (\d{3})\b")
# An id no conversation has: asking for it shows whether the agent-server accepts
# the key (404) or not (401) and changes nothing.
_PROBE_CONVERSATION_ID = uuid.UUID(int=0).hex
_SEE_DEBUG_LOG = "run again with LOG_LEVEL=DEBUG to see where"


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome; `fix` names the setting or command that mends it."""

    name: str
    status: CheckStatus
    detail: str
    fix: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def line(self) -> str:
        """`ok   <name>: <detail>` or `FAIL <name>: <detail> -> <fix>`."""
        text = f"{_LABELS[self.status]} {self.name}: {self.detail}"
        return f"{text} -> {self.fix}" if self.fix and self.status != "ok" else text


def ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, "ok", detail)


def fail(name: str, detail: str, fix: str | None) -> CheckResult:
    return CheckResult(name, "fail", detail, fix)


def warn(name: str, detail: str, fix: str | None = None) -> CheckResult:
    return CheckResult(name, "warn", detail, fix)


def skip(name: str, detail: str, fix: str | None = None) -> CheckResult:
    return CheckResult(name, "skip", detail, fix)


# -- settings -----------------------------------------------------------------------


def settings_failures(error: SettingsError) -> list[CheckResult]:
    """The failed `settings` lines of settings that do not load (one per variable)."""
    results = []
    for problem in str(error.code).splitlines():
        named = re.match(r"invalid setting (\S+): (.*)", problem)
        if named is None:
            results.append(fail("settings", problem, "fix it in the environment or .env"))
            continue
        variable, reason = named.groups()
        results.append(
            fail(
                "settings",
                f"{variable} is invalid: {reason}",
                f"fix {variable} (environment or .env)",
            )
        )
    return results


def settings_checks(settings: Settings) -> list[CheckResult]:
    """Settings that load, the features they turn on, and risky combinations."""
    results = [ok("settings", "loaded")]
    for line in settings.feature_report():
        feature, _, state = line.partition(": ")
        name = f"feature {feature}"
        if state.startswith("enabled"):
            results.append(ok(name, state))
        elif feature == "agent webhooks":
            # Without either secret every agent-server webhook is refused: no agent
            # answer ever comes back.
            results.append(
                fail(
                    name,
                    "no secret to accept the agent-server's webhooks with; /agent/* answers 401",
                    "set AGENT_SERVER_API_KEY (or AGENT_WEBHOOK_SECRET) here and on the"
                    " agent-server",
                )
            )
        elif feature == "api":
            results.append(warn(name, "API_TOKEN is unset: /api/* answers 401", "set API_TOKEN"))
        else:
            results.append(skip(name, state))
    return results + _risky_settings(settings)


def _risky_settings(settings: Settings) -> list[CheckResult]:
    risks: list[CheckResult] = []
    enabled = [
        name
        for name, on in (
            ("slack", settings.slack_mode is not None),
            ("github", settings.github_mode is not None),
            ("gitlab", settings.gitlab_enabled),
        )
        if on
    ]
    if enabled and not settings.public_url:
        risks.append(
            warn(
                "settings",
                f"PUBLIC_URL is unset, yet {' and '.join(enabled)}"
                f" {'is' if len(enabled) == 1 else 'are'} enabled: installs, the setup page,"
                " GitLab hooks and the agent-server's webhooks need this server's address",
                "set PUBLIC_URL",
            )
        )
    slack_oauth_asked = bool(settings.slack_client_id or settings.slack_client_secret)
    if slack_oauth_asked and not (settings.slack_client_id and settings.slack_client_secret):
        missing = "SLACK_CLIENT_SECRET" if settings.slack_client_id else "SLACK_CLIENT_ID"
        risks.append(
            warn("settings", f"Slack OAuth is half set: {missing} is unset", f"set {missing}")
        )
    if slack_oauth_asked and not settings.secret_key:
        risks.append(
            warn(
                "settings",
                "Slack OAuth needs SECRET_KEY to encrypt the workspaces' bot tokens",
                "set SECRET_KEY (at least 16 characters; keep it)",
            )
        )
    if settings.slack_mode == "oauth" and settings.slack_bot_token:
        risks.append(
            warn(
                "settings",
                "SLACK_BOT_TOKEN is ignored: OAuth installations win",
                "unset SLACK_BOT_TOKEN",
            )
        )
    slack_credentials = settings.slack_bot_token or settings.slack_client_id
    if slack_credentials and not settings.slack_signing_secret:
        risks.append(
            warn(
                "settings",
                "Slack credentials are set but SLACK_SIGNING_SECRET is not: Slack is off",
                "set SLACK_SIGNING_SECRET",
            )
        )
    github_parts = {
        "GITHUB_APP_ID": bool(settings.github_app_id),
        "GITHUB_PRIVATE_KEY(_PATH)": bool(
            settings.github_private_key or settings.github_private_key_path
        ),
        "GITHUB_WEBHOOK_SECRET": bool(settings.github_webhook_secret),
    }
    if any(github_parts.values()) and not all(github_parts.values()):
        missing = ", ".join(name for name, present in github_parts.items() if not present)
        risks.append(
            warn(
                "settings",
                f"the GitHub App settings are incomplete ({missing} unset), so they are unused",
                f"set {missing}",
            )
        )
    if bool(settings.gitlab_token) != bool(settings.gitlab_webhook_secret):
        missing = "GITLAB_WEBHOOK_SECRET" if settings.gitlab_token else "GITLAB_TOKEN"
        risks.append(warn("settings", f"GitLab is off: {missing} is unset", f"set {missing}"))
    return risks


# -- the checks ---------------------------------------------------------------------


class Checks:
    """The checks of one relay (built with Relay.build; workers need not run).

    The relay's store may be connected already (a running server); with
    `connect_database` the database check connects it first (the CLI), and reports
    when it cannot. `gitlab_project` ("group/name") adds the check of that project's
    hook to this relay.
    """

    def __init__(
        self,
        relay: Relay,
        *,
        timeout: float = DEFAULT_CHECK_TIMEOUT,
        gitlab_project: str | None = None,
        connect_database: bool = False,
    ) -> None:
        self.relay = relay
        self.settings = relay.settings
        self.timeout = timeout
        self.gitlab_project = gitlab_project
        self.connect_database = connect_database
        self.connected = False
        self._connect_lock = asyncio.Lock()

    async def run_all(self) -> list[CheckResult]:
        """Every check, in a fixed order (settings, database, agent-server, platforms,
        PUBLIC_URL); the ones that talk to peers run concurrently."""
        async with _Run(self) as run:
            groups = await asyncio.gather(
                run.guarded("database", run.database()),
                run.guarded("agent-server", run.agent_server()),
                run.guarded("platforms", run.platforms()),
                run.guarded("public url", run.public_url()),
            )
            results = settings_checks(self.settings)
            for group in groups:
                results += group
            return run.scrubbed(results)

    async def platforms(self) -> list[CheckResult]:
        """The platform credential checks only: Slack, GitHub, GitLab."""
        async with _Run(self) as run:
            return run.scrubbed(await run.guarded("platforms", run.platforms()))

    async def agent_server(self) -> list[CheckResult]:
        """The agent-server checks only: it answers, it takes the key (the status page)."""
        async with _Run(self) as run:
            return run.scrubbed(await run.guarded("agent-server", run.agent_server()))

    async def connect(self) -> None:
        async with self._connect_lock:
            if self.connect_database and not self.connected:
                await self.relay.store.connect()
                self.connected = True


class _Run:
    """One run of the checks: its own short-timeout HTTP clients, and the database
    probe that the checks which read the database wait for."""

    def __init__(self, checks: Checks) -> None:
        self.checks = checks
        self.relay = checks.relay
        self.settings = checks.settings
        self.timeout = checks.timeout
        # The relay's own kind of client: what it checks is what the relay will meet.
        self.http = new_http_client(timeout=httpx.Timeout(self.timeout))
        self._secrets = set(_configured_secrets(self.settings))
        self._database: asyncio.Task[CheckResult] | None = None

    async def __aenter__(self) -> _Run:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    # -- plumbing ---------------------------------------------------------------------

    def scrubbed(self, results: Iterable[CheckResult]) -> list[CheckResult]:
        secrets = sorted(
            (s for s in self._secrets if len(s) >= _MIN_SCRUBBED_SECRET_CHARS),
            key=len,
            reverse=True,
        )

        def scrub(text: str) -> str:
            for secret in secrets:
                text = text.replace(secret, "***")
            return text

        return [
            replace(r, detail=scrub(r.detail), fix=scrub(r.fix) if r.fix else r.fix)
            for r in results
        ]

    async def bounded(
        self, name: str, check: Callable[[], Awaitable[CheckResult]], fix: str | None
    ) -> CheckResult:
        """`check`, or a failed result when it takes longer than the timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                return await check()
        except TimeoutError:
            return fail(name, f"no answer within {self.timeout:g} s", fix)
        except Exception as exc:
            # An answer no check expected (a proxy's HTML page...): a failed line,
            # never a traceback instead of the report.
            log.debug("check %s broke", name, exc_info=True)
            return fail(name, f"unexpected {_error_text(exc)}", fix)

    async def guarded(self, name: str, checks: Awaitable[list[CheckResult]]) -> list[CheckResult]:
        """A group of checks; one failed line if it breaks outside any single check."""
        try:
            return await checks
        except Exception as exc:
            log.debug("checks of %s broke", name, exc_info=True)
            return [fail(name, f"unexpected {_error_text(exc)}", _SEE_DEBUG_LOG)]

    def database_probe(self) -> asyncio.Task[CheckResult]:
        """Connect (when asked) and read the schema version, once per run."""
        if self._database is None:
            self._database = asyncio.ensure_future(
                self.bounded("database", self._probe_database, "check DATABASE_URL")
            )
        return self._database

    async def database_ready(self) -> str | None:
        """None when the database answers, else why it does not."""
        probe = await self.database_probe()
        return None if probe.status == "ok" else "the database does not answer"

    # -- database ---------------------------------------------------------------------

    async def _probe_database(self) -> CheckResult:
        store = self.relay.store
        where = _database_place(self.settings.database_url)
        if store.is_sqlite and self.checks.connect_database and not self.checks.connected:
            path = sqlite_path(self.settings.database_url)
            # Connecting would create an empty file; say what is missing instead.
            if path != ":memory:" and not await asyncio.to_thread(os.path.exists, path):
                return fail("database", f"no database file at {path}", "run `agent-relay migrate`")
        try:
            await self.checks.connect()
            version = await current_version(store)
        except Exception as exc:
            return fail(
                "database",
                f"{where} does not answer: {_error_text(exc)}",
                "check DATABASE_URL and that the database server runs",
            )
        return ok("database", f"{where} answers (schema version {version})")

    async def database(self) -> list[CheckResult]:
        probe = await self.database_probe()
        if probe.status != "ok":
            return [
                probe,
                skip("schema", "the database does not answer"),
                skip("jobs", "the database does not answer"),
                skip("stored credentials", "the database does not answer"),
            ]
        schema = await self.bounded("schema", self._schema, "run `agent-relay migrate`")
        if schema.status != "ok":
            return [
                probe,
                schema,
                skip("jobs", "the schema is not current"),
                skip("stored credentials", "the schema is not current"),
            ]
        jobs = await self.bounded("jobs", self._failed_jobs, "check the database")
        stored = await self.bounded(
            "stored credentials", self._stored_credentials, "check the database"
        )
        return [probe, schema, jobs, stored]

    async def _schema(self) -> CheckResult:
        version = await current_version(self.relay.store)
        if version == LATEST_VERSION:
            return ok("schema", f"version {version}, current")
        if version < LATEST_VERSION:
            return fail(
                "schema",
                f"version {version}, this release needs {LATEST_VERSION}",
                "run `agent-relay migrate`",
            )
        return fail(
            "schema",
            f"version {version} is newer than this release knows ({LATEST_VERSION})",
            "run the agent-relay release that migrated it",
        )

    async def _failed_jobs(self) -> CheckResult:
        failed = (await self.relay.queue.counts()).get(JobStatus.FAILED.value, 0)
        if not failed:
            return ok("jobs", "no job has failed for good")
        return warn(
            "jobs",
            f"{failed} job(s) failed for good",
            "see `agent-relay jobs list --status failed`, fix the cause, then"
            " `agent-relay jobs retry ID`",
        )

    async def _stored_credentials(self) -> CheckResult:
        """Slack workspaces' tokens and the setup page's GitHub App are sealed with
        SECRET_KEY: without it, or with another one, they are lost to the relay."""
        sealed = [
            row
            for row in await list_installations(self.relay.store)
            if row.platform in (SLACK, GITHUB_APP_PLATFORM)
        ]
        if not sealed:
            return ok("stored credentials", "none stored")
        if not self.relay.secrets.available:
            return warn(
                "stored credentials",
                f"{len(sealed)} stored credential(s) cannot be read: SECRET_KEY is unset",
                "set SECRET_KEY to the key they were stored with",
            )
        try:
            # One row tells: every row is sealed with the same key.
            await get_installation(
                self.relay.store, self.relay.secrets, sealed[0].platform, sealed[0].account_id
            )
        except CredentialsUnreadable:
            return fail(
                "stored credentials",
                "they do not decrypt: SECRET_KEY is not the key they were stored with",
                "set SECRET_KEY back to that key (or reinstall the Slack app and redo"
                " /github/setup)",
            )
        return ok("stored credentials", f"{len(sealed)} readable with SECRET_KEY")

    # -- agent-server -----------------------------------------------------------------

    async def agent_server(self) -> list[CheckResult]:
        url = _display_url(self.settings.agent_server_url)
        try:
            async with asyncio.timeout(self.timeout):
                reachable, key = await self._agent_probe(url)
        except TimeoutError:
            reachable = fail(
                "agent-server",
                f"{url}: no answer within {self.timeout:g} s",
                "start the agent-server, or fix AGENT_SERVER_URL",
            )
            key = skip("agent-server key", "the agent-server does not answer")
        public = self.settings.public_url
        target = f"{public.rstrip('/')}/agent" if public else "$PUBLIC_URL/agent"
        webhooks = skip(
            "agent-server webhooks",
            "the agent-server does not report where it sends its webhooks",
            f"check OH_WEBHOOKS_0_BASE_URL={target} on the agent-server",
        )
        return [reachable, key, webhooks]

    async def _agent_probe(self, url: str) -> tuple[CheckResult, CheckResult]:
        """(is it there, does it take the key), from one read of a conversation that
        does not exist: 404 with a good key, 401 with a bad one."""
        api_key = _secret(self.settings.agent_server_api_key)
        agent = self.relay.agent
        answers = ok("agent-server", f"{url} answers")
        try:
            await agent.get_conversation(_PROBE_CONVERSATION_ID)
        except PermanentJobError as exc:
            status = _status_of(exc)
            if status in (401, 403):
                fix = (
                    "set AGENT_SERVER_API_KEY to one of the agent-server's OH_SESSION_API_KEYS_*"
                    if api_key
                    else "set AGENT_SERVER_API_KEY (the agent-server requires a key)"
                )
                return answers, fail(
                    "agent-server key", f"refused X-Session-API-Key (HTTP {status})", fix
                )
            return (
                fail(
                    "agent-server",
                    f"{url} is not an agent-server API ({_reason(exc)})",
                    "fix AGENT_SERVER_URL (the agent-server's address, without /api)",
                ),
                skip("agent-server key", "no agent-server API at AGENT_SERVER_URL"),
            )
        except RetryableJobError as exc:
            status = _status_of(exc)
            cause = failure_name(exc.__cause__) if exc.__cause__ else "no answer"
            return (
                fail(
                    "agent-server",
                    f"{url} answered {status}" if status else f"{url} does not answer ({cause})",
                    "start the agent-server, or fix AGENT_SERVER_URL",
                ),
                skip("agent-server key", "the agent-server does not answer"),
            )
        if api_key:
            return answers, ok("agent-server key", "X-Session-API-Key accepted")
        return answers, ok("agent-server key", "no key configured, and none asked for")

    # -- platforms --------------------------------------------------------------------

    async def platforms(self) -> list[CheckResult]:
        groups = await asyncio.gather(self.slack(), self.github(), self.gitlab())
        return [result for group in groups for result in group]

    async def slack(self) -> list[CheckResult]:
        mode = self.settings.slack_mode
        if mode is None:
            return [skip("slack", "not configured")]
        if mode == "single":
            return [
                await self.bounded(
                    "slack", self._slack_single, "check SLACK_API_URL and Slack's status"
                )
            ]
        unavailable = await self.database_ready()
        if unavailable:
            return [skip("slack", f"cannot list the installed workspaces: {unavailable}")]
        return await self._slack_workspaces()

    async def _slack_single(self) -> CheckResult:
        teams = SlackApi(
            self.settings.slack_api_url, bot_token=_secret(self.settings.slack_bot_token)
        )
        return await self._slack_auth_test(
            "slack",
            await teams.team(team_id="-"),
            "set SLACK_BOT_TOKEN to the app's Bot User OAuth Token (xoxb-...)",
        )

    async def _slack_workspaces(self) -> list[CheckResult]:
        try:
            async with asyncio.timeout(self.timeout):
                rows = await list_installations(self.relay.store, platform=SLACK)
        except TimeoutError:
            return [
                fail("slack", "listing the installed workspaces timed out", "check the database")
            ]
        install = f"{(self.settings.public_url or '$PUBLIC_URL').rstrip('/')}/slack/install"
        if not rows:
            return [warn("slack", "no workspace has installed the app yet", f"open {install}")]
        at_once = asyncio.Semaphore(SLACK_CHECKS_AT_ONCE)

        async def check(details: dict[str, Any], name: str) -> CheckResult:
            async with at_once:
                return await self.bounded(
                    name,
                    lambda: self._slack_workspace(name, details, install),
                    "check SLACK_API_URL and Slack's status",
                )

        checks: list[Awaitable[CheckResult]] = []
        for row in rows:
            details = row.details
            name = f"slack workspace {details.get('team_id') or row.account_id}"
            if row.status != STATUS_ACTIVE:
                checks.append(_done(skip(name, f"installation is {row.status}")))
            else:
                checks.append(check(details, name))
        return list(await asyncio.gather(*checks))

    async def _slack_workspace(
        self, name: str, details: dict[str, Any], install: str
    ) -> CheckResult:
        store = self.relay.slack_installations
        assert store is not None, "slack_mode oauth builds the installation store"
        reinstall = f"reinstall the app in that workspace at {install}"
        try:
            bot = await store.async_find_bot(
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
        self._secrets.add(bot.bot_token)
        team = SlackTeam(
            str(details.get("team_id") or "-"),
            new_web_client(self.settings.slack_api_url, bot.bot_token),
        )
        return await self._slack_auth_test(name, team, reinstall)

    async def _slack_auth_test(self, name: str, team: SlackTeam, fix: str) -> CheckResult:
        try:
            answer = await team.call("auth.test")
        except PermanentJobError as exc:
            return fail(name, f"token refused: {_reason(exc)}", fix)
        except RetryableJobError as exc:
            return fail(name, _reason(exc), "check SLACK_API_URL and Slack's status")
        return ok(
            name,
            f"bot @{answer.get('user') or '?'} in {answer.get('team') or '?'}"
            f" ({answer.get('team_id') or '?'})",
        )

    async def github(self) -> list[CheckResult]:
        source = self.relay.github_source
        if self.settings.github_mode is None or source is None:
            return [skip("github", "not configured")]
        if not source.configured_by_settings:
            unavailable = await self.database_ready()
            if unavailable:
                return [skip("github app", f"cannot read the stored app: {unavailable}")]
        clients = GithubApi(self.http, source, self.settings.github_api_url)
        try:
            async with asyncio.timeout(self.timeout):
                app = await source.current()
        except Exception as exc:
            return [
                fail(
                    "github app",
                    f"the stored app is unreadable ({type(exc).__name__})",
                    "set SECRET_KEY back to the key it was stored with",
                )
            ]
        if app is None:
            setup = f"{(self.settings.public_url or '$PUBLIC_URL').rstrip('/')}/github/setup"
            return [warn("github app", "no app yet", f"create one at {setup}")]
        self._secrets.update(
            s for s in (app.private_key, app.webhook_secret, app.client_secret) if s
        )
        found: dict[str, Any] = {}
        checked = await self.bounded(
            "github app",
            lambda: self._github_app(clients, app, found),
            "check GITHUB_API_URL and GitHub's status",
        )
        if checked.status != "ok":
            return [checked, skip("github installations", "the app check failed")]
        installations = await self.bounded(
            "github installations",
            lambda: self._github_installations(clients, found.get("html_url") or app.html_url),
            "check GITHUB_API_URL and GitHub's status",
        )
        return [checked, installations]

    async def _github_app(
        self, clients: GithubApi, app: AppCredentials, found: dict[str, Any]
    ) -> CheckResult:
        """`GET /app` with the app's JWT; what GitHub answers is put into `found`."""
        origin = "settings" if app.source == "settings" else "the setup page"
        try:
            found.update(await clients.app_info())
        except PermanentJobError as exc:
            if app.source == "settings":
                fix = (
                    "check GITHUB_APP_ID and GITHUB_PRIVATE_KEY(_PATH); generate a new private"
                    " key in the app's settings if this one was revoked"
                )
            else:
                fix = (
                    "set GITHUB_APP_ID, GITHUB_PRIVATE_KEY(_PATH) and GITHUB_WEBHOOK_SECRET of a"
                    " working app (settings win over the stored one)"
                )
            status = _status_of(exc)
            if status in (401, 403, 404):
                detail = f"GET /app refused the app's JWT (HTTP {status})"
            else:
                detail = _reason(exc)
            return fail("github app", f"{detail}; app {app.app_id} from {origin}", fix)
        except RetryableJobError as exc:
            return fail("github app", _reason(exc), "check GITHUB_API_URL and GitHub's status")
        slug = found.get("slug") or found.get("name") or "?"
        return ok("github app", f"{slug} (id {app.app_id}, from {origin})")

    async def _github_installations(self, clients: GithubApi, html_url: str | None) -> CheckResult:
        try:
            installations = await clients.app_installations()
        except (PermanentJobError, RetryableJobError) as exc:
            return fail(
                "github installations", _reason(exc), "check GITHUB_API_URL and GitHub's status"
            )
        if not installations:
            where = f"{html_url}/installations/new" if html_url else "the app's page on GitHub"
            return warn(
                "github installations", "the app is installed nowhere", f"install it from {where}"
            )
        accounts = [
            str((i.get("account") or {}).get("login") or i.get("id")) for i in installations
        ]
        suspended = [
            account
            for account, i in zip(accounts, installations, strict=True)
            if i.get("suspended_at")
        ]
        detail = f"{len(installations)} installation(s): {', '.join(accounts)}"
        if suspended:
            return warn(
                "github installations",
                f"{detail}; suspended: {', '.join(suspended)}",
                "unsuspend the app in those accounts' GitHub settings",
            )
        return ok("github installations", detail)

    async def gitlab(self) -> list[CheckResult]:
        token = _secret(self.settings.gitlab_token)
        if self.relay.gitlab is None or token is None:
            return [skip("gitlab", "not configured")]
        api = GitlabApi(self.http, self.settings.gitlab_url, token)
        user = await self.bounded(
            "gitlab", lambda: self._gitlab_user(api), "check GITLAB_URL and GitLab's status"
        )
        if self.checks.gitlab_project is None:
            hook = skip(
                "gitlab webhook",
                "no project named",
                "pass --gitlab-project group/name to check its hook",
            )
        elif user.status != "ok":
            hook = skip("gitlab webhook", "needs a working GITLAB_TOKEN")
        elif not self.settings.public_url:
            hook = skip("gitlab webhook", "PUBLIC_URL is unset", "set PUBLIC_URL")
        else:
            project, public = self.checks.gitlab_project, self.settings.public_url
            hook = await self.bounded(
                "gitlab webhook",
                lambda: self._gitlab_hook(api, project, public),
                "check GITLAB_URL and GitLab's status",
            )
        return [user, hook]

    async def _gitlab_user(self, api: GitlabApi) -> CheckResult:
        try:
            user = await api.bot_user()
        except PermanentJobError as exc:
            status = _status_of(exc)
            if status in (401, 403):
                return fail(
                    "gitlab",
                    f"GET /user refused GITLAB_TOKEN (HTTP {status})",
                    "set GITLAB_TOKEN to a valid access token with scope api",
                )
            return fail("gitlab", _reason(exc), "check GITLAB_URL (the instance, without /api/v4)")
        except RetryableJobError as exc:
            return fail("gitlab", _reason(exc), "check GITLAB_URL and GitLab's status")
        return ok("gitlab", f"token works as @{user.username} (user {user.id})")

    async def _gitlab_hook(self, api: GitlabApi, project: str, public_url: str) -> CheckResult:
        url = hook_url(public_url)
        install = f"run `agent-relay gitlab install-webhook --project {project}`"
        try:
            hooks = await api.project_hooks(project)
        except PermanentJobError as exc:
            return fail(
                "gitlab webhook",
                f"cannot list {project}'s hooks: {_reason(exc)}",
                "check the project path; the token's user needs Maintainer to see hooks",
            )
        except RetryableJobError as exc:
            return fail("gitlab webhook", _reason(exc), "check GITLAB_URL and GitLab's status")
        ours = [hook for hook in hooks if hook.get("url") == url]
        if not ours:
            return fail("gitlab webhook", f"{project} has no hook to {url}", install)
        hook = ours[0]
        wanted = hook_events()
        differs = sorted(n for n, v in wanted.items() if n in hook and hook[n] != v)
        if differs:
            return warn(
                "gitlab webhook",
                f"hook {hook.get('id')} on {project} differs in {', '.join(differs)}",
                install,
            )
        return ok("gitlab webhook", f"hook {hook.get('id')} on {project} sends to {url}")

    # -- PUBLIC_URL -------------------------------------------------------------------

    async def public_url(self) -> list[CheckResult]:
        public = self.settings.public_url
        if not public:
            return [skip("public url", "PUBLIC_URL is unset", "set PUBLIC_URL")]
        fix = "make PUBLIC_URL reach this server (`agent-relay serve`, proxy, DNS)"
        return [await self.bounded("public url", lambda: self._healthz(public, fix), fix)]

    async def _healthz(self, public: str, fix: str) -> CheckResult:
        url = f"{_display_url(public).rstrip('/')}/healthz"
        try:
            response = await self.http.get(f"{public.rstrip('/')}/healthz")
        except (httpx.HTTPError, aiohttp.ClientError) as exc:
            return fail("public url", f"GET {url}: {failure_name(exc)}", fix)
        if response.status_code != 200:
            return fail("public url", f"GET {url} answered {response.status_code}", fix)
        return ok("public url", f"GET {url} answered 200")


# -- helpers ------------------------------------------------------------------------


async def _done(result: CheckResult) -> CheckResult:
    """A result known without asking anyone, as an awaitable among checks that ask."""
    return result


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _configured_secrets(settings: Settings) -> Iterable[str]:
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            yield value.get_secret_value()
    password = urlsplit(settings.database_url).password
    if password:
        yield password
    try:
        private_key = settings.github_private_key_text()
    except OSError:
        private_key = None
    if private_key:
        yield private_key


def _display_url(url: str) -> str:
    """`url` without user name and password, to be printed."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _database_place(url: str) -> str:
    if url.startswith("sqlite"):
        return f"sqlite {sqlite_path(url)}"
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"postgresql {parts.hostname or 'localhost'}{port}{parts.path}"


def _status_of(exc: Exception) -> int | None:
    found = _STATUS_IN_ERROR.search(str(exc))
    return int(found.group(1)) if found else None


def _reason(exc: Exception) -> str:
    """A job error's text (they never name a token), on one line."""
    return " ".join(str(exc).split())[:300]


def _error_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
