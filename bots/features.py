"""What the settings turn on, and the combinations of them that look wrong, as data.

Start-up logs one line per feature, `agent-relay doctor` prints them as `feature ...`
checks with the risks after them, and the status page shows the platforms' rows: all
three render these (relay/features.py gathers them, each platform describing its own
in its platform.py), so they never tell different stories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


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
