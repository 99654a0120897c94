"""The PUBLIC_URL check: this relay's /healthz answers at the address peers are given."""

from __future__ import annotations

import aiohttp
import httpx

from agent.http import failure_name
from bots.checks import CheckResult, fail, ok, skip
from relay.doctor.results import display_url
from relay.doctor.run import Run


async def public_url_checks(run: Run) -> list[CheckResult]:
    public = run.settings.public_url
    if not public:
        return [skip("public url", "PUBLIC_URL is unset", "set PUBLIC_URL")]
    fix = "make PUBLIC_URL reach this server (`agent-relay serve`, proxy, DNS)"
    return [await run.bounded("public url", lambda: _healthz(run, public, fix), fix)]


async def _healthz(run: Run, public: str, fix: str) -> CheckResult:
    url = f"{display_url(public).rstrip('/')}/healthz"
    try:
        response = await run.http.get(f"{public.rstrip('/')}/healthz")
    except (httpx.HTTPError, aiohttp.ClientError) as exc:
        return fail("public url", f"GET {url}: {failure_name(exc)}", fix)
    if response.status_code != 200:
        return fail("public url", f"GET {url} answered {response.status_code}", fix)
    return ok("public url", f"GET {url} answered 200")
