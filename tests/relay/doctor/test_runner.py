"""relay/doctor/runner.py: every check in its fixed order, the platforms' alone, and
peers that never answer costing one timeout."""

from __future__ import annotations

import time

from db.migrations import LATEST_VERSION
from relay.app import Relay
from relay.doctor.runner import Checks
from tests.support.deployment import (
    GITHUB_APP_ID,
    GITLAB_PROJECT,
    Peers,
    SilentPeer,
    install_gitlab_hook,
)
from tests.support.doctor import TIMEOUT, lines, only, run_checks, settings_of


async def test_a_working_deployment_passes_every_check(peers: Peers, database_url: str) -> None:
    await install_gitlab_hook(peers)

    results = await run_checks(
        settings_of(peers.environment(database_url)), gitlab_project=GITLAB_PROJECT
    )

    assert [r.line() for r in results if r.status not in ("ok", "skip")] == []
    # No hook recorded by `agent-relay gitlab install-webhook`: no redelivery to check.
    # Nor approvals: CONFIRMATION_POLICY is left at never.
    assert [r.name for r in results if r.status == "skip"] == [
        "feature approvals",
        "agent-server webhooks",
        "gitlab redelivery",
    ]
    assert only(results, "database").detail.endswith(f"(schema version {LATEST_VERSION})")
    assert only(results, "schema").detail == f"version {LATEST_VERSION}, current"
    assert only(results, "agent-server key").detail == "X-Session-API-Key accepted"
    assert "in Workspace T0ACME (T0ACME)" in only(results, "slack").detail
    assert only(results, "github app").detail == f"relay-doctor (id {GITHUB_APP_ID}, from settings)"
    assert only(results, "github installations").detail == "1 installation(s): acme"
    assert only(results, "github permissions").detail.startswith("contents: write")
    assert only(results, "gitlab").detail == "token works as @openhands (user 900)"
    assert f"on {GITLAB_PROJECT} sends to {peers.public.url}/gitlab/events" in (
        only(results, "gitlab webhook").detail
    )
    assert only(results, "public url").detail == f"GET {peers.public.url}/healthz answered 200"


async def test_the_order_of_the_lines_is_fixed(peers: Peers, database_url: str) -> None:
    results = await run_checks(settings_of(peers.environment(database_url)))

    names = [r.name for r in results]
    assert names[0] == "settings"
    assert names.index("database") < names.index("agent-server") < names.index("slack")
    assert names.index("slack") < names.index("github app") < names.index("gitlab")
    assert names[-1] == "public url"


async def test_platforms_runs_only_the_platform_checks(peers: Peers, database_url: str) -> None:
    relay = Relay.build(settings_of(peers.environment(database_url)))
    try:
        results = await Checks(relay, timeout=TIMEOUT, connect_database=True).platforms()
    finally:
        await relay.close()

    assert [r.name for r in results] == [
        "slack",
        "github app",
        "github installations",
        "github permissions",
        "gitlab",
        "gitlab webhook",
        "gitlab redelivery",
    ]
    assert [r.status for r in results] == ["ok", "ok", "ok", "ok", "ok", "skip", "skip"]


async def test_peers_that_never_answer_cost_one_timeout(peers: Peers) -> None:
    silent = SilentPeer()
    try:
        settings = settings_of(
            peers.environment(silent.url.replace("http://", "postgresql://relay@") + "/relay"),
            AGENT_SERVER_URL=silent.url,
            PUBLIC_URL=silent.url,
            SLACK_API_URL=f"{silent.url}/api/",
            GITLAB_URL=silent.url,
        )
        started = time.monotonic()
        results = await run_checks(settings, timeout=0.5)
        elapsed = time.monotonic() - started
    finally:
        silent.close()

    for name in ("database", "agent-server", "public url", "slack", "gitlab"):
        assert only(results, name).status == "fail", lines(results)
    # Concurrent checks: the run takes about one timeout, not one per peer.
    assert elapsed < 2.5
