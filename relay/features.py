"""What the settings turn on, and the combinations of them that look wrong, as data.

Start-up logs one line per feature, `agent-relay doctor` prints them as `feature ...`
checks with the risks after them, and the status page shows the platforms' rows: all
three render what `Settings.features()` and `Settings.risks()` return, so they never
tell different stories.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import SecretStr

from bots.features import Feature, Risk
from relay.platforms import PLATFORMS


class Settings(Protocol):
    """What the features are read from: relay.settings.Settings, which offers them as
    its `features()` and `risks()` (a Protocol, so that the two modules do not import
    each other). Each platform reads its own fields (bots/<platform>/platform.py)."""

    public_url: str | None
    api_token: SecretStr | None
    agent_server_api_key: SecretStr | None
    agent_webhook_secret: SecretStr | None

    # PULL_REQUESTS: "draft", "ready" or "off".
    @property
    def pull_requests(self) -> str: ...

    # CONFIRMATION_POLICY: "never", "always" or "risky".
    @property
    def confirmation_policy(self) -> str: ...

    @property
    def relay_url_for_agent(self) -> str | None: ...


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
        _approvals(settings),
        *(entry.feature(settings) for entry in PLATFORMS),
    ]


# What each CONFIRMATION_POLICY holds for an answer in the thread.
_HELD = {"always": "every action waits", "risky": "risky actions wait"}


def _approvals(settings: Settings) -> Feature:
    held = _HELD.get(settings.confirmation_policy)
    return Feature(
        "approvals",
        held is not None,
        mode=f"{held} for an answer in its thread" if held else None,
        source=f"CONFIRMATION_POLICY={settings.confirmation_policy}" if held else None,
        missing="CONFIRMATION_POLICY=never: the agent runs every action without asking",
    )


# The platforms whose repositories each conversation gets a checkout of.
_REPOSITORY_HOSTS = ("github", "gitlab")


def risks_of(settings: Settings) -> list[Risk]:
    platform_risks = [risk for entry in PLATFORMS for risk in entry.risks(settings)]
    return [*_public_url_risks(settings), *_credentials_risks(settings), *platform_risks]


def _credentials_risks(settings: Settings) -> list[Risk]:
    """The agent's git and terminal fetch its repository token from the relay, at
    AGENT_RELAY_URL (default PUBLIC_URL): without either there is nowhere to ask."""
    hosts = [f.name for f in features_of(settings) if f.name in _REPOSITORY_HOSTS and f.enabled]
    if not hosts or settings.relay_url_for_agent:
        return []
    pushes = settings.pull_requests != "off"
    return [
        Risk(
            "warn",
            "AGENT_RELAY_URL and PUBLIC_URL are unset, so the agent-server has nowhere to"
            " fetch the agent's repository credentials from: checkouts of private"
            f" {' and '.join(hosts)} repositories fail"
            + (" and the agent cannot push its work" if pushes else ""),
            "set AGENT_RELAY_URL to this server's address as the agent-server reaches it"
            " (or PUBLIC_URL)",
        )
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
