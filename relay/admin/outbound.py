"""The status page's outbound checks (agent-server, platform credentials): doctor's
own (relay.doctor.runner.Checks), so the page and the command agree, cached for a
minute, and summed up per part as the page shows them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from bots.checks import CheckResult, CheckStatus

log = logging.getLogger(__name__)

T = TypeVar("T")

# Outbound checks (agent-server, platform credentials) are cached this long, so a page
# that refreshes itself every few seconds does not call them each time.
CHECK_TTL_SECONDS = 60.0
# All outbound checks together (each one has its own, shorter timeout in relay/doctor;
# a Slack deployment with many workspaces asks them a few at a time).
CHECKS_TIMEOUT_SECONDS = 15.0
# Which status a part shows when its checks disagree: the worst one.
_SEVERITY: dict[CheckStatus, int] = {"skip": 0, "ok": 1, "warn": 2, "fail": 3}


class OutboundChecks(Protocol):
    """The checks the page asks of its peers; relay.doctor.runner.Checks is the real one.
    Both return CheckResults named after what they checked ("agent-server key",
    "slack workspace T0ACME", "github app"...), with secrets already scrubbed."""

    async def agent_server(self) -> list[CheckResult]: ...

    async def platforms(self) -> list[CheckResult]: ...


class NoChecks:
    """Checks for a page built without peers to ask (unit tests of other parts)."""

    async def agent_server(self) -> list[CheckResult]:
        return []

    async def platforms(self) -> list[CheckResult]:
        return []


@dataclass(frozen=True)
class Outbound:
    """One run of the outbound checks; `error` when they could not run at all."""

    agent: list[CheckResult]
    platforms: list[CheckResult]
    error: str | None = None


@dataclass(frozen=True)
class CheckedState:
    """One part's checks as the page shows them: the worst status among them, and the
    results worth showing (skipped ones only when nothing else was checked)."""

    status: CheckStatus
    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def checked_state(results: Sequence[CheckResult]) -> CheckedState | None:
    """The state of one part's results; None when there are none ("not checked")."""
    if not results:
        return None
    status = max((result.status for result in results), key=_SEVERITY.__getitem__)
    shown = [result for result in results if status == "skip" or result.status != "skip"]
    return CheckedState(status, tuple(shown))


def platform_of(result: CheckResult, platforms: Collection[str]) -> str | None:
    """The platform (one of `platforms`) a result is of (`slack workspace T1`: slack)."""
    first = result.name.split(" ", 1)[0]
    return first if first in platforms else None


async def run_outbound(checks: OutboundChecks, platforms: Collection[str]) -> Outbound:
    """Both groups of checks, within CHECKS_TIMEOUT_SECONDS; a group that broke in the
    runner (a result of no platform) is the run's error."""
    try:
        async with asyncio.timeout(CHECKS_TIMEOUT_SECONDS):
            agent, results = await asyncio.gather(checks.agent_server(), checks.platforms())
    except TimeoutError:
        log.warning("status page: the outbound checks took over %g s", CHECKS_TIMEOUT_SECONDS)
        return Outbound([], [], f"they took longer than {CHECKS_TIMEOUT_SECONDS:g} s")
    except Exception as exc:
        # The page still shows everything else; the message names the kind only
        # (relay/doctor turns what it expects into results: this is a bug).
        log.warning("status page: the outbound checks broke: %s", type(exc).__name__)
        return Outbound([], [], f"they broke ({type(exc).__name__})")
    # A whole group that broke inside relay/doctor ("platforms": unexpected ...).
    broken = [r for r in results if r.failed and platform_of(r, platforms) is None]
    error = "; ".join(f"{r.name}: {r.detail}" for r in broken) or None
    return Outbound(agent, results, error)


class TimedCache(Generic[T]):
    """The last answer of `produce` for `ttl` seconds; one call at a time."""

    def __init__(
        self, produce: Callable[[], Awaitable[T]], *, ttl: float, clock: Callable[[], float]
    ) -> None:
        self._produce = produce
        self._ttl = ttl
        self._clock = clock
        self._lock = asyncio.Lock()
        self._value: T | None = None
        self._expires = 0.0

    async def get(self) -> T:
        async with self._lock:
            if self._value is None or self._clock() >= self._expires:
                self._value = await self._produce()
                self._expires = self._clock() + self._ttl
            return self._value
