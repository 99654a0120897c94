"""bots/github/host.py: GitHub as a conversation's repository host, against the fake
GitHub over real HTTP, with real repositories that real git clones and pushes to."""

from __future__ import annotations

import logging
import time
from base64 import b64encode
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

import tests.support.fake_github_pulls
from agent.checkout import ChangeRequest, WorkspaceRequest
from agent.http import new_http_client
from bots.github.api import GithubApi, GithubRefused
from bots.github.credentials import AppCredentials, GithubAppSource
from bots.github.host import GithubHost
from bots.github.platform import build
from bots.platform import Shared
from db.jobs import JobQueue
from db.secrets import SecretBox
from db.store import Store
from db.workspaces import Workspace
from processors.hosts import ChangeRequestProposal, CheckoutRefused
from relay.settings import Settings
from tests.support.fake_github import FakeGitHub, generate_private_key_pem
from tests.support.git_http import GitClient

APP_ID = 9
SLUG = "relay-test"
INSTALLATION = 31
REPO = "acme/api"
OTHER_REPO = "acme/web"
UNINSTALLED = "acme/secret"
FORK = "outsider/api"
WORK_BRANCH = "openhands/12-0a1b2c3d"
REVIEWER = "ada"


@pytest.fixture(scope="module")
def pem() -> str:
    return generate_private_key_pem()


@pytest.fixture
def github(tmp_path: Path, pem: str) -> Iterator[FakeGitHub]:
    with FakeGitHub(git_root=tmp_path / "repositories") as fake:
        fake.add_app(APP_ID, SLUG, private_key_pem=pem)
        fake.create_repository(REPO, {"README.md": "# api\n", "src/app.py": "print(1)\n"})
        fake.create_repository(OTHER_REPO, {"README.md": "# web\n"}, default_branch="trunk")
        fake.create_repository(UNINSTALLED)
        fake.add_installation(INSTALLATION, APP_ID, account="acme", repositories=[REPO, OTHER_REPO])
        fake.set_permission(REPO, REVIEWER, "write")
        yield fake


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    # The host reads nothing from the database (the app's credentials come from the
    # settings here): one kind of database is enough.
    async with Store(f"sqlite:///{tmp_path / 'relay.db'}") as connected:
        yield connected


@pytest.fixture
async def host(github: FakeGitHub, store: Store, pem: str) -> AsyncIterator[GithubHost]:
    app = AppCredentials(app_id=str(APP_ID), slug=None, private_key=pem, webhook_secret="s")
    # The relay's own outbound client, so that its logging is what the log test sees.
    async with new_http_client() as http:
        yield GithubHost(
            GithubApi(http, GithubAppSource(store, SecretBox(None), app), github.api_url)
        )


@pytest.fixture
def git(tmp_path: Path) -> GitClient:
    return GitClient(tmp_path / "home")


def workspace() -> Workspace:
    """An issue's workspace on REPO, as processors.workspace records it."""
    return Workspace(
        conversation_id="c0a1b2c3d4e5f60718293a4b5c6d7e8f",
        host="github",
        repository=REPO,
        locator=str(INSTALLATION),
        mode="new_branch",
        working_dir="/workspace/c0a1b2c3d4e5f60718293a4b5c6d7e8f/api",
        base_branch="main",
        branch=WORK_BRANCH,
        plan="{}",
        request="{}",
        capability_hash="0" * 64,
    )


def with_token(token: str) -> tuple[str, str]:
    """git's options that send `token` as GitHub wants it: Basic, user x-access-token."""
    basic = b64encode(f"x-access-token:{token}".encode()).decode()
    return ("-c", f"http.extraHeader=Authorization: Basic {basic}")


def test_github_host_names_what_github_calls_things(host: GithubHost) -> None:
    assert (host.name, host.token_name, host.git_username) == (
        "github",
        "GITHUB_TOKEN",
        "x-access-token",
    )
    assert (host.change_request_label, host.change_request_sign) == ("PR", "#")
    assert host.closes_keyword == "Fixes"


async def test_the_platform_hands_its_host_to_the_relay_only_when_enabled(
    github: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'relay.db'}")
    async with httpx.AsyncClient() as http:
        shared = Shared(store, JobQueue(store), http, SecretBox(None), lambda _: None)
        on = Settings(
            github_app_id=str(APP_ID),
            github_private_key=github.app_by_slug(SLUG).private_key_pem,
            github_webhook_secret="s",
            github_api_url=github.api_url,
        )
        assert isinstance(build(on, shared).host, GithubHost)
        assert build(Settings(), shared).host is None


# -- locate -------------------------------------------------------------------
async def test_locate_finds_the_installation_with_the_apps_jwt(
    host: GithubHost, github: FakeGitHub
) -> None:
    assert await host.locate(REPO) == str(INSTALLATION)
    [call] = github.calls("GET", f"/repos/{REPO}/installation")
    assert call.auth == "jwt"


async def test_locate_answers_none_where_the_app_is_not_installed(
    host: GithubHost, github: FakeGitHub
) -> None:
    assert await host.locate(UNINSTALLED) is None
    # A GitLab path is not a GitHub repository: not even asked.
    assert await host.locate("group/sub/project") is None
    assert [c.path for c in github.calls("GET")] == [f"/repos/{UNINSTALLED}/installation"]


# -- plan ---------------------------------------------------------------------
async def test_an_issue_plans_the_default_branch_with_the_bot_as_author(
    host: GithubHost, github: FakeGitHub
) -> None:
    request = WorkspaceRequest(repository=OTHER_REPO, host="github", issue_number=12)

    plan = await host.plan(request, str(INSTALLATION))

    assert plan.clone_url == f"{github.url}/{OTHER_REPO}.git"
    assert plan.default_branch == "trunk"
    assert plan.web_url == f"{github.web_url}/{OTHER_REPO}"
    [asked] = github.calls("GET", r"/users/.*")
    bot = await host.api.call(INSTALLATION, "GET", asked.path)
    assert bot["login"] == f"{SLUG}[bot]"
    assert plan.bot_name == f"{SLUG}[bot]"
    assert plan.bot_email == f"{bot['id']}+{SLUG}[bot]@users.noreply.github.com"
    assert (plan.from_fork, plan.head_branch, plan.head_ref, plan.change_request) == (
        False,
        None,
        None,
        None,
    )


async def test_the_bots_identity_is_asked_once_per_process(
    host: GithubHost, github: FakeGitHub
) -> None:
    request = WorkspaceRequest(repository=REPO)
    first = await host.plan(request, str(INSTALLATION))
    second = await host.plan(request, str(INSTALLATION))

    assert (first.bot_name, first.bot_email) == (second.bot_name, second.bot_email)
    assert len(github.calls("GET", r"/users/.*")) == 1
    assert len(github.calls("GET", r"/app")) == 1


async def test_a_repository_the_app_cannot_read_refuses_the_checkout_in_words(
    host: GithubHost,
) -> None:
    with pytest.raises(CheckoutRefused) as refused:
        await host.plan(WorkspaceRequest(repository=UNINSTALLED), str(INSTALLATION))
    assert str(refused.value).startswith(f"GitHub does not let the app read {UNINSTALLED}:")


async def test_a_pull_request_of_the_same_repository_plans_its_head_branch(
    host: GithubHost, github: FakeGitHub
) -> None:
    github.commit(REPO, "fix/dates", {"src/dates.py": "tz = True\n"}, "Keep time zones")
    github.add_pull_request(REPO, 7, head="fix/dates", title="Keep time zones", user=REVIEWER)

    plan = await host.plan(
        WorkspaceRequest(repository=REPO, change_request_number=7), str(INSTALLATION)
    )

    assert (plan.from_fork, plan.head_branch, plan.head_ref) == (
        False,
        "fix/dates",
        "refs/pull/7/head",
    )
    assert plan.change_request == ChangeRequest(
        number=7, url=f"{github.web_url}/{REPO}/pull/7", title="Keep time zones", draft=False
    )


async def test_a_pull_request_from_a_fork_plans_its_head_commit(
    host: GithubHost, github: FakeGitHub, git: GitClient, tmp_path: Path
) -> None:
    github.fork_repository(REPO, FORK)
    sha = github.commit(FORK, "patch-1", {"README.md": "# api, better\n"}, "Better readme")
    github.add_pull_request(
        REPO,
        8,
        head="patch-1",
        title="Better readme",
        user="outsider",
        head_repository=FORK,
        draft=True,
    )

    plan = await host.plan(
        WorkspaceRequest(repository=REPO, change_request_number=8), str(INSTALLATION)
    )

    assert (plan.from_fork, plan.head_branch, plan.head_ref) == (
        True,
        "patch-1",
        "refs/pull/8/head",
    )
    assert plan.change_request is not None and plan.change_request.draft
    # The fork's commit is fetchable from the base repository by that ref.
    token = (await host.mint_token(workspace(), write=False)).value
    checkout = tmp_path / "fork-pr"
    git.ok(*with_token(token), "init", "--quiet", str(checkout))
    git.ok(*with_token(token), "fetch", "--quiet", plan.clone_url, plan.head_ref, cwd=checkout)
    assert git.ok("rev-parse", "FETCH_HEAD", cwd=checkout) == sha


@pytest.mark.parametrize(("merged", "word"), [(False, "closed"), (True, "merged")])
async def test_a_closed_pull_request_refuses_the_checkout(
    host: GithubHost, github: FakeGitHub, merged: bool, word: str
) -> None:
    github.commit(REPO, "old", {"a.txt": "a\n"}, "a")
    github.add_pull_request(REPO, 9, head="old", title="Old", user=REVIEWER)
    github.close_pull_request(REPO, 9, merged=merged)

    with pytest.raises(CheckoutRefused) as refused:
        await host.plan(
            WorkspaceRequest(repository=REPO, change_request_number=9), str(INSTALLATION)
        )
    assert str(refused.value) == (
        f"Pull request {REPO}#9 is {word}, so there is no branch to work on."
    )


async def test_a_missing_pull_request_refuses_the_checkout(host: GithubHost) -> None:
    with pytest.raises(CheckoutRefused, match=f"{REPO} has no pull request #404"):
        await host.plan(
            WorkspaceRequest(repository=REPO, change_request_number=404), str(INSTALLATION)
        )


# -- tokens -------------------------------------------------------------------
async def test_a_write_token_names_one_repository_and_contents_only(
    host: GithubHost, github: FakeGitHub, git: GitClient, tmp_path: Path
) -> None:
    before = time.time()
    minted = await host.mint_token(workspace(), write=True)

    grant = github.token_grants()[-1]
    assert grant.token == minted.value
    assert grant.repositories == [REPO]
    assert grant.requested_permissions == {"contents": "write", "metadata": "read"}
    [call] = github.calls("POST", rf"/app/installations/{INSTALLATION}/access_tokens")
    assert call.auth == "jwt"
    assert call.body == {
        "repositories": ["api"],
        "permissions": {"contents": "write", "metadata": "read"},
    }
    assert minted.expires_at is not None
    assert before + 3500 < minted.expires_at <= time.time() + 3600

    # It clones and pushes its repository, and nothing else.
    checkout = tmp_path / "api"
    clone_url = f"{github.url}/{REPO}.git"
    git.ok(
        *with_token(minted.value),
        "clone",
        "--quiet",
        "--filter=blob:none",
        clone_url,
        str(checkout),
    )
    git.ok("switch", "--quiet", "-c", WORK_BRANCH, cwd=checkout)
    (checkout / "CHANGES.md").write_text("fixed\n")
    git.ok("add", ".", cwd=checkout)
    git.ok("commit", "--quiet", "-m", "Fix", cwd=checkout)
    git.ok(*with_token(minted.value), "push", "--quiet", "origin", WORK_BRANCH, cwd=checkout)
    assert github.branch_head(REPO, WORK_BRANCH) == git.ok("rev-parse", "HEAD", cwd=checkout)
    other = git.run(*with_token(minted.value), "ls-remote", f"{github.url}/{OTHER_REPO}.git")
    assert other.returncode != 0
    assert [(r.repository, r.push, r.status) for r in github.git_requests()][-1] == (
        OTHER_REPO,
        False,
        404,
    )


async def test_a_read_token_fetches_but_cannot_push(
    host: GithubHost, github: FakeGitHub, git: GitClient, tmp_path: Path
) -> None:
    minted = await host.mint_token(workspace(), write=False)
    assert github.token_grants()[-1].requested_permissions == {
        "contents": "read",
        "metadata": "read",
    }
    checkout = tmp_path / "api"
    git.ok(*with_token(minted.value), "clone", "--quiet", f"{github.url}/{REPO}.git", str(checkout))
    git.ok("commit", "--quiet", "--allow-empty", "-m", "x", cwd=checkout)

    pushed = git.run(*with_token(minted.value), "push", "origin", "HEAD:refs/heads/x", cwd=checkout)

    assert pushed.returncode != 0
    assert github.git_requests()[-1].status == 403
    assert github.branch_head(REPO, "x") is None


async def test_a_minted_token_reaches_no_other_repository_through_the_api(
    host: GithubHost, github: FakeGitHub
) -> None:
    minted = await host.mint_token(workspace(), write=True)

    with pytest.raises(GithubRefused) as refused:
        await host.api.call_with_token(minted.value, "GET", f"/repos/{OTHER_REPO}")
    assert refused.value.status == 404
    # Its own it reads, but it opens no pull request: contents and metadata are all
    # it may touch.
    own = await host.api.call_with_token(minted.value, "GET", f"/repos/{REPO}")
    assert own["full_name"] == REPO
    with pytest.raises(GithubRefused) as refused:
        await host.api.call_with_token(minted.value, "POST", f"/repos/{REPO}/pulls")
    assert refused.value.status == 403


async def test_a_revoked_token_is_refused_by_git(
    host: GithubHost, github: FakeGitHub, git: GitClient
) -> None:
    ws = workspace()
    minted = await host.mint_token(ws, write=True)
    clone_url = f"{github.url}/{REPO}.git"
    git.ok(*with_token(minted.value), "ls-remote", clone_url)

    await host.revoke_token(ws, minted.value)

    assert github.revoked_tokens() == [minted.value]
    [call] = github.calls("DELETE", "/installation/token")
    assert call.status == 204
    assert git.run(*with_token(minted.value), "ls-remote", clone_url).returncode != 0
    assert github.git_requests()[-1].status == 401
    # Revoking it again (a retried job) is no error: the token is dead either way.
    await host.revoke_token(ws, minted.value)


async def test_a_token_past_its_lifetime_is_refused_by_git(
    host: GithubHost, github: FakeGitHub, git: GitClient
) -> None:
    github.token_lifetime = 0
    minted = await host.mint_token(workspace(), write=True)

    assert minted.expires_at is not None and minted.expires_at <= time.time()
    assert git.run(*with_token(minted.value), "ls-remote", f"{github.url}/{REPO}.git").returncode
    assert github.git_requests()[-1].status == 401


async def test_an_installation_without_write_access_refuses_in_words(
    host: GithubHost, github: FakeGitHub
) -> None:
    # An app set up before the relay asked for contents: write.
    github.add_app(
        APP_ID,
        SLUG,
        private_key_pem=github.app_by_slug(SLUG).private_key_pem,
        permissions={"contents": "read", "metadata": "read", "issues": "write"},
    )

    with pytest.raises(CheckoutRefused) as refused:
        await host.mint_token(workspace(), write=True)

    assert str(refused.value) == (
        f"GitHub refused the app a token for {REPO}: The permissions requested are not"
        " granted to this installation. The app needs Contents: read and write there."
    )


async def test_no_token_reaches_the_log(
    host: GithubHost, github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ws = workspace()
    await host.plan(WorkspaceRequest(repository=REPO), ws.locator)
    minted = await host.mint_token(ws, write=True)
    await host.revoke_token(ws, minted.value)
    github.commit(REPO, WORK_BRANCH, {"a.txt": "a\n"}, "a")
    await host.open_change_request(
        ws,
        ChangeRequestProposal(
            branch=WORK_BRANCH, title="t", body="b", draft=True, reviewer=REVIEWER
        ),
    )

    tokens = [grant.token for grant in github.token_grants()]
    assert len(tokens) == 2  # the relay's own, and the agent's
    assert caplog.records
    for token in tokens:
        assert token not in caplog.text


# -- branches and comparisons -------------------------------------------------
async def test_branch_head_reads_a_branch_or_none(host: GithubHost, github: FakeGitHub) -> None:
    sha = github.commit(REPO, WORK_BRANCH, {"a.txt": "a\n"}, "a")

    assert await host.branch_head(workspace(), WORK_BRANCH) == sha
    assert await host.branch_head(workspace(), "openhands/none") is None


async def test_compare_counts_the_commits_and_lines_a_branch_adds(
    host: GithubHost, github: FakeGitHub
) -> None:
    github.commit(REPO, WORK_BRANCH, {"src/app.py": "print(2)\nprint(3)\n"}, "one")
    head = github.commit(REPO, WORK_BRANCH, {"docs/notes.md": "a\nb\nc\n"}, "two")

    comparison = await host.compare(workspace(), "main", WORK_BRANCH)

    assert comparison is not None
    assert (comparison.commits, comparison.additions, comparison.deletions) == (2, 5, 1)
    assert (comparison.files, comparison.head_sha) == (2, head)


async def test_compare_finds_the_head_of_a_branch_longer_than_githubs_list(
    host: GithubHost, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GitHub lists the first 250 commits; the fake, told to, lists the first one.
    monkeypatch.setattr(tests.support.fake_github_pulls, "COMPARE_MAX_COMMITS", 1)
    github.commit(REPO, WORK_BRANCH, {"a.txt": "a\n"}, "one")
    head = github.commit(REPO, WORK_BRANCH, {"b.txt": "b\n"}, "two")

    comparison = await host.compare(workspace(), "main", WORK_BRANCH)

    assert comparison is not None
    assert (comparison.commits, comparison.head_sha) == (2, head)


async def test_compare_of_a_branch_without_new_commits_is_empty(
    host: GithubHost, github: FakeGitHub
) -> None:
    main = github.branch_head(REPO, "main")
    comparison = await host.compare(workspace(), "main", str(main))
    assert comparison is not None
    assert (comparison.commits, comparison.files, comparison.head_sha) == (0, 0, main)


async def test_compare_of_a_missing_branch_is_none(host: GithubHost) -> None:
    assert await host.compare(workspace(), "main", "openhands/none") is None


# -- pull requests ------------------------------------------------------------
async def test_a_draft_pull_request_is_opened_with_the_asker_as_reviewer(
    host: GithubHost, github: FakeGitHub
) -> None:
    github.commit(REPO, WORK_BRANCH, {"a.txt": "a\n"}, "a")

    pull = await host.open_change_request(
        workspace(),
        ChangeRequestProposal(
            branch=WORK_BRANCH,
            title="Keep time zones",
            body="Fixes #12",
            draft=True,
            reviewer=REVIEWER,
        ),
    )

    [created] = github.pull_requests(REPO)
    assert pull == ChangeRequest(
        number=created["number"], url=created["html_url"], title="Keep time zones", draft=True
    )
    assert (created["head"]["ref"], created["base"]["ref"], created["body"]) == (
        WORK_BRANCH,
        "main",
        "Fixes #12",
    )
    assert created["user"]["login"] == f"{SLUG}[bot]"
    assert [r["login"] for r in created["requested_reviewers"]] == [REVIEWER]
    assert await host.find_change_request(workspace(), WORK_BRANCH) == pull


async def test_opening_again_finds_the_pull_request_instead_of_a_second(
    host: GithubHost, github: FakeGitHub
) -> None:
    github.commit(REPO, WORK_BRANCH, {"a.txt": "a\n"}, "a")
    options = {"branch": WORK_BRANCH, "title": "t", "body": "b", "draft": True, "reviewer": None}
    first = await host.open_change_request(workspace(), ChangeRequestProposal(**options))  # type: ignore[arg-type]

    again = await host.open_change_request(workspace(), ChangeRequestProposal(**options))  # type: ignore[arg-type]

    assert again == first
    assert len(github.pull_requests(REPO)) == 1
    assert [c.status for c in github.calls("POST", rf"/repos/{REPO}/pulls")] == [201, 422]


async def test_a_reviewer_github_refuses_leaves_the_pull_request_open(
    host: GithubHost, github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    github.commit(REPO, WORK_BRANCH, {"a.txt": "a\n"}, "a")
    caplog.set_level(logging.INFO, logger="bots.github.host")

    pull = await host.open_change_request(
        workspace(),
        ChangeRequestProposal(
            branch=WORK_BRANCH, title="t", body="b", draft=False, reviewer="stranger"
        ),
    )

    assert [p["number"] for p in github.pull_requests(REPO)] == [pull.number]
    [refusal] = [r for r in caplog.records if "no review requested" in r.getMessage()]
    assert refusal.levelno == logging.INFO
    assert "collaborator" in refusal.getMessage()


async def test_a_repository_without_drafts_gets_a_ready_pull_request(
    host: GithubHost, github: FakeGitHub
) -> None:
    github.commit(REPO, WORK_BRANCH, {"a.txt": "a\n"}, "a")
    github.disallow_drafts(REPO)

    pull = await host.open_change_request(
        workspace(),
        ChangeRequestProposal(branch=WORK_BRANCH, title="t", body="b", draft=True, reviewer=None),
    )

    assert not pull.draft
    assert [p["draft"] for p in github.pull_requests(REPO)] == [False]


async def test_find_change_request_sees_open_pull_requests_of_that_branch_only(
    host: GithubHost, github: FakeGitHub
) -> None:
    github.commit(REPO, WORK_BRANCH, {"a.txt": "a\n"}, "a")
    github.commit(REPO, "other", {"b.txt": "b\n"}, "b")
    github.add_pull_request(REPO, 3, head="other", title="Other", user=REVIEWER)
    assert await host.find_change_request(workspace(), WORK_BRANCH) is None

    github.add_pull_request(REPO, 4, head=WORK_BRANCH, title="Mine", user=REVIEWER)
    found = await host.find_change_request(workspace(), WORK_BRANCH)
    assert found is not None and found.number == 4

    github.close_pull_request(REPO, 4)
    assert await host.find_change_request(workspace(), WORK_BRANCH) is None


async def test_the_repositories_of_every_installation_are_listed(
    github: FakeGitHub, host: GithubHost
) -> None:
    github.create_repository("globex/tools")
    github.add_installation(32, APP_ID, account="globex", repositories=["globex/tools"])

    listed = await host.list_repositories()

    assert listed == [REPO, OTHER_REPO, "globex/tools"]
