"""Polling helpers: tests wait for a condition, never for a fixed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0


def _describe(message: str | Callable[[], str] | None, timeout: float) -> str:
    text = message() if callable(message) else message
    return f"{text or 'condition not met'} (waited {timeout:.1f} s)"


async def wait_for(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - a polling deadline, by design
    interval: float = 0.05,
    message: str | Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` (sync or async) until it returns a truthy value; return it.

    Raises AssertionError with ``message`` (a string, or a callable evaluated at
    timeout so it can describe the current state) when ``timeout`` elapses.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(_describe(message, timeout))
        await asyncio.sleep(interval)


def wait_until(
    predicate: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.05,
    message: str | Callable[[], str] | None = None,
) -> T:
    """Synchronous twin of :func:`wait_for` for threads and sync tests."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(_describe(message, timeout))
        time.sleep(interval)
