"""The fake GitLab's repositories, driven by the real git CLI over smart HTTP: who may
fetch and push, what is recorded, and the merge-request head refs GitLab keeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_gitlab import BOT_TOKEN, DEVELOPER, REPORTER, FakeGitlab, GitRequest
from tests.support.git_http import GitClient, GitRepositories
from tests.support.git_repos import run_git

PROJECT_ID, FORK_ID = 7, 8
DEVELOPER_ID, REPORTER_ID, STRANGER_ID = 11, 12, 13
REPORTER_TOKEN = "glpat-reporter-token-000000000"
STRANGER_TOKEN = "glpat-stranger-token-000000000"


@pytest.fixture
def repositories(tmp_path: Path) -> GitRepositories:
    return GitRepositories(tmp_path / "served")


@pytest.fixture
def git(tmp_path: Path) -> GitClient:
    return GitClient(tmp_path / "home")


@pytest.fixture
def gitlab(repositories: GitRepositories) -> Iterator[FakeGitlab]:
    with FakeGitlab(repositories=repositories) as fake:
        fake.add_project(PROJECT_ID, "acme/widgets", files={"README.md": "Widgets\n"})
        fake.add_user(DEVELOPER_ID, "ada")
        fake.add_user(REPORTER_ID, "rita")
        fake.add_user(STRANGER_ID, "sam")
        fake.set_access(PROJECT_ID, fake.bot_user_id, DEVELOPER)
        fake.set_access(PROJECT_ID, REPORTER_ID, REPORTER)
        fake.add_token(REPORTER_TOKEN, REPORTER_ID)
        fake.add_token(STRANGER_TOKEN, STRANGER_ID)
        yield fake


def url(gitlab: FakeGitlab, token: str | None, path: str = "acme/widgets") -> str:
    credentials = f"oauth2:{token}@" if token else ""
    return f"http://{credentials}127.0.0.1:{gitlab.port}/{path}.git"


def clone(git: GitClient, gitlab: FakeGitlab, token: str | None, into: Path) -> str:
    """git's complaint when the clone fails, else ""."""
    done = git.run("clone", "--quiet", "--filter=blob:none", url(gitlab, token), str(into))
    return done.stderr if done.returncode else ""


def answered(gitlab: FakeGitlab) -> list[GitRequest]:
    """The git requests that carried credentials."""
    return [request for request in gitlab.git_requests() if request.token is not None]


def commit_file(git: GitClient, checkout: Path, name: str, text: str) -> None:
    (checkout / name).write_text(text)
    git.ok("add", name, cwd=checkout)
    git.ok("commit", "--quiet", "-m", f"Add {name}", cwd=checkout)


def test_a_developer_token_clones_and_pushes_a_branch(
    git: GitClient, gitlab: FakeGitlab, repositories: GitRepositories, tmp_path: Path
) -> None:
    checkout = tmp_path / "checkout"
    assert clone(git, gitlab, BOT_TOKEN, checkout) == ""
    commit_file(git, checkout, "fix.txt", "fixed\n")

    git.ok("push", "--quiet", "origin", "HEAD:refs/heads/work", cwd=checkout)

    assert repositories.branch_head("acme/widgets", "work") == git.ok(
        "rev-parse", "HEAD", cwd=checkout
    )
    # git asks without credentials first, and again with them after the 401.
    requests = answered(gitlab)
    assert {(r.push, r.token, r.status) for r in requests} == {
        (False, BOT_TOKEN, 200),
        (True, BOT_TOKEN, 200),
    }
    assert {r.user for r in requests} == {"oauth2"}


def test_git_without_a_known_token_is_asked_for_credentials(
    git: GitClient, gitlab: FakeGitlab, tmp_path: Path
) -> None:
    for token in (None, "glpat-unknown-0000000000000"):
        assert clone(git, gitlab, token, tmp_path / f"checkout-{token}") != ""

    assert {r.status for r in gitlab.git_requests()} == {401}


def test_a_reporter_fetches_but_may_not_push(
    git: GitClient, gitlab: FakeGitlab, tmp_path: Path
) -> None:
    checkout = tmp_path / "checkout"
    assert clone(git, gitlab, REPORTER_TOKEN, checkout) == ""
    commit_file(git, checkout, "fix.txt", "fixed\n")

    pushed = git.run("push", "--quiet", "origin", "HEAD:refs/heads/work", cwd=checkout)

    assert pushed.returncode != 0 and "not allowed to push" in pushed.stderr
    assert {(r.push, r.status) for r in answered(gitlab)} == {(False, 200), (True, 403)}


def test_a_token_of_no_member_finds_no_project(
    git: GitClient, gitlab: FakeGitlab, tmp_path: Path
) -> None:
    assert "could not be found" in clone(git, gitlab, STRANGER_TOKEN, tmp_path / "checkout")

    assert [r.status for r in answered(gitlab)] == [404]


def test_a_revoked_token_is_refused(git: GitClient, gitlab: FakeGitlab, tmp_path: Path) -> None:
    gitlab.remove_token(REPORTER_TOKEN)

    assert clone(git, gitlab, REPORTER_TOKEN, tmp_path / "checkout") != ""

    assert {(r.token, r.status) for r in gitlab.git_requests()} == {
        (None, 401),
        (REPORTER_TOKEN, 401),
    }


def test_a_merge_request_head_follows_its_branch(
    git: GitClient, gitlab: FakeGitlab, repositories: GitRepositories, tmp_path: Path
) -> None:
    first = repositories.commit("acme/widgets", "feature", {"a.txt": "a\n"}, "Add a")
    gitlab.add_merge_request(
        PROJECT_ID, 1, title="Feature", author_id=DEVELOPER_ID, source_branch="feature"
    )
    bare = str(repositories.path("acme/widgets"))
    assert run_git("--git-dir", bare, "rev-parse", "refs/merge-requests/1/head") == first

    checkout = tmp_path / "checkout"
    assert clone(git, gitlab, BOT_TOKEN, checkout) == ""
    git.ok("checkout", "--quiet", "feature", cwd=checkout)
    commit_file(git, checkout, "b.txt", "b\n")
    git.ok("push", "--quiet", "origin", "feature", cwd=checkout)

    head = git.ok("rev-parse", "HEAD", cwd=checkout)
    git.ok("fetch", "--quiet", "origin", "refs/merge-requests/1/head", cwd=checkout)
    assert git.ok("rev-parse", "FETCH_HEAD", cwd=checkout) == head


def test_a_fork_merge_request_head_is_fetched_into_the_target(
    git: GitClient, gitlab: FakeGitlab, repositories: GitRepositories, tmp_path: Path
) -> None:
    gitlab.add_project(FORK_ID, "ada/widgets", fork_of=PROJECT_ID)
    fork_head = repositories.commit("ada/widgets", "patch", {"p.txt": "p\n"}, "Patch")

    gitlab.add_merge_request(
        PROJECT_ID,
        2,
        title="From a fork",
        author_id=DEVELOPER_ID,
        source_branch="patch",
        source_project_id=FORK_ID,
    )

    checkout = tmp_path / "checkout"
    assert clone(git, gitlab, BOT_TOKEN, checkout) == ""
    git.ok("fetch", "--quiet", "origin", "refs/merge-requests/2/head", cwd=checkout)
    assert git.ok("rev-parse", "FETCH_HEAD", cwd=checkout) == fork_head
    assert repositories.branch_head("acme/widgets", "patch") is None
