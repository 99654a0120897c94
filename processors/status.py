"""TurnStatus: what a turn's status message says (bots.texts renders it)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class TurnStatus:
    """The agent's progress on one turn; `outcome` is set once the turn has ended."""

    steps: int
    step: str | None
    elapsed: float | None
    url: str | None
    repository: str | None = None
    branch: str | None = None
    outcome: Outcome | None = None
    # Who stopped the turn, as the platform writes a person ("@alice", "<@U1>").
    stopped_by: str | None = None
    # What the "on it" told the asker that stays true while the turn runs and after
    # (a repository it could not check out).
    note: str | None = None

    @property
    def final(self) -> bool:
        return self.outcome is not None
