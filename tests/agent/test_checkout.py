"""agent/checkout.py: the checkout script, hooks and credential helper, run with real
git against a local repository (as the agent-server's terminal would run them)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from agent.checkout import (
    CHECKOUT_DONE_KEY,
    RELAY_DIR,
    START_COMMIT_KEY,
    CheckoutMode,
    Requester,
    checkout_script,
    co_author_hook,
    credential_helper,
    push_guard_hook,
    workspace_instructions,
)
from tests.support.loopback import LoopbackServer

BOT = ("acme-bot[bot]", "7+acme-bot[bot]@users.noreply.github.com")
ALICE = Requester(login="alice", platform="github", name="Alice", email="1+alice@example.test")


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=check, env=git_env(cwd)
    )


def git_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(home),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
    }


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repository with `main` (two files) and a `feature` branch."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(bare, "config", "uploadpack.allowFilter", "true")
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(bare), str(seed))
    (seed / "README.md").write_text("hello\n")
    (seed / "parser.py").write_text("def parse(): ...\n")
    git(seed, "add", ".")
    git(seed, "-c", "user.name=Seed", "-c", "user.email=s@e.test", "commit", "-qm", "seed")
    git(seed, "push", "-q", "origin", "HEAD:main")
    git(seed, "checkout", "-qb", "feature")
    (seed / "feature.txt").write_text("wip\n")
    git(seed, "add", ".")
    git(seed, "-c", "user.name=Seed", "-c", "user.email=s@e.test", "commit", "-qm", "wip")
    git(seed, "push", "-q", "origin", "feature")
    git(seed, "push", "-q", "origin", "feature:refs/pull/3/head")
    return bare


def prepare(
    tmp_path: Path, origin: Path, mode: CheckoutMode, branch: str | None, **kw: str
) -> Path:
    """The agent-server's part (`git init` of the directory), the relay's uploads,
    then the script, as `sh` in the directory."""
    directory = tmp_path / "workspace" / "conv" / "api"
    directory.mkdir(parents=True)
    git(directory, "init", "-q")
    relay = directory / RELAY_DIR
    (relay / "hooks").mkdir(parents=True)
    (relay / "hooks" / "commit-msg").write_text(co_author_hook(ALICE))
    (relay / "hooks" / "pre-push").write_text(push_guard_hook(branch))
    (relay / "credential-helper").write_text("#!/bin/sh\nexit 0\n")
    script = checkout_script(
        directory=str(directory),
        clone_url=f"file://{origin}",
        mode=mode,
        base_branch="main",
        branch=branch,
        fetch_ref=kw.get("fetch_ref"),
        bot_name=BOT[0],
        bot_email=BOT[1],
    )
    (relay / "checkout.sh").write_text(script)
    run_script(directory)
    return directory


def run_script(directory: Path) -> str:
    result = subprocess.run(
        ["sh", f"{directory}/{RELAY_DIR}/checkout.sh"],
        cwd=directory,
        capture_output=True,
        text=True,
        env=git_env(directory),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def commit_file(directory: Path, name: str) -> None:
    (directory / name).write_text("change\n")
    git(directory, "add", name)
    git(directory, "commit", "-qm", f"Add {name}")


def test_new_branch_checkout_pushes_the_work_branch_as_the_bot_with_a_co_author(
    tmp_path: Path, origin: Path
) -> None:
    directory = prepare(tmp_path, origin, CheckoutMode.NEW_BRANCH, "openhands/12-abcdef01")

    assert git(directory, "branch", "--show-current").stdout.strip() == "openhands/12-abcdef01"
    assert (directory / "parser.py").read_text() == "def parse(): ...\n"
    assert (
        git(directory, "config", "remote.origin.partialclonefilter").stdout.strip() == "blob:none"
    )
    commit_file(directory, "fix.py")
    message = git(directory, "log", "-1", "--format=%an <%ae>%n%B").stdout
    assert message.startswith(f"{BOT[0]} <{BOT[1]}>")
    assert "Co-authored-by: Alice <1+alice@example.test>" in message

    pushed = git(directory, "push", check=False)

    assert pushed.returncode == 0, pushed.stderr
    assert (
        git(origin, "rev-parse", "openhands/12-abcdef01").stdout
        == git(directory, "rev-parse", "HEAD").stdout
    )


def test_the_push_guard_refuses_other_branches_and_force_pushes(
    tmp_path: Path, origin: Path
) -> None:
    directory = prepare(tmp_path, origin, CheckoutMode.NEW_BRANCH, "openhands/12-abcdef01")
    commit_file(directory, "fix.py")
    assert git(directory, "push", check=False).returncode == 0

    other = git(directory, "push", "origin", "HEAD:main", check=False)
    git(directory, "commit", "-q", "--amend", "-m", "rewritten")
    forced = git(directory, "push", "--force", check=False)

    assert other.returncode != 0 and "only openhands/12-abcdef01 may be pushed" in other.stderr
    assert forced.returncode != 0 and "force-pushing is not allowed" in forced.stderr


def test_running_the_script_again_changes_nothing(tmp_path: Path, origin: Path) -> None:
    directory = prepare(tmp_path, origin, CheckoutMode.NEW_BRANCH, "openhands/slack-abcdef01")
    commit_file(directory, "work.py")
    head = git(directory, "rev-parse", "HEAD").stdout

    again = run_script(directory)

    assert git(directory, "rev-parse", "HEAD").stdout == head
    start = git(directory, "config", START_COMMIT_KEY).stdout.strip()
    assert again.strip() == f"checked-out {start}"
    assert git(directory, "config", CHECKOUT_DONE_KEY).stdout.strip() == "done"


def test_head_branch_checkout_pushes_to_the_request_s_branch(tmp_path: Path, origin: Path) -> None:
    directory = prepare(tmp_path, origin, CheckoutMode.HEAD_BRANCH, "feature")
    assert (directory / "feature.txt").exists()
    commit_file(directory, "more.py")

    assert git(directory, "push", check=False).returncode == 0
    assert git(origin, "rev-parse", "feature").stdout == git(directory, "rev-parse", "HEAD").stdout


def test_fork_head_checkout_is_read_only(tmp_path: Path, origin: Path) -> None:
    directory = prepare(
        tmp_path, origin, CheckoutMode.FORK_HEAD, None, fetch_ref="refs/pull/3/head"
    )
    assert (directory / "feature.txt").exists()
    assert git(directory, "branch", "--show-current").stdout.strip() == "pr-head-3"
    commit_file(directory, "suggestion.py")

    pushed = git(directory, "push", "origin", "HEAD:refs/heads/x", check=False)

    assert pushed.returncode != 0 and "read-only" in pushed.stderr


class _TokenServer(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.authorizations: list[str | None] = []

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.authorizations.append(self.headers.get("Authorization"))
                body = b"ghs_minted"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def token_server() -> Iterator[_TokenServer]:
    with _TokenServer() as server:
        yield server


def test_the_credential_helper_asks_the_relay_with_the_capability(
    tmp_path: Path, token_server: _TokenServer
) -> None:
    helper = tmp_path / "helper"
    helper.write_text(
        credential_helper(
            f"{token_server.url}/agent/credentials/c/GITHUB_TOKEN", "cap-1", "x-access-token"
        )
    )

    result = subprocess.run(
        ["sh", str(helper), "get"],
        input="protocol=https\nhost=example.test\n\n",
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "username=x-access-token\npassword=ghs_minted\n"
    assert token_server.authorizations == ["Bearer cap-1"]


def test_instructions_name_the_branch_and_forbid_force_pushes() -> None:
    text = workspace_instructions(
        directory="/w/c/api",
        repository="acme/api",
        mode=CheckoutMode.NEW_BRANCH,
        branch="openhands/12-abcdef01",
        base_branch="main",
    )
    assert "/w/c/api" in text and "openhands/12-abcdef01" in text and "main" in text
    assert "`git push`" in text and "do not open one" in text and "Never force-push" in text
    fork = workspace_instructions(
        directory="/w/c/api",
        repository="acme/api",
        mode=CheckoutMode.FORK_HEAD,
        branch=None,
        base_branch="main",
    )
    assert "read-only" in fork


def test_no_email_means_no_trailer() -> None:
    assert "Co-authored-by" not in co_author_hook(Requester(login="U1", platform="slack"))
