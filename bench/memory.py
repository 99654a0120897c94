"""Memory: RSS of an idle `agent-relay serve`, and after many conversations.

Issue 8, target 5: idle `serve` RSS at most 80 MB with every platform configured, and
at most 10 MB more after 10,000 conversations have gone through.

The real `agent-relay serve` (SQLite; agent webhooks, /api, Slack, GitHub and GitLab
configured; SUMMARY_MODE=final_response) with the fake agent-server and a webhook
receiver on loopback. Each conversation is started through POST /api/conversations
with a webhook callback, then finished by the agent-server's finish batch on
/agent/events/{id}, and its reply must reach the receiver. RSS (VmRSS of the serve
process) is read when idle after start, after the first --warm conversations (caches
filled, pools opened) and after all of them, each time once every job has run.

    .venv/bin/python bench/memory.py [--conversations 10000] [--warm 200]
        [--record] [--label TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness import (
    HttpResponse,
    Receiver,
    Server,
    all_platforms,
    closed_loop,
    markdown_table,
    record,
    relay_env,
    running,
    start_fake_peers,
    start_relay,
    wait_for,
    wait_idle,
)
from payloads import (
    agent_events_request,
    start_conversation_request,
)

MIB = 2**20


@dataclass
class Outcome:
    idle: int
    warm: int
    after: int
    peak: int
    conversations: int
    seconds: float
    problems: list[str]


async def converse(relay: Server, receiver: Receiver, count: int, connections: int) -> list[str]:
    """Start and finish `count` conversations; their ids once every reply has arrived."""
    ids: list[str] = []
    failures: list[str] = []

    def keep(index: int, sent: float, answered: float, response: HttpResponse) -> None:
        if response.status == 201:
            ids.append(json.loads(response.body)["conversation_id"])
        else:
            failures.append(f"{response.status}: {response.body[:200]!r}")

    def check(index: int, sent: float, answered: float, response: HttpResponse) -> None:
        if not response.ok:
            failures.append(f"{response.status}: {response.body[:200]!r}")

    expected = len(receiver.replies) + count
    await closed_loop(
        relay.port,
        lambda index: start_conversation_request(receiver.url, index),
        connections=connections,
        total=count,
        on_response=keep,
    )
    await closed_loop(
        relay.port,
        lambda index: agent_events_request(ids[index]),
        connections=connections,
        total=len(ids),
        on_response=check,
    )
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, first: {failures[0]}")
    await wait_for(
        lambda: len(receiver.replies) >= expected,
        within=max(120.0, count / 10),
        what=lambda: f"{expected - len(receiver.replies)} replies missing",
        interval=0.1,
    )
    return ids


async def main(args: argparse.Namespace) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        workdir = Path(tmp)
        peers = await start_fake_peers(workdir)
        receiver = await Receiver().start()
        database = workdir / "relay.db"
        env = relay_env(
            f"sqlite:///{database}",
            SUMMARY_MODE="final_response",
            **all_platforms(agent_url=peers.url, peers_url=peers.url, refused_url=None),
        )
        relay = await start_relay(workdir, env)
        async with running(peers.service, relay.service):
            await wait_idle(database, within=60)
            idle = relay.service.rss_bytes()
            started = time.monotonic()
            conversations = await converse(relay, receiver, args.warm, args.connections)
            await wait_idle(database, within=60)
            warm = relay.service.rss_bytes()
            conversations += await converse(
                relay, receiver, args.conversations - args.warm, args.connections
            )
            await wait_idle(database, within=300)
            seconds = time.monotonic() - started
            after = relay.service.rss_bytes()
            peak = relay.service.peak_rss_bytes()
            receiver.close()
            return Outcome(
                idle,
                warm,
                after,
                peak,
                len(conversations),
                seconds,
                receiver.problems(conversations),
            )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--warm", type=int, default=200, help="conversations before 'warm'")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--label", help="added to the recorded heading")
    args = parser.parse_args()
    if not 0 < args.warm < args.conversations:
        parser.error("--warm must be between 0 and --conversations")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    outcome = asyncio.run(main(arguments))
    per_thousand = (
        (outcome.after - outcome.warm) / MIB / (outcome.conversations - arguments.warm) * 1000
    )
    table = markdown_table(
        [
            "idle RSS",
            f"after {arguments.warm:,} conversations",
            f"after {outcome.conversations:,}",
            "growth after idle / after warm",
            "per 1,000 after warm",
            "peak (VmHWM)",
            "time taken",
        ],
        [
            [
                f"{outcome.idle / MIB:.1f} MiB",
                f"{outcome.warm / MIB:.1f} MiB",
                f"{outcome.after / MIB:.1f} MiB",
                f"+{(outcome.after - outcome.idle) / MIB:.1f} / "
                f"+{(outcome.after - outcome.warm) / MIB:.1f} MiB",
                f"+{per_thousand:.2f} MiB",
                f"{outcome.peak / MIB:.1f} MiB",
                f"{outcome.seconds:.0f} s",
            ]
        ],
    )
    print(table)
    verdict = (
        "replies: all once, completed, signed"
        if not outcome.problems
        else "; ".join(outcome.problems)
    )
    print(verdict)
    if arguments.record:
        record(
            "memory.py",
            "RSS of `agent-relay serve` (SQLite, agent webhooks, /api, Slack, GitHub, GitLab"
            " configured, SUMMARY_MODE=final_response); conversations started through POST"
            " /api/conversations and finished through /agent/events, each reply received."
            " Targets: idle ≤ 80 MB, ≤ +10 MB after 10,000 conversations.\n\n"
            + table
            + f"\n\n{verdict}.",
            label=arguments.label,
        )
    if outcome.problems:
        raise SystemExit(1)
