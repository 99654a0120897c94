"""GitlabHost against the fake GitLab over real HTTP, with real repositories behind it:
the project a conversation checks out, the token its agent uses, and the merge request
its pushed work becomes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from agent.checkout import ChangeRequest, Requester, WorkspaceRequest
from bots.gitlab.api import GitlabApi
from bots.gitlab.host import GitlabHost, _count_lines
from bots.gitlab.platform import build
from bots.platform import Shared
from db.job_kinds import RetryableJobError
from db.jobs import JobQueue
from db.secrets import SecretBox
from db.store import Store
from db.workspaces import Workspace
from processors.hosts import ChangeRequestProposal, CheckoutRefused, Comparison, RepositoryHost
from relay.settings import Settings
from tests.support.fake_gitlab import BOT_TOKEN, DEVELOPER, FakeGitlab
from tests.support.git_http import GitRepositories

PROJECT_ID, FORK_ID, HIDDEN_ID = 7, 8, 9
ASKER = 11
AGENT_USER = 950
AGENT_TOKEN = "glpat-project-access-token-0000"
BRANCH = "openhands/3-0123abcd"
README = "Widgets\nline two\nline three\n"


@pytest.fixture
def repositories(tmp_path: Path) -> GitRepositories:
    return GitRepositories(tmp_path / "served")


@pytest.fixture
def gitlab(repositories: GitRepositories) -> Iterator[FakeGitlab]:
    with FakeGitlab(repositories=repositories) as fake:
        fake.add_project(PROJECT_ID, "acme/widgets", files={"README.md": README})
        fake.add_project(HIDDEN_ID, "acme/secret", files={"README.md": "Secret\n"})
        fake.add_user(ASKER, "ada")
        # GITLAB_AGENT_TOKEN: a project access token, whose user is a bot of its own.
        fake.add_user(AGENT_USER, "project_7_bot_5e1f", name="Widgets agent")
        fake.add_token(AGENT_TOKEN, AGENT_USER)
        for user in (fake.bot_user_id, ASKER, AGENT_USER):
            fake.set_access(PROJECT_ID, user, DEVELOPER)
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def host(gitlab: FakeGitlab, http: httpx.AsyncClient) -> GitlabHost:
    return GitlabHost(GitlabApi(http, gitlab.url, BOT_TOKEN), http, gitlab.url, AGENT_TOKEN)


def workspace(*, branch: str | None = BRANCH) -> Workspace:
    return Workspace(
        conversation_id="35d77258005d458983a8431e1722da40",
        host="gitlab",
        repository="acme/widgets",
        locator=str(PROJECT_ID),
        mode="new_branch",
        working_dir="/workspace/35d77258005d458983a8431e1722da40/widgets",
        base_branch="main",
        branch=branch,
        plan="{}",
        request="{}",
        capability_hash="0" * 64,
    )


def request(*, change_request_number: int | None = None) -> WorkspaceRequest:
    return WorkspaceRequest(
        repository="acme/widgets",
        host="gitlab",
        locator=str(PROJECT_ID),
        issue_number=None if change_request_number else 3,
        change_request_number=change_request_number,
        title="Fix the flaky test",
        requester=Requester(login="ada", platform="gitlab"),
    )


def push_work(repositories: GitRepositories) -> str:
    """Two commits on the work branch, as the agent would push them."""
    repositories.commit(
        "acme/widgets", BRANCH, {"README.md": "Widgets\nline 2\nline three\n"}, "Reword"
    )
    return repositories.commit("acme/widgets", BRANCH, {"NEW.md": "a\nb\n"}, "Add notes")


def test_it_is_a_repository_host(host: GitlabHost) -> None:
    named: RepositoryHost = host
    assert (named.name, named.token_name, named.git_username) == (
        "gitlab",
        "GITLAB_TOKEN",
        "oauth2",
    )
    assert (named.change_request_label, named.change_request_sign) == ("MR", "!")
    assert named.closes_keyword == "Closes"


# -- locate -----------------------------------------------------------------------------


async def test_locate_names_the_project_by_its_id(host: GitlabHost, gitlab: FakeGitlab) -> None:
    assert await host.locate("acme/widgets") == str(PROJECT_ID)
    # The path is one URL-encoded segment, as GitLab wants it.
    assert gitlab.calls("GET", r"^/projects/acme/widgets$")


async def test_locate_finds_nothing_the_bot_cannot_read(
    host: GitlabHost, gitlab: FakeGitlab
) -> None:
    assert await host.locate("acme/nothing") is None
    assert await host.locate("acme/secret") is None  # the bot is no member: 404
    gitlab.fail_next("GET", r"^/projects/acme/widgets$", status=403)
    assert await host.locate("acme/widgets") is None


async def test_locate_retries_when_gitlab_is_busy(host: GitlabHost, gitlab: FakeGitlab) -> None:
    gitlab.fail_next("GET", r"^/projects/acme/widgets$", status=429, retry_after=3)

    with pytest.raises(RetryableJobError) as raised:
        await host.locate("acme/widgets")

    assert raised.value.retry_after == 3


# -- plan -------------------------------------------------------------------------------


async def test_an_issue_plans_the_default_branch_as_the_agent_token_user(
    host: GitlabHost, gitlab: FakeGitlab
) -> None:
    plan = await host.plan(request(), str(PROJECT_ID))

    assert plan.clone_url == f"{gitlab.url}/acme/widgets.git"
    assert (plan.default_branch, plan.web_url) == ("main", f"{gitlab.url}/acme/widgets")
    assert (plan.from_fork, plan.head_branch, plan.head_ref, plan.change_request) == (
        False,
        None,
        None,
        None,
    )
    # No commit email set: GitLab's private address, on the instance's host.
    assert (plan.bot_name, plan.bot_email) == (
        "Widgets agent",
        f"{AGENT_USER}-project_7_bot_5e1f@users.noreply.127.0.0.1",
    )
    assert [call.token for call in gitlab.calls("GET", r"^/user$")] == [AGENT_TOKEN]


async def test_the_bot_identity_is_asked_once_and_prefers_the_commit_email(
    gitlab: FakeGitlab, http: httpx.AsyncClient
) -> None:
    gitlab.add_user(AGENT_USER, "project_7_bot_5e1f", commit_email="agent@widgets.example")
    host = GitlabHost(GitlabApi(http, gitlab.url, BOT_TOKEN), http, gitlab.url, AGENT_TOKEN)

    first = await host.plan(request(), str(PROJECT_ID))
    second = await host.plan(request(), str(PROJECT_ID))

    assert first.bot_email == second.bot_email == "agent@widgets.example"
    assert first.bot_name == "Project_7_Bot_5E1F"  # the fake's name for it
    assert len(gitlab.calls("GET", r"^/user$")) == 1


async def test_a_merge_request_of_the_project_plans_its_head_branch(
    host: GitlabHost, gitlab: FakeGitlab, repositories: GitRepositories
) -> None:
    repositories.commit("acme/widgets", "feature", {"a.txt": "a\n"}, "Add a")
    gitlab.add_merge_request(
        PROJECT_ID, 5, title="Feature", author_id=ASKER, source_branch="feature", draft=True
    )

    plan = await host.plan(request(change_request_number=5), str(PROJECT_ID))

    assert (plan.from_fork, plan.head_branch, plan.head_ref) == (
        False,
        "feature",
        "refs/merge-requests/5/head",
    )
    assert plan.change_request == ChangeRequest(
        number=5, url=f"{gitlab.url}/acme/widgets/-/merge_requests/5", title="Feature", draft=True
    )


async def test_a_merge_request_from_a_fork_is_planned_as_one(
    host: GitlabHost, gitlab: FakeGitlab, repositories: GitRepositories
) -> None:
    gitlab.add_project(FORK_ID, "ada/widgets", fork_of=PROJECT_ID)
    repositories.commit("ada/widgets", "patch", {"p.txt": "p\n"}, "Patch")
    gitlab.add_merge_request(
        PROJECT_ID,
        6,
        title="From a fork",
        author_id=ASKER,
        source_branch="patch",
        source_project_id=FORK_ID,
    )

    plan = await host.plan(request(change_request_number=6), str(PROJECT_ID))

    assert (plan.from_fork, plan.head_branch, plan.head_ref) == (
        True,
        "patch",
        "refs/merge-requests/6/head",
    )
    assert plan.clone_url == f"{gitlab.url}/acme/widgets.git"


async def test_a_merge_request_that_is_not_open_is_refused(
    host: GitlabHost, gitlab: FakeGitlab
) -> None:
    gitlab.add_merge_request(
        PROJECT_ID, 5, title="Done", author_id=ASKER, source_branch="done", state="merged"
    )

    with pytest.raises(CheckoutRefused) as raised:
        await host.plan(request(change_request_number=5), str(PROJECT_ID))

    assert str(raised.value) == (
        "Merge request !5 of acme/widgets is merged, not open, so there is no branch to work on."
    )


async def test_what_the_bot_cannot_read_is_refused_in_words(host: GitlabHost) -> None:
    with pytest.raises(CheckoutRefused, match="cannot read merge request !404 of acme/widgets"):
        await host.plan(request(change_request_number=404), str(PROJECT_ID))
    with pytest.raises(CheckoutRefused) as raised:
        await host.plan(request(), str(HIDDEN_ID))
    assert str(raised.value) == (
        "The bot cannot read the GitLab project acme/widgets:"
        " it is gone, or the bot is not a member of it."
    )


async def test_a_refused_agent_token_is_refused_in_words(
    host: GitlabHost, gitlab: FakeGitlab
) -> None:
    gitlab.remove_token(AGENT_TOKEN)

    with pytest.raises(CheckoutRefused, match="GitLab refuses the token the agent would push"):
        await host.plan(request(), str(PROJECT_ID))


async def test_an_empty_project_is_refused(host: GitlabHost, gitlab: FakeGitlab) -> None:
    gitlab.add_project(10, "acme/empty")
    gitlab.set_access(10, gitlab.bot_user_id, DEVELOPER)

    with pytest.raises(CheckoutRefused, match="has no commits yet"):
        await host.plan(request().model_copy(update={"repository": "acme/empty"}), "10")


# -- tokens -----------------------------------------------------------------------------


async def test_the_agent_gets_the_configured_token_which_is_never_revoked(
    host: GitlabHost, gitlab: FakeGitlab
) -> None:
    for write in (True, False):
        minted = await host.mint_token(workspace(), write=write)
        assert (minted.value, minted.expires_at) == (AGENT_TOKEN, None)

    await host.revoke_token(workspace(), AGENT_TOKEN)

    assert not gitlab.calls()
    plan = await host.plan(request(), str(PROJECT_ID))  # the token still works
    assert plan.bot_name == "Widgets agent"


def platform_host(
    gitlab: FakeGitlab, http: httpx.AsyncClient, agent_token: str | None
) -> RepositoryHost:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        gitlab_url=gitlab.url,
        gitlab_token=SecretStr(BOT_TOKEN),
        gitlab_webhook_secret=SecretStr("gitlab-webhook-secret"),
        gitlab_agent_token=SecretStr(agent_token) if agent_token else None,
    )
    store = Store("sqlite:///:memory:")
    shared = Shared(store, JobQueue(store), http, SecretBox(None), lambda _: None)
    platform = build(settings, shared)
    assert platform.host is not None
    return platform.host


async def test_the_platform_hosts_with_gitlab_agent_token_else_gitlab_token(
    gitlab: FakeGitlab, http: httpx.AsyncClient
) -> None:
    with_agent_token = platform_host(gitlab, http, AGENT_TOKEN)
    without = platform_host(gitlab, http, None)

    assert (await with_agent_token.mint_token(workspace(), write=True)).value == AGENT_TOKEN
    assert (await without.mint_token(workspace(), write=True)).value == BOT_TOKEN


# -- branches and comparisons -----------------------------------------------------------


async def test_branch_head_is_the_commit_a_branch_points_at(
    host: GitlabHost, repositories: GitRepositories
) -> None:
    assert await host.branch_head(workspace(), BRANCH) is None
    head = push_work(repositories)

    assert await host.branch_head(workspace(), BRANCH) == head
    assert await host.branch_head(workspace(), "main") == repositories.branch_head(
        "acme/widgets", "main"
    )


async def test_compare_counts_commits_and_lines_since_the_base(
    host: GitlabHost, repositories: GitRepositories
) -> None:
    head = push_work(repositories)
    # The base moves on meanwhile: only the branch's own changes count.
    repositories.commit("acme/widgets", "main", {"OTHER.md": "x\n"}, "Elsewhere")

    compared = await host.compare(workspace(), "main", BRANCH)

    assert compared == Comparison(commits=2, additions=3, deletions=1, files=2, head_sha=head)


async def test_compare_without_new_commits_names_the_head(
    host: GitlabHost, repositories: GitRepositories
) -> None:
    main = repositories.branch_head("acme/widgets", "main")
    assert main is not None

    compared = await host.compare(workspace(), main, "main")

    assert compared == Comparison(commits=0, additions=0, deletions=0, files=0, head_sha=main)


async def test_compare_with_a_missing_head_is_none(host: GitlabHost) -> None:
    assert await host.compare(workspace(), "main", BRANCH) is None


def test_lines_are_counted_in_hunks_only() -> None:
    diff = "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-old\n+new\n+++plus\n context\n\\ No newline\n"

    assert _count_lines(diff) == (2, 1)
    assert _count_lines("") == (0, 0)


# -- merge requests ---------------------------------------------------------------------


async def test_a_draft_merge_request_is_opened_with_the_asker_as_reviewer(
    host: GitlabHost, gitlab: FakeGitlab, repositories: GitRepositories
) -> None:
    push_work(repositories)

    opened = await host.open_change_request(
        workspace(),
        ChangeRequestProposal(
            branch=BRANCH, title="Fix it", body="Closes #3", draft=True, reviewer="ada"
        ),
    )

    (created,) = gitlab.merge_requests(PROJECT_ID)
    assert opened == ChangeRequest(
        number=created.iid,
        url=f"{gitlab.url}/acme/widgets/-/merge_requests/{created.iid}",
        title="Fix it",
        draft=True,
    )
    assert (created.title, created.description, created.draft) == (
        "Draft: Fix it",
        "Closes #3",
        True,
    )
    assert (created.source_branch, created.target_branch) == (BRANCH, "main")
    assert created.reviewer_ids == [ASKER]
    assert await host.find_change_request(workspace(), BRANCH) == opened


async def test_a_ready_merge_request_without_a_known_reviewer(
    host: GitlabHost, gitlab: FakeGitlab, repositories: GitRepositories
) -> None:
    push_work(repositories)

    opened = await host.open_change_request(
        workspace(),
        ChangeRequestProposal(
            branch=BRANCH, title="Fix it", body="", draft=False, reviewer="nobody"
        ),
    )

    (created,) = gitlab.merge_requests(PROJECT_ID)
    assert (opened.draft, created.title, created.reviewer_ids) == (False, "Fix it", [])
    (post,) = gitlab.calls("POST", r"/merge_requests$")
    assert "reviewer_ids" not in post.body


async def test_opening_again_finds_the_open_one(
    host: GitlabHost, gitlab: FakeGitlab, repositories: GitRepositories
) -> None:
    push_work(repositories)
    first = await host.open_change_request(
        workspace(),
        ChangeRequestProposal(branch=BRANCH, title="Fix it", body="", draft=True, reviewer=None),
    )

    again = await host.open_change_request(
        workspace(),
        ChangeRequestProposal(branch=BRANCH, title="Fix it", body="", draft=True, reviewer=None),
    )

    assert again == first
    assert len(gitlab.merge_requests(PROJECT_ID)) == 1
    assert [call.status for call in gitlab.calls("POST", r"/merge_requests$")] == [201, 409]


async def test_find_change_request_sees_open_requests_of_this_project_only(
    host: GitlabHost, gitlab: FakeGitlab, repositories: GitRepositories
) -> None:
    gitlab.add_project(FORK_ID, "ada/widgets", fork_of=PROJECT_ID)
    repositories.commit("ada/widgets", BRANCH, {"p.txt": "p\n"}, "Same name, in a fork")
    gitlab.add_merge_request(
        PROJECT_ID,
        1,
        title="Fork",
        author_id=ASKER,
        source_branch=BRANCH,
        source_project_id=FORK_ID,
    )
    gitlab.add_merge_request(
        PROJECT_ID, 2, title="Old", author_id=ASKER, source_branch=BRANCH, state="closed"
    )

    assert await host.find_change_request(workspace(), BRANCH) is None


# -- secrets ----------------------------------------------------------------------------


async def test_no_token_is_logged_at_debug(
    host: GitlabHost,
    gitlab: FakeGitlab,
    repositories: GitRepositories,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    gitlab.fail_next("GET", r"^/projects/acme/widgets$", status=401)
    gitlab.add_merge_request(
        PROJECT_ID, 5, title="Done", author_id=ASKER, source_branch="done", state="merged"
    )
    push_work(repositories)

    for attempt in (
        host.locate("acme/widgets"),
        host.plan(request(change_request_number=5), str(PROJECT_ID)),
    ):
        with pytest.raises(Exception) as raised:
            await attempt
        assert BOT_TOKEN not in str(raised.value) and AGENT_TOKEN not in str(raised.value)
    await host.plan(request(), str(PROJECT_ID))
    await host.compare(workspace(), "main", BRANCH)
    await host.open_change_request(
        workspace(),
        ChangeRequestProposal(branch=BRANCH, title="t", body="b", draft=True, reviewer="ada"),
    )
    await host.open_change_request(
        workspace(),
        ChangeRequestProposal(branch=BRANCH, title="t", body="b", draft=True, reviewer="nobody"),
    )

    assert caplog.records
    assert BOT_TOKEN not in caplog.text and AGENT_TOKEN not in caplog.text
    assert AGENT_TOKEN not in repr(host)


async def test_the_projects_the_bot_is_a_member_of_are_listed_every_page(
    gitlab: FakeGitlab, host: GitlabHost
) -> None:
    for number in range(100, 205):
        gitlab.add_project(number, f"acme/many-{number}")
        gitlab.set_access(number, gitlab.bot_user_id, DEVELOPER)

    listed = await host.list_repositories()

    # Not acme/secret, where the bot is no member; 106 projects over two pages.
    assert len(listed) == 106 and "acme/secret" not in listed
    assert listed[0] == "acme/many-100" and "acme/widgets" in listed
    pages = [c for c in gitlab.calls("GET") if c.path == "/projects"]
    assert len(pages) == 2
    assert pages[0].query["membership"] == "true"
    # Asked again soon: the list is reused.
    assert await host.list_repositories() == listed
    assert len([c for c in gitlab.calls("GET") if c.path == "/projects"]) == 2
