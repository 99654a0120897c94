"""End to end, more of GitHub workspaces: pull requests of the same repository and of
forks, two repositories at once, a run that outlives its first token, and a relay
killed while it checks a repository out.

As in test_workspace_github.py: agent-relay runs as a process with the real
openhands-agent-server, the scripted LLM's tool calls run real git in the agent's
terminal, and the fake GitHub serves real repositories over git's smart HTTP to
tokens it minted for them. Each scenario has a repository of its own, so the token
grants and git requests of one repository are that scenario's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import github_webhooks as hooks
from tests.support.agent_server import AgentServerProcess
from tests.support.fake_github import TOKEN_LIFETIME, FakeGitHub
from tests.support.fake_llm import FakeLLM, finish, last_user_text, run, steps
from tests.support.git_repos import run_git
from tests.support.relay_process import RelayProcess, relay_environment
from tests.support.waiting import wait_until

pytestmark = pytest.mark.agent_server

APP_ID = 5252
SLUG = "openhands-relay-more"
BOT = f"{SLUG}[bot]"
INSTALLATION = 92
WEBHOOK_SECRET = "e2e-workspace-github-more-secret"
WRITER = "ada"
SUMMARY = "Done as asked."
# One repository per scenario.
SAME = "acme/pulls"  # a pull request from a branch of the same repository
FORKED, FORK = "acme/cli", "outsider/cli"  # a pull request from a fork
API, WEB = "acme/api", "acme/web"  # two mentions at once
LONG = "acme/long"  # a run that outlives its first token
CRASH = "acme/crash"  # the relay killed during the checkout
HEAD_BRANCH = "fix/zones"
# Titles the scripted LLM tells the scenarios apart by (the prompt carries them).
SAME_TITLE = "Finish the time zone fix"
FORK_TITLE = "Time zones from a contributor"
WHERE_TITLE = "Say where you work"
LONG_TITLE = "A slow build"
CRASH_TITLE = "Fix the crash report"
# The fake's token lifetime in the long run; the agent waits longer than that.
SHORT_LIFETIME = 8.0
COMMIT = "printf 'tz\\n' >> main.py && git commit -qam 'Keep time zones'"
PUSH = "git push 2>&1 | tail -3"
# The "on it" comment keeps its marker (bots.markers) while it shows the turn's status.
ACK_MARK = "agent-relay:ack:"
# The pushed file says which repository the checkout is: its remote, its history's
# length and its files.
WHERE = (
    "(git remote get-url origin; git log --oneline | wc -l; ls) > where.txt"
    " && git add where.txt && git commit -qm 'Say where' && " + PUSH
)


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    rules = [
        # processors.summary.SUMMARY_INSTRUCTION starts with these words.
        ("Please write the reply to the person", finish(SUMMARY)),
        (SAME_TITLE, steps(run(f"{COMMIT} && {PUSH}"), finish("Pushed."))),
        (
            FORK_TITLE,
            steps(
                run(COMMIT),
                # Kept outside the working tree, so that it is not part of the change.
                run("git push origin HEAD > .git/push.log 2>&1; cat .git/push.log"),
                finish("Could not push."),
            ),
        ),
        (WHERE_TITLE, steps(run(WHERE), finish("Here."))),
        (
            LONG_TITLE,
            steps(run(f"sleep {SHORT_LIFETIME + 2:.0f} && {COMMIT} && {PUSH}"), finish("Slow.")),
        ),
        (CRASH_TITLE, steps(run(f"{COMMIT} && {PUSH}"), finish("Fixed."))),
    ]
    with FakeLLM(rules, default=finish("Nothing to do.")) as llm:
        yield llm


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module")
def relay(
    tmp_path_factory: pytest.TempPathFactory,
    relay_port: int,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    github: FakeGitHub,
) -> Iterator[RelayProcess]:
    github.add_app(APP_ID, SLUG)
    ours = [SAME, FORKED, API, WEB, LONG, CRASH]
    github.add_installation(INSTALLATION, APP_ID, account="acme", repositories=ours)
    for repository in ours:
        github.set_permission(repository, WRITER, "write")
        github.create_repository(repository, {"main.py": "def main(): ...\n"})
    workdir = tmp_path_factory.mktemp("relay-workspace-github-more")
    env = relay_environment(
        workdir=workdir,
        database_url=f"sqlite:///{workdir / 'relay.db'}",
        port=relay_port,
        agent_server=agent_server,
        fake_llm=fake_llm,
        extra={
            **github.relay_settings(APP_ID, WEBHOOK_SECRET),
            "PUBLIC_URL": f"http://127.0.0.1:{relay_port}",
            "SECRET_KEY": "e2e-secret-key-of-the-more-workspace-tests",
            "LOG_LEVEL": "DEBUG",
            "JOB_LEASE_SECONDS": "5",
        },
    )
    relay = RelayProcess(workdir, env).start()
    try:
        yield relay
    finally:
        relay.stop()


def mention(
    relay: RelayProcess, github: FakeGitHub, repository: str, number: int, *, pull: bool = False
) -> None:
    comment = github.add_comment(repository, number, "@openhands please do it", user=WRITER)
    payload = hooks.issue_comment(
        repository, INSTALLATION, comment, sender=WRITER, pull_request=pull
    )
    response = hooks.deliver(relay.url, "issue_comment", payload, WEBHOOK_SECRET)
    assert response.status_code == 202, response.text


def bot_comments(github: FakeGitHub, repository: str, number: int) -> list[str]:
    return [c["body"] for c in github.comments(repository, number) if c["user"]["login"] == BOT]


def answers(github: FakeGitHub, repository: str, number: int) -> list[str]:
    """The bot's comments other than its "on it" (which becomes the turn's status)."""
    return [b for b in bot_comments(github, repository, number) if ACK_MARK not in b]


def wait_for_answer(relay: RelayProcess, github: FakeGitHub, repository: str, number: int) -> str:
    wait_until(
        lambda: answers(github, repository, number),
        timeout=180,
        message=lambda: f"no answer on {repository}#{number}:\n{relay.log_tail()}",
    )
    [answer] = answers(github, repository, number)
    return answer


def work_branches(github: FakeGitHub, repository: str) -> list[str]:
    return [b for b in github.git.branches(repository) if b.startswith("openhands/")]


def asked_permissions(github: FakeGitHub, repository: str) -> list[dict[str, str] | None]:
    """What the tokens narrowed to `repository` were asked for: the agent's tokens,
    as the relay's own are not narrowed."""
    return [
        g.requested_permissions for g in github.token_grants() if g.repositories == [repository]
    ]


def workspace_rows(relay: RelayProcess) -> dict[str, tuple[str, str]]:
    """repository -> (conversation id, working directory), from the relay's database."""
    with sqlite3.connect(relay.workdir / "relay.db") as db:
        rows = db.execute("SELECT repository, conversation_id, working_dir FROM workspaces")
        return {
            repository: (conversation, directory) for repository, conversation, directory in rows
        }


def test_a_mention_on_a_pull_request_pushes_to_its_head_branch(
    relay: RelayProcess, github: FakeGitHub
) -> None:
    started = github.commit(SAME, HEAD_BRANCH, {"main.py": "def main(): 1\n"}, "Start on zones")
    github.add_pull_request(SAME, 5, head=HEAD_BRANCH, title=SAME_TITLE, user=WRITER)

    mention(relay, github, SAME, 5, pull=True)
    answer = wait_for_answer(relay, github, SAME, 5)

    assert answer.startswith(f"@{WRITER} Pushed 1 commit to `{HEAD_BRANCH}`"), answer
    assert [p["number"] for p in github.pull_requests(SAME)] == [5]
    assert work_branches(github, SAME) == []
    [commit] = github.git.commits(SAME, started, HEAD_BRANCH)
    assert commit["author_name"] == BOT and "Keep time zones" in commit["message"]
    asked = asked_permissions(github, SAME)
    assert asked and all(p == {"contents": "write", "metadata": "read"} for p in asked)


def test_a_mention_on_a_pull_request_from_a_fork_answers_with_a_diff(
    relay: RelayProcess, github: FakeGitHub
) -> None:
    github.fork_repository(FORKED, FORK)
    github.commit(FORK, "zones", {"main.py": "def main(): 2\n"}, "Zones, from outside")
    github.add_pull_request(
        FORKED, 6, head="zones", head_repository=FORK, title=FORK_TITLE, user="outsider"
    )
    heads = {
        r: {b: github.branch_head(r, b) for b in github.git.branches(r)} for r in (FORKED, FORK)
    }

    mention(relay, github, FORKED, 6, pull=True)
    answer = wait_for_answer(relay, github, FORKED, 6)

    assert answer.startswith(f"@{WRITER} No changes were pushed: this request comes from a fork")
    assert "```diff" in answer and "+tz" in answer, answer
    # The agent tried, and GitHub refused: its token can only read (git asks for the
    # remote's branches before it runs the pre-push hook, so that hook is not reached).
    pushes = [r for r in github.git_requests(FORKED) + github.git_requests(FORK) if r.push]
    assert pushes and all(r.status != 200 for r in pushes)
    log = next(Path(relay.env["AGENT_WORKSPACE_ROOT"]).glob("*/cli/.git/push.log")).read_text()
    assert f"Permission to {FORKED}.git denied to {BOT}" in log, log
    assert heads == {
        r: {b: github.branch_head(r, b) for b in github.git.branches(r)} for r in (FORKED, FORK)
    }
    assert [p["number"] for p in github.pull_requests(FORKED)] == [6]
    asked = asked_permissions(github, FORKED)
    assert asked and all(p == {"contents": "read", "metadata": "read"} for p in asked)


def test_two_mentions_at_once_work_in_two_checkouts_of_their_own(
    relay: RelayProcess, github: FakeGitHub
) -> None:
    github.commit(WEB, "main", {"index.html": "<p>web</p>\n"}, "Page")
    github.commit(WEB, "main", {"style.css": "p {}\n"}, "Style")
    for repository in (API, WEB):
        github.add_issue(repository, 7, title=WHERE_TITLE, body="Which one?", user=WRITER)
    for repository in (API, WEB):
        mention(relay, github, repository, 7)

    for repository in (API, WEB):
        answer = wait_for_answer(relay, github, repository, 7)
        [pull] = github.pull_requests(repository)
        assert answer.startswith(f"@{WRITER} Opened draft PR #{pull['number']}: "), answer

    rows = workspace_rows(relay)
    root = Path(relay.env["AGENT_WORKSPACE_ROOT"])
    (api_id, api_dir), (web_id, web_dir) = rows[API], rows[WEB]
    assert api_id != web_id
    assert Path(api_dir) == root / api_id / "api" and Path(web_dir) == root / web_id / "web"
    expected = {API: ("1", ["main.py"]), WEB: ("3", ["index.html", "main.py", "style.css"])}
    for repository, (commits, files) in expected.items():
        [branch] = work_branches(github, repository)
        where = (github.git.file_at(repository, branch, "where.txt") or "").split()
        assert where == [github.clone_url(repository), commits, *sorted([*files, "where.txt"])]
        # The checkout knows its own repository and nothing of the other one.
        directory = rows[repository][1]
        remotes = run_git("remote", "-v", cwd=Path(directory)).split()
        assert {u for u in remotes if "://" in u} == {github.clone_url(repository)}
        refs = run_git("for-each-ref", "--format=%(refname:short)", cwd=Path(directory)).split()
        assert set(refs) == {branch, f"origin/{branch}", "origin/main"}, refs


def test_a_run_that_outlives_its_first_token_still_pushes(
    relay: RelayProcess, github: FakeGitHub
) -> None:
    github.add_issue(LONG, 8, title=LONG_TITLE, body="It takes a while.", user=WRITER)
    github.token_lifetime = SHORT_LIFETIME
    try:
        mention(relay, github, LONG, 8)
        answer = wait_for_answer(relay, github, LONG, 8)
    finally:
        github.token_lifetime = TOKEN_LIFETIME

    [pull] = github.pull_requests(LONG)
    assert answer.startswith(f"@{WRITER} Opened draft PR #{pull['number']}: "), answer
    grants = [g for g in github.token_grants() if g.repositories == [LONG]]
    assert len(grants) > 1
    first = grants[0]
    served = [r for r in github.git_requests(LONG) if r.status == 200]
    assert served[0].token == first.token and not served[0].push
    pushes = [r for r in served if r.push]
    # The push came after the first token had expired, with a fresh one.
    assert pushes and all(r.at > first.expires_at and r.token != first.token for r in pushes)


def first_steps(llm: FakeLLM, text: str) -> int:
    """How many times the agent started a turn on a prompt naming `text`: requests
    with no assistant message after their last user message."""
    count = 0
    for body in llm.agent_requests:
        messages = body.get("messages") or []
        last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
        started = not any(m.get("role") == "assistant" for m in messages[last_user + 1 :])
        count += started and text in last_user_text(body)
    return count


def test_a_relay_killed_during_the_checkout_checks_out_and_runs_once(
    relay: RelayProcess, github: FakeGitHub, fake_llm: FakeLLM
) -> None:
    github.add_issue(CRASH, 9, title=CRASH_TITLE, body="It crashes.", user=WRITER)
    hold = github.hold_fetches(CRASH)
    try:
        mention(relay, github, CRASH, 9)
        wait_until(
            lambda: hold.arrived,
            timeout=120,
            message=lambda: f"the checkout did not fetch:\n{relay.log_tail()}",
        )
        relay.kill()
    finally:
        hold.release()
    relay.start()

    answer = wait_for_answer(relay, github, CRASH, 9)
    wait_until(relay.idle, timeout=60, message="the relay did not settle")

    [pull] = github.pull_requests(CRASH)
    assert answer.startswith(f"@{WRITER} Opened draft PR #{pull['number']}: "), answer
    assert len(bot_comments(github, CRASH, 9)) == 2  # "on it" and the answer
    assert first_steps(fake_llm, CRASH_TITLE) == 1
    # One checkout: the restarted start finished the one the killed relay began.
    conversation, directory = workspace_rows(relay)[CRASH]
    root = Path(relay.env["AGENT_WORKSPACE_ROOT"])
    assert list(root.glob("*/crash")) == [root / conversation / "crash"] == [Path(directory)]
    [branch] = work_branches(github, CRASH)
    [commit] = github.git.commits(CRASH, "main", branch)
    assert "Keep time zones" in commit["message"]
