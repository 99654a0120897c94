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
        *(entry.feature(settings) for entry in PLATFORMS),
    ]


def risks_of(settings: Settings) -> list[Risk]:
    platform_risks = [risk for entry in PLATFORMS for risk in entry.risks(settings)]
    return [*_public_url_risks(settings), *platform_risks]


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
