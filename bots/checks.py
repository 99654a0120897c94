"""What every doctor check shares: its result, and what a platform's check may use of
the run it is part of.

`agent-relay doctor` and the status page run the checks (relay/doctor); each platform
checks its own credentials (bots/<platform>/checks.py) through the `CheckRun` it is
handed, so a platform never reaches into the relay that runs it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import httpx

from db.secrets import SecretBox
from db.store import Store

CheckStatus = Literal["ok", "fail", "warn", "skip"]

_LABELS: dict[CheckStatus, str] = {"ok": "ok  ", "fail": "FAIL", "warn": "warn", "skip": "skip"}
# Job errors name the peer's HTTP status as "HTTP 401" (platforms) or "answered 401"
# (agent.http.send).
_STATUS_IN_ERROR = re.compile(r"\b(?:HTTP|answered) (\d{3})\b")


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


class CheckRun(Protocol):
    """One run of the checks, as a platform's check may use it."""

    @property
    def http(self) -> httpx.AsyncClient:
        """The run's own HTTP client, with the run's short timeout."""
        ...

    @property
    def timeout(self) -> float:
        """Seconds one check may take."""
        ...

    @property
    def store(self) -> Store: ...

    @property
    def secrets(self) -> SecretBox:
        """What stored credentials are sealed with (SECRET_KEY)."""
        ...

    @property
    def project(self) -> str | None:
        """The repository or project the operator asked about ("group/name", doctor's
        --gitlab-project), whose webhook to this relay is checked too."""
        ...

    async def bounded(
        self, name: str, check: Callable[[], Awaitable[CheckResult]], fix: str | None
    ) -> CheckResult:
        """`check`, or a failed result when it takes too long or breaks."""
        ...

    async def database_ready(self) -> str | None:
        """None when the database answers, else why it does not."""
        ...

    def add_secret(self, value: str) -> None:
        """A secret read during the run (a stored token): the run's texts are scrubbed
        of it as of the configured ones."""
        ...


# A platform's credential checks, with what it reads of the settings bound: the same
# shape for every platform, so the runner holds them in one list.
PlatformCheck = Callable[[CheckRun], Awaitable[list[CheckResult]]]


class PublicUrlSettings(Protocol):
    """The setting every platform's checks read: where this relay is reached."""

    public_url: str | None


def public_link(public_url: str | None, path: str) -> str:
    """`path` on this relay, as a fix names it (`$PUBLIC_URL/...` while unset)."""
    return f"{(public_url or '$PUBLIC_URL').rstrip('/')}{path}"


async def done(result: CheckResult) -> CheckResult:
    """A result known without asking anyone, as an awaitable among checks that ask."""
    return result


def status_of(exc: Exception) -> int | None:
    """The HTTP status a job error names, if it names one."""
    found = _STATUS_IN_ERROR.search(str(exc))
    return int(found.group(1)) if found else None


def reason(exc: Exception) -> str:
    """A job error's text (they never name a token), on one line."""
    return " ".join(str(exc).split())[:300]
