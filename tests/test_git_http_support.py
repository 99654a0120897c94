"""tests/support/git_http.py and git_repos.py: the real git CLI clones, fetches and
pushes over smart HTTP on loopback, against a small server that checks Basic auth
the way the fakes do and hands the request to `serve_git`."""

from __future__ import annotations

import gzip
import http.client
import random
import stat
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.git_http import (
    GitClient,
    GitRepositories,
    basic_auth,
    challenge,
    is_git_path,
    make_large_repository,
    refuse,
    serve_git,
    split_git_path,
    wants_push,
)
from tests.support.loopback import LoopbackServer

WRITER = ("writer", "writer-password")
READER = ("reader", "reader-password")


@dataclass(frozen=True)
class GitRequest:
    method: str
    path: str
    status: int
    chunked: bool


class GitServer(LoopbackServer):
    """Serves `repositories` to users with a password; only some of them may push."""

    thread_name = "git-server"

    def __init__(self, repositories: GitRepositories, users: dict[str, tuple[str, bool]]) -> None:
        super().__init__()
        self.repositories = repositories
        self.users = users  # user -> (password, may push)
        self.requests: list[GitRequest] = []

    def clone_url(self, name: str, credentials: tuple[str, str] | None = None) -> str:
        user = f"{credentials[0]}:{credentials[1]}@" if credentials else ""
        return f"http://{user}127.0.0.1:{self.port}/{name}.git"

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        split = split_git_path(handler.path)
        if split is None or not self.repositories.path(split[0]).is_dir():
            self.record(handler, 404)
            refuse(handler, 404, "Repository not found")
            return
        name, path_info = split
        query = urlsplit(handler.path).query
        credentials = basic_auth(handler.headers.get("Authorization"))
        account = self.users.get(credentials[0]) if credentials else None
        if credentials is None or account is None or account[0] != credentials[1]:
            self.record(handler, 401)
            challenge(handler, "fake git")
        elif wants_push(path_info, query) and not account[1]:
            self.record(handler, 403)
            refuse(handler, 403, f"{credentials[0]} may not push to {name}")
        else:
            self.record(handler, 200)
            serve_git(
                handler, self.repositories.path(name), path_info, query, remote_user=credentials[0]
            )

    def record(self, handler: BaseHTTPRequestHandler, status: int) -> None:
        """Before answering: the client may look as soon as it has its answer."""
        chunked = "chunked" in handler.headers.get("Transfer-Encoding", "")
        self.requests.append(GitRequest(handler.command, handler.path, status, chunked))

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                server.answer(self)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def repositories(tmp_path: Path) -> GitRepositories:
    served = GitRepositories(tmp_path / "served")
    served.create("acme/api", {"README.md": "# api\n", "src/app.py": "print('v1')\n"})
    return served


@pytest.fixture
def server(repositories: GitRepositories) -> Iterator[GitServer]:
    users = {WRITER[0]: (WRITER[1], True), READER[0]: (READER[1], False)}
    with GitServer(repositories, users) as running:
        yield running


@pytest.fixture
def git(tmp_path: Path) -> GitClient:
    return GitClient(tmp_path / "home")


def clone(git: GitClient, url: str, target: Path, *options: str) -> Path:
    git.ok("clone", "--quiet", *options, url, str(target))
    return target


# -- paths and headers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/acme/api.git/info/refs", ("acme/api", "/info/refs")),
        ("/acme/api.git/info/refs?service=git-upload-pack", ("acme/api", "/info/refs")),
        ("/acme/api.git/git-upload-pack", ("acme/api", "/git-upload-pack")),
        ("/group/sub/proj.git/git-receive-pack", ("group/sub/proj", "/git-receive-pack")),
        ("acme/api.git/info/refs", ("acme/api", "/info/refs")),
        ("/acme/api.git/HEAD", None),
        ("/acme/api/info/refs", None),
        ("/api/v3/repos/acme/api", None),
        ("/.git/info/refs", None),
        ("/acme/../../etc.git/info/refs", None),
        ("/acme//api.git/info/refs", None),
    ],
)
def test_git_paths_are_split_into_repository_and_endpoint(
    path: str, expected: tuple[str, str] | None
) -> None:
    assert split_git_path(path) == expected
    assert is_git_path(path) is (expected is not None)


def test_a_push_is_told_by_its_endpoint_or_service() -> None:
    assert wants_push("/info/refs", "service=git-receive-pack")
    assert wants_push("/git-receive-pack", "")
    assert not wants_push("/info/refs", "service=git-upload-pack")
    assert not wants_push("/git-upload-pack", "")


def test_basic_auth_is_read_and_anything_else_is_none() -> None:
    assert basic_auth("Basic " + b64encode(b"alice:pa:ss").decode()) == ("alice", "pa:ss")
    assert basic_auth("basic " + b64encode(b"bob:").decode()) == ("bob", "")
    assert basic_auth(None) is None
    assert basic_auth("Bearer token") is None
    assert basic_auth("Basic !!!") is None
    assert basic_auth("Basic " + b64encode(b"no-colon").decode()) is None


# -- the git CLI over HTTP --------------------------------------------------------


def test_clone_and_fetch(
    server: GitServer, repositories: GitRepositories, git: GitClient, tmp_path: Path
) -> None:
    repositories.create("group/sub/proj", {"a.txt": "a\n"})
    nested = clone(git, server.clone_url("group/sub/proj", READER), tmp_path / "proj")
    assert (nested / "a.txt").read_text() == "a\n"

    work = clone(git, server.clone_url("acme/api", READER), tmp_path / "api")
    assert (work / "src/app.py").read_text() == "print('v1')\n"
    assert git.ok("rev-parse", "HEAD", cwd=work) == repositories.branch_head("acme/api", "main")

    newer = repositories.commit("acme/api", "main", {"src/app.py": "print('v2')\n"}, "v2")
    git.ok("fetch", "--quiet", "origin", cwd=work)
    assert git.ok("rev-parse", "origin/main", cwd=work) == newer


def test_partial_clone_fetches_blobs_when_needed(
    server: GitServer, repositories: GitRepositories, git: GitClient, tmp_path: Path
) -> None:
    repositories.commit("acme/api", "main", {"src/app.py": "print('v2')\n"}, "v2")
    url = server.clone_url("acme/api", READER)
    work = clone(git, url, tmp_path / "api", "--filter=blob:none")
    assert (work / "src/app.py").read_text() == "print('v2')\n"
    # The old version of src/app.py was filtered out: the server applied the filter.
    missing = git.ok("rev-list", "--objects", "--all", "--missing=print", cwd=work)
    assert [line for line in missing.splitlines() if line.startswith("?")]

    posts = sum(1 for request in server.requests if request.method == "POST")
    assert git.ok("show", "HEAD~1:src/app.py", cwd=work) == "print('v1')"
    assert sum(1 for request in server.requests if request.method == "POST") > posts


def test_push_of_a_new_branch(
    server: GitServer, repositories: GitRepositories, git: GitClient, tmp_path: Path
) -> None:
    work = clone(git, server.clone_url("acme/api", WRITER), tmp_path / "api")
    (work / "NOTES.md").write_text("notes\n")
    git.ok("add", "NOTES.md", cwd=work)
    git.ok("commit", "--quiet", "-m", "Add notes", cwd=work)
    git.ok("push", "--quiet", "origin", "HEAD:refs/heads/notes", cwd=work)

    assert repositories.branch_head("acme/api", "notes") == git.ok("rev-parse", "HEAD", cwd=work)
    assert repositories.file_at("acme/api", "notes", "NOTES.md") == "notes\n"
    assert repositories.branches("acme/api") == ["main", "notes"]


def test_a_push_larger_than_the_post_buffer_is_sent_chunked(
    server: GitServer, repositories: GitRepositories, git: GitClient, tmp_path: Path
) -> None:
    work = clone(git, server.clone_url("acme/api", WRITER), tmp_path / "api")
    # 3 MB that barely compress, over git's 1 MB http.postBuffer.
    (work / "data.txt").write_text(b64encode(random.Random(7).randbytes(2_300_000)).decode())
    git.ok("add", "data.txt", cwd=work)
    git.ok("commit", "--quiet", "-m", "Add data", cwd=work)
    git.ok("push", "--quiet", "origin", "HEAD:refs/heads/data", cwd=work)

    assert repositories.branch_head("acme/api", "data") == git.ok("rev-parse", "HEAD", cwd=work)
    chunked = [r for r in server.requests if r.chunked and r.path.endswith("/git-receive-pack")]
    assert chunked and chunked[0].status == 200


def test_the_server_refuses_a_push_by_a_reader(
    server: GitServer, repositories: GitRepositories, git: GitClient, tmp_path: Path
) -> None:
    work = clone(git, server.clone_url("acme/api", READER), tmp_path / "api")
    git.ok("commit", "--quiet", "--allow-empty", "-m", "Nothing", cwd=work)
    pushed = git.run("push", "origin", "HEAD:refs/heads/sneaky", cwd=work)

    assert pushed.returncode != 0
    assert "403" in pushed.stderr
    assert repositories.branch_head("acme/api", "sneaky") is None
    assert server.requests[-1].status == 403


def test_a_wrong_password_fails_with_401(server: GitServer, git: GitClient, tmp_path: Path) -> None:
    cloned = git.run(
        "clone", server.clone_url("acme/api", (READER[0], "wrong")), str(tmp_path / "x")
    )

    assert cloned.returncode != 0
    assert "Authentication failed" in cloned.stderr
    assert {request.status for request in server.requests} == {401}


def test_the_credential_helper_is_asked_after_the_challenge(
    server: GitServer, repositories: GitRepositories, git: GitClient, tmp_path: Path
) -> None:
    asked = tmp_path / "helper.log"
    helper = tmp_path / "helper.sh"
    helper.write_text(
        "#!/bin/sh\n"
        f'echo "$1" >> {asked}\n'
        "cat > /dev/null\n"
        f'[ "$1" = get ] && printf "username={READER[0]}\\npassword={READER[1]}\\n"\n'
        "exit 0\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    with (git.home / ".gitconfig").open("a") as config:
        config.write(f"[credential]\n\thelper = {helper}\n")

    work = clone(git, server.clone_url("acme/api"), tmp_path / "api")

    assert (work / "README.md").read_text() == "# api\n"
    assert asked.read_text().split() == ["get", "store"]
    assert server.requests[0].status == 401


# -- the protocol, by hand ---------------------------------------------------------


def pkt_line(text: str) -> bytes:
    return b"%04x%s" % (len(text) + 4, text.encode())


def request(server: GitServer, method: str, path: str, body: Any, headers: dict[str, str]) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    credentials = b64encode(f"{READER[0]}:{READER[1]}".encode()).decode()
    headers = {"Authorization": f"Basic {credentials}", "Git-Protocol": "version=2", **headers}
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    assert response.status == 200, response.read()
    content = response.read()
    connection.close()
    return content


def test_protocol_v2_advertises_filters(server: GitServer) -> None:
    advert = request(server, "GET", "/acme/api.git/info/refs?service=git-upload-pack", None, {})
    assert b"version 2" in advert
    fetch = next(line for line in advert.split(b"\n") if b"fetch=" in line)
    assert b"filter" in fetch


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_request_bodies_are_read_in_every_framing(
    server: GitServer, repositories: GitRepositories, encoding: str, framing: str
) -> None:
    command = pkt_line("command=ls-refs\n") + b"0001" + pkt_line("symrefs\n") + b"0000"
    body = gzip.compress(command) if encoding == "gzip" else command
    headers = {"Content-Type": "application/x-git-upload-pack-request"}
    if encoding == "gzip":
        headers["Content-Encoding"] = "gzip"
    # http.client sends an iterable body chunked.
    sent = iter([body[:7], body[7:]]) if framing == "chunked" else body
    answer = request(server, "POST", "/acme/api.git/git-upload-pack", sent, headers)

    main = repositories.branch_head("acme/api", "main")
    assert f"{main} refs/heads/main".encode() in answer
    assert server.requests[-1].chunked is (framing == "chunked")


# -- the repositories ----------------------------------------------------------------


def test_repositories_branches_commits_and_compare(repositories: GitRepositories) -> None:
    base = repositories.branch_head("acme/api", "main")
    assert base is not None
    first = repositories.commit(
        "acme/api", "feature", {"src/app.py": "print('v2')\nprint('more')\n"}, "Change app",
        parent_branch="main", author=("Ann Author", "ann@example.test"),
    )  # fmt: skip
    second = repositories.commit("acme/api", "feature", {"docs/x.md": "x\n"}, "Add docs\n\nWhy.")
    repositories.commit("acme/api", "main", {"README.md": "# api, moved on\n"}, "Main moves")

    assert repositories.branches("acme/api") == ["feature", "main"]
    assert repositories.commits("acme/api", "main", "feature") == [
        {"sha": first, "message": "Change app", "author_name": "Ann Author",
         "author_email": "ann@example.test"},
        {"sha": second, "message": "Add docs\n\nWhy.", "author_name": "Test Author",
         "author_email": "author@example.test"},
    ]  # fmt: skip
    assert repositories.commits("acme/api", base, second)[-1]["sha"] == second
    # From the merge base: main's own later change does not count.
    assert repositories.diffstat("acme/api", "main", "feature") == (3, 1, 2)
    assert repositories.file_at("acme/api", first, "src/app.py") == "print('v2')\nprint('more')\n"
    assert repositories.file_at("acme/api", "main", "docs/x.md") is None
    assert repositories.branch_head("acme/api", "missing") is None


def test_a_fork_has_every_ref(repositories: GitRepositories) -> None:
    head = repositories.commit("acme/api", "topic", {"t.txt": "t\n"}, "Topic")
    repositories.set_ref("acme/api", "refs/pull/3/head", head)
    fork = repositories.fork("acme/api", "someone/api")

    assert fork == repositories.path("someone/api")
    assert repositories.branches("someone/api") == ["main", "topic"]
    assert repositories.branch_head("someone/api", "topic") == head
    assert repositories.file_at("someone/api", "refs/pull/3/head", "t.txt") == "t\n"
    repositories.commit("someone/api", "topic", {"t.txt": "fork\n"}, "Only in the fork")
    assert repositories.branch_head("acme/api", "topic") == head


def test_a_large_repository_is_deterministic_and_served(
    server: GitServer, repositories: GitRepositories, git: GitClient, tmp_path: Path
) -> None:
    size = {"files": 120, "history_bytes": 400_000, "commits": 12}
    make_large_repository(repositories, "bench/big", **size)
    other = GitRepositories(tmp_path / "again")
    make_large_repository(other, "bench/big", **size)
    head = repositories.branch_head("bench/big", "main")
    assert head == other.branch_head("bench/big", "main")

    work = clone(git, server.clone_url("bench/big", READER), tmp_path / "big")
    assert len(git.ok("ls-files", cwd=work).splitlines()) == 120
    assert git.ok("rev-list", "--count", "HEAD", cwd=work) == "12"
    sizes = git.ok(
        "cat-file", "--batch-all-objects", "--batch-check=%(objecttype) %(objectsize)", cwd=work
    )
    blob_bytes = sum(
        int(n) for kind, n in (line.split() for line in sizes.splitlines()) if kind == "blob"
    )
    assert 360_000 < blob_bytes <= 400_000
