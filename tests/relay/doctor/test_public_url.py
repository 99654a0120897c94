"""relay/doctor/public_url.py: PUBLIC_URL's /healthz answers, or why not."""

from __future__ import annotations

from tests.support.deployment import Peers, closed_port_url
from tests.support.doctor import only, run_checks, settings_of


async def test_a_public_url_that_does_not_answer_fails(peers: Peers, database_url: str) -> None:
    down = closed_port_url()

    results = await run_checks(settings_of(peers.environment(database_url), PUBLIC_URL=down))

    public = only(results, "public url")
    assert (public.status, public.detail) == ("fail", f"GET {down}/healthz: ConnectError")
    assert public.fix is not None and "PUBLIC_URL" in public.fix


async def test_a_public_url_answering_an_error_fails(peers: Peers, database_url: str) -> None:
    peers.public.status = 502

    results = await run_checks(settings_of(peers.environment(database_url)))

    assert only(results, "public url").detail == f"GET {peers.public.url}/healthz answered 502"


async def test_without_public_url_the_check_is_skipped(peers: Peers, database_url: str) -> None:
    results = await run_checks(settings_of(peers.environment(database_url), PUBLIC_URL=None))

    public = only(results, "public url")
    assert (public.status, public.fix) == ("skip", "set PUBLIC_URL")
