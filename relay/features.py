"""What the settings turn on, and the combinations of them that look wrong, as data.

Start-up logs one line per feature, `agent-relay doctor` prints them as `feature ...`
checks with the risks after them, and the status page shows the platforms' rows: all
three render what `Settings.features()` and `Settings.risks()` return, so they never
tell different stories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import SecretStr


class Settings(Protocol):
    """What the features are read from: relay.settings.Settings, which offers them as
    its `features()` and `risks()` (a Protocol, so that the two modules do not import
    each other)."""

    public_url: str | None
    api_token: SecretStr | None
    secret_key: SecretStr | None
    agent_server_api_key: SecretStr | None
    agent_webhook_secret: SecretStr | None
    slack_signing_secret: SecretStr | None
    slack_bot_token: SecretStr | None
    slack_client_id: str | None
    slack_client_secret: SecretStr | None
    github_app_id: str | None
    github_private_key: SecretStr | None
    github_private_key_path: str | None
    github_webhook_secret: SecretStr | None
    github_url: str
    gitlab_token: SecretStr | None
    gitlab_webhook_secret: SecretStr | None
    gitlab_url: str

    @property
    def slack_mode(self) -> Literal["oauth", "single"] | None: ...

    @property
    def github_mode(self) -> Literal["settings", "setup"] | None: ...

    @property
    def gitlab_enabled(self) -> bool: ...


@dataclass(frozen=True)
class Risk:
    """Settings that break something (`fail`) or look like a mistake (`warn`)."""

    level: Literal["fail", "warn"]
    detail: str
    fix: str


@dataclass(frozen=True)
class Feature:
    """An optional feature: on, and how; or off, and what would turn it on."""

    name: str
    enabled: bool
    # On: how it runs ("one workspace"), from what ("SLACK_BOT_TOKEN"), the path of
    # the setup page it runs from, and the address of the peer it talks to.
    mode: str | None = None
    source: str | None = None
    page: str | None = None
    address: str | None = None
    # Off: what would turn it on, or why it cannot be on.
    missing: str | None = None
    # What being off costs, when that is worse than a feature nobody uses.
    risk_when_off: Risk | None = None
    # A chat or code-review platform (a row of its own on the status page).
    platform: bool = False

    @property
    def detail(self) -> str | None:
        if not self.enabled:
            return self.missing
        how = f"{self.mode} at {self.page}" if self.mode and self.page else self.mode
        return ", ".join(part for part in (how, self.source) if part) or None

    @property
    def state(self) -> str:
        """`enabled`, `enabled (<how>)` or `disabled (<what is missing>)`."""
        state = "enabled" if self.enabled else "disabled"
        return f"{state} ({self.detail})" if self.detail else state

    def line(self) -> str:
        return f"{self.name}: {self.state}"


def features_of(settings: Settings) -> list[Feature]:
    return [
        Feature(
            "agent webhooks",
            bool(settings.agent_server_api_key or settings.agent_webhook_secret),
            missing="set AGENT_SERVER_API_KEY or AGENT_WEBHOOK_SECRET",
            # Without either secret every agent-server webhook is refused: no agent
            # answer ever comes back.
            risk_when_off=Risk(
                "fail",
                "no secret to accept the agent-server's webhooks with; /agent/* answers 401",
                "set AGENT_SERVER_API_KEY (or AGENT_WEBHOOK_SECRET) here and on the agent-server",
            ),
        ),
        Feature(
            "api",
            bool(settings.api_token),
            missing="set API_TOKEN",
            risk_when_off=Risk("warn", "API_TOKEN is unset: /api/* answers 401", "set API_TOKEN"),
        ),
        _slack(settings),
        _github(settings),
        Feature(
            "gitlab",
            settings.gitlab_enabled,
            address=settings.gitlab_url,
            missing="set GITLAB_TOKEN and GITLAB_WEBHOOK_SECRET",
            platform=True,
        ),
    ]


def _slack(settings: Settings) -> Feature:
    if settings.slack_mode == "oauth":
        return Feature("slack", True, "many workspaces", "OAuth at /slack/install", platform=True)
    if settings.slack_mode == "single":
        return Feature("slack", True, "one workspace", "SLACK_BOT_TOKEN", platform=True)
    if settings.slack_signing_secret and settings.slack_client_id and not settings.secret_key:
        missing = "OAuth needs SECRET_KEY to encrypt bot tokens"
    else:
        missing = "set SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN or SLACK_CLIENT_ID/SECRET"
    return Feature("slack", False, missing=missing, platform=True)


def _github(settings: Settings) -> Feature:
    if settings.github_mode == "settings":
        return Feature(
            "github", True, "app from GITHUB_APP_ID", address=settings.github_url, platform=True
        )
    if settings.github_mode == "setup":
        return Feature(
            "github",
            True,
            "app from the setup page",
            page="/github/setup",
            address=settings.github_url,
            platform=True,
        )
    return Feature(
        "github",
        False,
        missing="set GITHUB_APP_ID, GITHUB_PRIVATE_KEY(_PATH) and GITHUB_WEBHOOK_SECRET,"
        " or SECRET_KEY for the setup page",
        platform=True,
    )


def risks_of(settings: Settings) -> list[Risk]:
    return [
        *_public_url_risks(settings),
        *_slack_risks(settings),
        *_github_risks(settings),
        *_gitlab_risks(settings),
    ]


def _public_url_risks(settings: Settings) -> list[Risk]:
    enabled = [f.name for f in features_of(settings) if f.platform and f.enabled]
    if not enabled or settings.public_url:
        return []
    return [
        Risk(
            "warn",
            f"PUBLIC_URL is unset, yet {' and '.join(enabled)}"
            f" {'is' if len(enabled) == 1 else 'are'} enabled: installs, the setup page,"
            " GitLab hooks and the agent-server's webhooks need this server's address",
            "set PUBLIC_URL",
        )
    ]


def _slack_risks(settings: Settings) -> list[Risk]:
    risks = []
    oauth_asked = bool(settings.slack_client_id or settings.slack_client_secret)
    if oauth_asked and not (settings.slack_client_id and settings.slack_client_secret):
        missing = "SLACK_CLIENT_SECRET" if settings.slack_client_id else "SLACK_CLIENT_ID"
        risks.append(Risk("warn", f"Slack OAuth is half set: {missing} is unset", f"set {missing}"))
    if oauth_asked and not settings.secret_key:
        risks.append(
            Risk(
                "warn",
                "Slack OAuth needs SECRET_KEY to encrypt the workspaces' bot tokens",
                "set SECRET_KEY (at least 16 characters; keep it)",
            )
        )
    if settings.slack_mode == "oauth" and settings.slack_bot_token:
        risks.append(
            Risk(
                "warn",
                "SLACK_BOT_TOKEN is ignored: OAuth installations win",
                "unset SLACK_BOT_TOKEN",
            )
        )
    credentials = settings.slack_bot_token or settings.slack_client_id
    if credentials and not settings.slack_signing_secret:
        risks.append(
            Risk(
                "warn",
                "Slack credentials are set but SLACK_SIGNING_SECRET is not: Slack is off",
                "set SLACK_SIGNING_SECRET",
            )
        )
    return risks


def _github_risks(settings: Settings) -> list[Risk]:
    parts = {
        "GITHUB_APP_ID": bool(settings.github_app_id),
        "GITHUB_PRIVATE_KEY(_PATH)": bool(
            settings.github_private_key or settings.github_private_key_path
        ),
        "GITHUB_WEBHOOK_SECRET": bool(settings.github_webhook_secret),
    }
    if not any(parts.values()) or all(parts.values()):
        return []
    missing = ", ".join(name for name, present in parts.items() if not present)
    return [
        Risk(
            "warn",
            f"the GitHub App settings are incomplete ({missing} unset), so they are unused",
            f"set {missing}",
        )
    ]


def _gitlab_risks(settings: Settings) -> list[Risk]:
    if bool(settings.gitlab_token) == bool(settings.gitlab_webhook_secret):
        return []
    missing = "GITLAB_WEBHOOK_SECRET" if settings.gitlab_token else "GITLAB_TOKEN"
    return [Risk("warn", f"GitLab is off: {missing} is unset", f"set {missing}")]
