"""The fake GitHub's repositories: git over smart HTTP with narrowed access tokens,
and the REST routes about code (branches, comparisons, pull requests), driven by
plain HTTP and the real git CLI."""

from __future__ import annotations

import subprocess
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gidgethub.apps
import httpx
import pytest

from tests.support.fake_github import FakeGitHub, generate_private_key_pem
from tests.support.git_http import GitClient, git_env
from tests.support.waiting import wait_until

APP_ID = 123
SLUG = "relay-bot"
INSTALLATION = 42
REPO = "acme/api"
OTHER_REPO = "acme/web"
FORK = "outsider/api"
WRITER = "alice"


@pytest.fixture(scope="module")
def pem() -> str:
    return generate_private_key_pem()


@pytest.fixture
def fake(pem: str, tmp_path: Path) -> Iterator[FakeGitHub]:
    with FakeGitHub(git_root=tmp_path / "repositories") as server:
        server.add_app(APP_ID, SLUG, private_key_pem=pem)
        server.create_repository(REPO, {"README.md": "one\ntwo\n"})
        server.create_repository(OTHER_REPO)
        server.add_installation(
            INSTALLATION, APP_ID, account="acme", repositories=[REPO, OTHER_REPO]
        )
        server.set_permission(REPO, WRITER, "write")
        yield server


@pytest.fixture
def git(tmp_path: Path) -> GitClient:
    return GitClient(tmp_path / "home")


def mint(fake: FakeGitHub, pem: str, body: dict[str, Any] | None = None) -> httpx.Response:
    jwt = gidgethub.apps.get_jwt(app_id=str(APP_ID), private_key=pem)
    return httpx.post(
        f"{fake.api_url}/app/installations/{INSTALLATION}/access_tokens",
        headers={"Authorization": f"Bearer {jwt}"},
        json=body,
        timeout=10,
    )


def token_for(fake: FakeGitHub, pem: str, *repositories: str, contents: str = "write") -> str:
    body = {"repositories": list(repositories), "permissions": {"contents": contents}}
    response = mint(fake, pem, body)
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def api(fake: FakeGitHub, method: str, path: str, token: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method,
        f"{fake.api_url}{path}",
        headers={"Authorization": f"token {token}"},
        json=body,
        timeout=10,
    )


def info_refs(fake: FakeGitHub, repository: str, auth: tuple[str, str] | None) -> httpx.Response:
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    return httpx.get(
        f"{fake.url}/{repository}.git/info/refs",
        params={"service": "git-upload-pack"},
        headers=headers,
        timeout=10,
    )


def basic(token: str) -> tuple[str, str]:
    encoded = b64encode(f"x-access-token:{token}".encode()).decode()
    return ("-c", f"http.extraHeader=Authorization: Basic {encoded}")


# -- tokens -------------------------------------------------------------------
def test_a_token_gets_the_permissions_it_asks_for_and_metadata(fake: FakeGitHub, pem: str) -> None:
    response = mint(fake, pem, {"repositories": ["api"], "permissions": {"contents": "read"}})

    assert response.status_code == 201
    assert response.json()["permissions"] == {"metadata": "read", "contents": "read"}
    [grant] = fake.token_grants()
    assert (grant.repositories, grant.requested_permissions) == ([REPO], {"contents": "read"})
    assert grant.permissions == {"metadata": "read", "contents": "read"}


def test_a_token_cannot_ask_for_more_than_the_installation_has(fake: FakeGitHub, pem: str) -> None:
    response = mint(fake, pem, {"permissions": {"administration": "write"}})

    assert response.status_code == 422
    assert response.json()["message"] == (
        "The permissions requested are not granted to this installation."
    )
    assert fake.token_grants() == []


def test_token_lifetime_sets_when_tokens_expire(fake: FakeGitHub, pem: str) -> None:
    fake.token_lifetime = 0
    token = token_for(fake, pem, "api")

    assert api(fake, "GET", f"/repos/{REPO}", token).status_code == 401


def test_a_revoked_token_answers_401(fake: FakeGitHub, pem: str) -> None:
    token = token_for(fake, pem, "api")

    assert api(fake, "DELETE", "/installation/token", token).status_code == 204
    assert api(fake, "GET", f"/repos/{REPO}", token).status_code == 401
    assert fake.revoked_tokens() == [token]
    assert fake.token_grants()[0].revoked


# -- git ----------------------------------------------------------------------
def test_git_without_credentials_is_challenged(fake: FakeGitHub) -> None:
    response = info_refs(fake, REPO, None)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("right", 200),
        ("wrong user", 401),
        ("unknown token", 401),
        ("expired", 401),
        ("other repository", 404),
        ("whole installation", 404),
    ],
)
def test_git_takes_a_token_narrowed_to_that_repository(
    fake: FakeGitHub, pem: str, who: str, status: int
) -> None:
    narrowed = token_for(fake, pem, "api")
    credentials = {
        "right": ("x-access-token", narrowed),
        "wrong user": ("git", narrowed),
        "unknown token": ("x-access-token", "ghs_unknown"),
        "expired": ("x-access-token", narrowed),
        "other repository": ("x-access-token", token_for(fake, pem, "web")),
        "whole installation": ("x-access-token", mint(fake, pem).json()["token"]),
    }[who]
    if who == "expired":
        fake.expire_tokens()

    response = info_refs(fake, REPO, credentials)

    assert response.status_code == status
    [request] = fake.git_requests()
    assert (request.repository, request.push, request.user, request.token, request.status) == (
        REPO,
        False,
        credentials[0],
        credentials[1],
        status,
    )


def test_a_push_moves_the_head_of_the_pull_request_of_that_branch(
    fake: FakeGitHub, pem: str, git: GitClient, tmp_path: Path
) -> None:
    fake.commit(REPO, "fix", {"a.txt": "a\n"}, "a")
    fake.add_pull_request(REPO, 5, head="fix", title="Fix", user=WRITER)
    token = token_for(fake, pem, "api")
    checkout = tmp_path / "api"
    git.ok(
        *basic(token), "clone", "--quiet", "--branch", "fix", fake.clone_url(REPO), str(checkout)
    )
    (checkout / "b.txt").write_text("b\n")
    git.ok("add", ".", cwd=checkout)
    git.ok("commit", "--quiet", "-m", "b", cwd=checkout)

    git.ok(*basic(token), "push", "--quiet", cwd=checkout)

    pushed = git.ok("rev-parse", "HEAD", cwd=checkout)
    assert fake.pull_requests(REPO)[0]["head"]["sha"] == pushed
    remote = git.ok(*basic(token), "ls-remote", fake.clone_url(REPO), "refs/pull/5/head")
    assert remote.split()[0] == pushed
    # The push: its advertisement, then the pack.
    assert [r.status for r in fake.git_requests() if r.push] == [200, 200]


def test_a_read_only_token_may_fetch_but_not_push(
    fake: FakeGitHub, pem: str, git: GitClient, tmp_path: Path
) -> None:
    token = token_for(fake, pem, "api", contents="read")
    checkout = tmp_path / "api"
    git.ok(*basic(token), "clone", "--quiet", fake.clone_url(REPO), str(checkout))

    pushed = git.run(*basic(token), "push", "origin", "HEAD:refs/heads/new", cwd=checkout)

    assert pushed.returncode != 0
    assert f"Permission to {REPO}.git denied to {SLUG}[bot]." in pushed.stderr
    assert fake.git_requests()[-1].status == 403


def test_held_fetches_wait_for_their_release(
    fake: FakeGitHub, pem: str, git: GitClient, tmp_path: Path
) -> None:
    hold = fake.hold_fetches(REPO)
    token = token_for(fake, pem, "api")
    command = ["git", *basic(token), "clone", "--quiet", fake.clone_url(REPO), str(tmp_path / "c")]
    with subprocess.Popen(command, env=git_env(git.home), stderr=subprocess.PIPE) as clone:
        try:
            wait_until(lambda: hold.arrived, timeout=30, message="the clone did not fetch")
            # Held: the clone waits, while the fake answers everything else.
            assert clone.poll() is None
            other = ("x-access-token", token_for(fake, pem, "web"))
            assert info_refs(fake, OTHER_REPO, other).status_code == 200
        finally:
            hold.release()
        assert clone.wait(timeout=60) == 0
    assert (tmp_path / "c" / "README.md").read_text() == "one\ntwo\n"
    served = [r.at for r in fake.git_requests(REPO) if r.status == 200]
    assert len(served) > 1 and served == sorted(served)


# -- repositories, branches, comparisons ----------------------------------------
def test_a_repository_says_where_to_clone_it(fake: FakeGitHub, pem: str) -> None:
    fake.fork_repository(REPO, FORK)
    token = token_for(fake, pem, "api")

    repository = api(fake, "GET", f"/repos/{REPO}", token).json()

    assert repository["clone_url"] == f"{fake.url}/{REPO}.git"
    assert (repository["default_branch"], repository["fork"]) == ("main", False)
    assert api(fake, "GET", f"/repos/{OTHER_REPO}", token).status_code == 404


def test_compare_tells_ahead_behind_and_diverged(fake: FakeGitHub, pem: str) -> None:
    token = token_for(fake, pem, "api")
    fake.commit(REPO, "topic", {"README.md": "one\n2\nthree\n"}, "topic")
    compare = api(fake, "GET", f"/repos/{REPO}/compare/main...topic", token).json()
    assert (compare["status"], compare["ahead_by"], compare["behind_by"]) == ("ahead", 1, 0)
    assert compare["files"] == [
        {
            "filename": "README.md",
            "status": "modified",
            "additions": 2,
            "deletions": 1,
            "changes": 3,
        }
    ]

    fake.commit(REPO, "main", {"other.txt": "x\n"}, "main moves on")
    compare = api(fake, "GET", f"/repos/{REPO}/compare/main...topic", token).json()
    assert (compare["status"], compare["ahead_by"], compare["behind_by"]) == ("diverged", 1, 1)
    # The files are the branch's own changes, from where it left main.
    assert [f["filename"] for f in compare["files"]] == ["README.md"]
    assert api(fake, "GET", f"/repos/{REPO}/compare/main...gone", token).status_code == 404


def test_a_branch_with_a_slash_is_found(fake: FakeGitHub, pem: str) -> None:
    token = token_for(fake, pem, "api")
    sha = fake.commit(REPO, "openhands/1-abc", {"a.txt": "a\n"}, "a")

    branch = api(fake, "GET", f"/repos/{REPO}/branches/openhands/1-abc", token)

    assert branch.json()["commit"]["sha"] == sha
    assert api(fake, "GET", f"/repos/{REPO}/branches/nope", token).status_code == 404


# -- pull requests --------------------------------------------------------------
def relay_token(fake: FakeGitHub, pem: str) -> str:
    return str(mint(fake, pem).json()["token"])


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"head": "topic", "base": "main"}, {"code": "missing_field", "field": "title"}),
        ({"title": "t", "head": "nope", "base": "main"}, {"code": "invalid", "field": "head"}),
        ({"title": "t", "head": "topic", "base": "nope"}, {"code": "invalid", "field": "base"}),
        ({"title": "t", "head": "main", "base": "main"}, {"code": "custom"}),
    ],
)
def test_a_pull_request_github_would_refuse_is_a_422(
    fake: FakeGitHub, pem: str, body: dict[str, Any], problem: dict[str, str]
) -> None:
    fake.commit(REPO, "topic", {"a.txt": "a\n"}, "a")

    response = api(fake, "POST", f"/repos/{REPO}/pulls", relay_token(fake, pem), body)

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert problem.items() <= error.items()
    assert fake.pull_requests(REPO) == []


def test_a_second_pull_request_of_one_branch_is_refused(fake: FakeGitHub, pem: str) -> None:
    fake.commit(REPO, "topic", {"a.txt": "a\n"}, "a")
    token = relay_token(fake, pem)
    body = {"title": "t", "head": "topic", "base": "main", "draft": True}

    created = api(fake, "POST", f"/repos/{REPO}/pulls", token, body)
    again = api(fake, "POST", f"/repos/{REPO}/pulls", token, body)

    assert created.status_code == 201
    assert (created.json()["draft"], created.json()["user"]["login"]) == (True, f"{SLUG}[bot]")
    assert again.status_code == 422
    assert again.json()["errors"][0]["message"] == "A pull request already exists for acme:topic."
    listed = api(fake, "GET", f"/repos/{REPO}/pulls?head=acme:topic&state=open", token).json()
    assert [p["number"] for p in listed] == [created.json()["number"]]


def test_a_fork_pull_request_is_labelled_by_the_forks_owner(
    fake: FakeGitHub, pem: str, git: GitClient, tmp_path: Path
) -> None:
    fake.fork_repository(REPO, FORK)
    sha = fake.commit(FORK, "main", {"a.txt": "from a fork\n"}, "a")
    fake.add_pull_request(
        REPO, 2, head="main", title="From a fork", user="outsider", head_repository=FORK
    )
    token = relay_token(fake, pem)

    pull = api(fake, "GET", f"/repos/{REPO}/pulls/2", token).json()

    assert (pull["head"]["label"], pull["head"]["repo"]["full_name"]) == ("outsider:main", FORK)
    assert (pull["head"]["sha"], pull["base"]["label"]) == (sha, "acme:main")
    assert pull["base"]["sha"] == fake.branch_head(REPO, "main") != sha
    listed = api(fake, "GET", f"/repos/{REPO}/pulls?head=outsider:main", token).json()
    assert [p["number"] for p in listed] == [2]


def test_reviews_are_asked_of_collaborators_other_than_the_author(
    fake: FakeGitHub, pem: str
) -> None:
    fake.commit(REPO, "topic", {"a.txt": "a\n"}, "a")
    token = relay_token(fake, pem)
    number = api(
        fake, "POST", f"/repos/{REPO}/pulls", token, {"title": "t", "head": "topic", "base": "main"}
    ).json()["number"]
    url = f"/repos/{REPO}/pulls/{number}/requested_reviewers"

    author = api(fake, "POST", url, token, {"reviewers": [f"{SLUG}[bot]"]})
    stranger = api(fake, "POST", url, token, {"reviewers": ["mallory"]})
    writer = api(fake, "POST", url, token, {"reviewers": [WRITER]})

    assert (author.status_code, stranger.status_code, writer.status_code) == (422, 422, 201)
    assert [r["login"] for r in writer.json()["requested_reviewers"]] == [WRITER]
