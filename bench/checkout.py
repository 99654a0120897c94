"""Checkout: from a mention on a GitHub issue to the agent's first LLM request, when the
repository is large (issue 17, target: p50 <= 3 s).

The real `agent-relay serve` (SQLite), the real openhands-agent-server and a scripted
LLM; the fake GitHub of the end-to-end tests serves a generated repository of about
--files files and --history-mb MB of history over git's smart HTTP on loopback. Each
mention is a signed issue_comment delivery on an issue of its own; the time counted is
from just before the delivery's POST to the LLM's first request naming that issue.
Between the two the relay acknowledges the mention, plans the checkout, starts the
agent conversation, makes a partial clone (`--filter=blob:none`) of the default branch
in its working directory through the agent-server's terminal API, and sends the prompt.
Reported with it: the bytes the checkout holds in .git/objects (what was fetched) next
to the repository's own size.

    .venv/bin/python bench/checkout.py [--mentions 7] [--files 5000] [--history-mb 50]
        [--record] [--label TEXT]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

from harness import ROOT, percentile, record

# The end-to-end tests' fakes and process runners are the benchmark's peers too.
sys.path.insert(0, str(ROOT))

from tests.support import github_webhooks as hooks
from tests.support.agent_server import AgentServerProcess, free_port
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import FakeLLM, finish, last_user_text
from tests.support.git_repos import GitRepositories, make_large_repository
from tests.support.relay_process import RelayProcess, relay_environment
from tests.support.waiting import wait_until

APP_ID = 7070
SLUG = "openhands-bench"
INSTALLATION = 17
REPO = "acme/monorepo"
USER = "ada"
SECRET = "bench-checkout-webhook-secret"


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def first_request_at(llm: FakeLLM, marker: str) -> float | None:
    """When the LLM first saw a request naming `marker` (None: not yet)."""
    for arrived, body in llm.timed_agent_requests:
        if marker in last_user_text(body):
            return arrived
    return None


def run(args: argparse.Namespace) -> str:
    work = Path(tempfile.mkdtemp(prefix="bench-checkout-"))
    repositories = GitRepositories(work / "git")
    started = time.perf_counter()
    bare = make_large_repository(
        repositories, REPO, files=args.files, history_bytes=args.history_mb * 1024 * 1024
    )
    built = time.perf_counter() - started
    relay_port = free_port()
    timings: list[float] = []
    fetched: list[int] = []
    with (
        FakeGitHub(git_root=repositories.root) as github,
        FakeLLM(default=finish("Done.")) as llm,
        AgentServerProcess(
            work / "agent-server", webhook_base_url=f"http://127.0.0.1:{relay_port}/agent"
        ) as agent_server,
    ):
        github.add_app(APP_ID, SLUG)
        github.add_installation(INSTALLATION, APP_ID, account="acme", repositories=[REPO])
        github.set_permission(REPO, USER, "write")
        github.adopt_repository(REPO)
        env = relay_environment(
            workdir=work,
            database_url=f"sqlite:///{work / 'relay.db'}",
            port=relay_port,
            agent_server=agent_server,
            fake_llm=llm,
            extra={
                **github.relay_settings(APP_ID, SECRET),
                "PUBLIC_URL": f"http://127.0.0.1:{relay_port}",
            },
        )
        relay = RelayProcess(work, env).start()
        try:
            for index in range(args.mentions):
                marker = f"bench-{uuid.uuid4().hex[:12]}"
                number = 1000 + index
                github.add_issue(REPO, number, title=f"Task {marker}", body="", user=USER)
                comment = github.add_comment(REPO, number, "@openhands please", user=USER)
                payload = hooks.issue_comment(REPO, INSTALLATION, comment, sender=USER)
                sent = time.time()
                hooks.deliver(relay.url, "issue_comment", payload, SECRET)
                wait_until(
                    lambda marker=marker: first_request_at(llm, marker) is not None,
                    timeout=300,
                    message=lambda marker=marker: f"no request for {marker}:\n{relay.log_tail()}",
                )
                arrived = first_request_at(llm, marker)
                assert arrived is not None
                timings.append(arrived - sent)
                checkout = next(Path(env["AGENT_WORKSPACE_ROOT"]).glob("*/monorepo"), None)
                if checkout is not None:
                    fetched.append(directory_bytes(checkout / ".git" / "objects"))
                    # The next mention's checkout is found by name: move this one aside.
                    checkout.rename(checkout.with_name(f"done-{index}"))
        finally:
            relay.stop()
    repository_mb = directory_bytes(bare) / 2**20
    rows = "\n".join(
        f"| {i + 1} | {t:.2f} s | {b / 2**20:.1f} MB |"
        for i, (t, b) in enumerate(zip(timings, fetched, strict=False))
    )
    return (
        f"Repository: {args.files} files at the head, {args.history_mb} MB of history"
        f" ({repository_mb:.1f} MB packed; built in {built:.1f} s).\n\n"
        "| mention | mention -> first LLM request | .git/objects after the checkout |\n"
        "|---|---|---|\n"
        f"{rows}\n\n"
        f"p50 {percentile(timings, 50):.2f} s, max {max(timings):.2f} s over {len(timings)}"
        " mentions (target: p50 <= 3 s)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--mentions", type=int, default=7)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--history-mb", type=int, default=50)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--label", help="added to the recorded heading")
    args = parser.parse_args()
    body = run(args)
    print(body)
    if args.record:
        record("checkout.py", body, label=args.label)


if __name__ == "__main__":
    main()
