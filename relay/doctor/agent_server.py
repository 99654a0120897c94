"""The agent-server checks: it answers at AGENT_SERVER_URL, and it takes the key."""

from __future__ import annotations

import asyncio
import uuid

from agent.http import failure_name
from bots.checks import CheckResult, fail, ok, public_link, reason, skip, status_of
from db.job_kinds import PermanentJobError, RetryableJobError
from db.secrets import secret_text
from relay.doctor.results import display_url
from relay.doctor.run import Run

# An id no conversation has: asking for it shows whether the agent-server accepts
# the key (404) or not (401) and changes nothing.
_PROBE_CONVERSATION_ID = uuid.UUID(int=0).hex
_START_IT = "start the agent-server, or fix AGENT_SERVER_URL"


async def agent_server_checks(run: Run) -> list[CheckResult]:
    url = display_url(run.settings.agent_server_url)
    try:
        async with asyncio.timeout(run.timeout):
            reachable, key = await _probe(run, url)
    except TimeoutError:
        reachable = fail("agent-server", f"{url}: no answer within {run.timeout:g} s", _START_IT)
        key = skip("agent-server key", "the agent-server does not answer")
    target = public_link(run.settings.public_url, "/agent")
    webhooks = skip(
        "agent-server webhooks",
        "the agent-server does not report where it sends its webhooks",
        f"check OH_WEBHOOKS_0_BASE_URL={target} on the agent-server",
    )
    return [reachable, key, webhooks]


async def _probe(run: Run, url: str) -> tuple[CheckResult, CheckResult]:
    """(is it there, does it take the key), from one read of a conversation that
    does not exist: 404 with a good key, 401 with a bad one."""
    api_key = secret_text(run.settings.agent_server_api_key)
    answers = ok("agent-server", f"{url} answers")
    try:
        await run.relay.agent.get_conversation(_PROBE_CONVERSATION_ID)
    except PermanentJobError as exc:
        status = status_of(exc)
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
                f"{url} is not an agent-server API ({reason(exc)})",
                "fix AGENT_SERVER_URL (the agent-server's address, without /api)",
            ),
            skip("agent-server key", "no agent-server API at AGENT_SERVER_URL"),
        )
    except RetryableJobError as exc:
        status = status_of(exc)
        cause = failure_name(exc.__cause__) if exc.__cause__ else "no answer"
        return (
            fail(
                "agent-server",
                f"{url} answered {status}" if status else f"{url} does not answer ({cause})",
                _START_IT,
            ),
            skip("agent-server key", "the agent-server does not answer"),
        )
    if api_key:
        return answers, ok("agent-server key", "X-Session-API-Key accepted")
    return answers, ok("agent-server key", "no key configured, and none asked for")
