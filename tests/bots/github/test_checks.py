"""bots/github/checks.py through doctor's runner: the app (from the settings or the
setup page) and its installations, against the fake GitHub on loopback."""

from __future__ import annotations

import pytest

from bots.github.credentials import GithubAppSource
from relay.app import Relay
from relay.doctor.runner import Checks
from tests.support.deployment import (
    GITHUB_APP_ID,
    GITHUB_WEBHOOK_SECRET,
    Peers,
    database_url,
    github_key,
    peers,
)
from tests.support.doctor import TIMEOUT, clean_environment, only, run_checks, settings_of
from tests.support.fake_github import generate_private_key_pem

# The shared fixtures, imported so that pytest finds them here.
__all__ = ["clean_environment", "database_url", "github_key", "peers"]


async def test_a_github_app_key_github_refuses_fails_with_401(
    peers: Peers, database_url: str
) -> None:
    # The app's key was revoked: the configured one no longer signs valid JWTs.
    environment = peers.environment(database_url)
    results = await run_checks(
        settings_of(environment, GITHUB_PRIVATE_KEY=generate_private_key_pem())
    )

    app = only(results, "github app")
    assert app.status == "fail"
    assert app.detail.startswith("GET /app refused the app's JWT (HTTP 401)")
    assert app.fix is not None and "GITHUB_PRIVATE_KEY" in app.fix
    assert only(results, "github installations").status == "skip"


async def test_an_app_installed_nowhere_is_a_warning(peers: Peers, database_url: str) -> None:
    peers.github.add_app(GITHUB_APP_ID + 1, "lonely", private_key_pem=peers.github_key)

    results = await run_checks(
        settings_of(peers.environment(database_url), GITHUB_APP_ID=str(GITHUB_APP_ID + 1))
    )

    installations = only(results, "github installations")
    assert installations.status == "warn"
    assert (
        installations.fix == f"install it from {peers.github.web_url}/apps/lonely/installations/new"
    )


async def test_setup_page_mode_without_an_app_is_a_warning(peers: Peers, database_url: str) -> None:
    settings = settings_of(
        peers.environment(database_url),
        GITHUB_APP_ID=None,
        GITHUB_PRIVATE_KEY=None,
        GITHUB_WEBHOOK_SECRET=None,
    )

    results = await run_checks(settings)

    app = only(results, "github app")
    assert (app.status, app.fix) == ("warn", f"create one at {peers.public.url}/github/setup")


async def test_setup_page_app_is_checked_like_a_configured_one(
    peers: Peers, database_url: str
) -> None:
    settings = settings_of(
        peers.environment(database_url),
        GITHUB_APP_ID=None,
        GITHUB_PRIVATE_KEY=None,
        GITHUB_WEBHOOK_SECRET=None,
    )
    relay = Relay.build(settings)
    await relay.start(schedule_maintenance=False)
    try:
        await GithubAppSource(relay.store, relay.secrets, None).save_from_manifest(
            {
                "id": GITHUB_APP_ID,
                "slug": "relay-doctor",
                "pem": peers.github_key,
                "webhook_secret": GITHUB_WEBHOOK_SECRET,
            }
        )
        results = await Checks(relay, timeout=TIMEOUT).platforms()
    finally:
        await relay.close()

    app = only(results, "github app")
    assert (app.status, app.detail) == (
        "ok",
        f"relay-doctor (id {GITHUB_APP_ID}, from the setup page)",
    )
    assert only(results, "github installations").status == "ok"


async def test_an_app_that_may_not_write_contents_is_a_warning_saying_where_to_fix_it(
    peers: Peers, database_url: str
) -> None:
    # An app made from the manifest of before, which asked for contents: read.
    peers.github._apps[GITHUB_APP_ID].permissions["contents"] = "read"

    results = await run_checks(settings_of(peers.environment(database_url)))

    permissions = only(results, "github permissions")
    assert permissions.status == "warn"
    assert permissions.detail.startswith("the app has contents: read, not write")
    assert permissions.fix is not None
    assert f"{peers.github.web_url}/settings/apps/relay-doctor/permissions" in permissions.fix
    assert "accept the new permission on each installation" in permissions.fix
    assert "PULL_REQUESTS=off" in permissions.fix
    assert not [r.line() for r in results if r.failed]


async def test_with_pull_requests_off_contents_read_is_enough(
    peers: Peers, database_url: str
) -> None:
    peers.github._apps[GITHUB_APP_ID].permissions["contents"] = "read"

    results = await run_checks(settings_of(peers.environment(database_url), PULL_REQUESTS="off"))

    permissions = only(results, "github permissions")
    assert (permissions.status, permissions.detail) == (
        "ok",
        "contents: read; PULL_REQUESTS=off pushes nothing",
    )


async def test_an_installation_that_has_not_accepted_contents_write_is_a_warning(
    peers: Peers, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The app's owner added the permission; the installation's owner has not accepted
    # it yet, so its tokens still read only. (The fake derives an installation's
    # permissions from its app's, and has no setter of its own.)
    monkeypatch.setattr(
        peers.github,
        "_installation_permissions",
        lambda installation: {"contents": "read", "metadata": "read", "issues": "write"},
    )

    results = await run_checks(settings_of(peers.environment(database_url)))

    permissions = only(results, "github permissions")
    assert permissions.status == "warn"
    assert permissions.detail.startswith("the installation(s) of acme have not accepted")
    assert permissions.fix == (
        "accept the app's new permissions on each installation"
        f" ({peers.github.web_url}/organizations/acme/settings/installations/71)"
    )
