"""bots/gitlab/checks.py through doctor's runner: GITLAB_TOKEN and a project's hook,
against the fake GitLab on loopback."""

from __future__ import annotations

from tests.support.deployment import GITLAB_PROJECT, Peers, database_url, github_key, peers
from tests.support.doctor import clean_environment, only, run_checks, settings_of

# The shared fixtures, imported so that pytest finds them here.
__all__ = ["clean_environment", "database_url", "github_key", "peers"]


async def test_a_refused_gitlab_token_fails_and_skips_the_hook(
    peers: Peers, database_url: str
) -> None:
    results = await run_checks(
        settings_of(peers.environment(database_url), GITLAB_TOKEN="glpat-revoked-token-000"),
        gitlab_project=GITLAB_PROJECT,
    )

    gitlab = only(results, "gitlab")
    assert (gitlab.status, gitlab.detail) == ("fail", "GET /user refused GITLAB_TOKEN (HTTP 401)")
    assert gitlab.fix is not None and "GITLAB_TOKEN" in gitlab.fix
    assert only(results, "gitlab webhook").status == "skip"


async def test_a_project_without_the_hook_fails_naming_the_command(
    peers: Peers, database_url: str
) -> None:
    results = await run_checks(
        settings_of(peers.environment(database_url)), gitlab_project=GITLAB_PROJECT
    )

    hook = only(results, "gitlab webhook")
    assert hook.status == "fail"
    assert hook.detail == f"{GITLAB_PROJECT} has no hook to {peers.public.url}/gitlab/events"
    assert hook.fix == f"run `agent-relay gitlab install-webhook --project {GITLAB_PROJECT}`"


async def test_an_unknown_gitlab_project_fails(peers: Peers, database_url: str) -> None:
    results = await run_checks(
        settings_of(peers.environment(database_url)), gitlab_project="acme/nothing"
    )

    hook = only(results, "gitlab webhook")
    assert hook.status == "fail"
    assert "HTTP 404" in hook.detail
