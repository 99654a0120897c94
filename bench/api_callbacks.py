"""POST /api/callbacks: callbacks registered per second, and agent-server calls per callback.

Issue 8, target 3: at least 1,000 callbacks/s, with no agent-server call on the hot
path beyond what correctness needs. The real `agent-relay serve` (SQLite) registers
webhook callbacks on fresh conversation ids for --duration seconds over 16 keep-alive
connections; the fake agent-server (bench/fake_peers.py, every conversation
"running") logs each call it gets with its time. A call about a conversation made
while its registration request was in flight and before its callback row was written
(conversation_callbacks.created_at) is on the hot path: the relay asked before it
recorded anything. The rest come after (today: the catch-up job's look at the
conversation, which can start before the 201 reaches the client). The calls are
counted once every job has run.

    .venv/bin/python bench/api_callbacks.py [--duration 10] [--connections 16]
        [--record] [--label TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sqlite3
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
from harness import (
    AGENT_SESSION_KEY,
    API_TOKEN,
    ClosedLoopResult,
    CpuMeter,
    HttpResponse,
    Latency,
    Receiver,
    closed_loop,
    markdown_table,
    ms,
    rate,
    record,
    relay_env,
    running,
    start_fake_peers,
    start_relay,
    wait_idle,
)
from payloads import (
    conversation_id,
    register_callback_request,
    run_id,
)


@dataclass
class Outcome:
    load: ClosedLoopResult
    registered: int  # 201 answers, warm-up included
    hot: Counter[str]  # agent-server calls while the registration was in flight, by route
    later: Counter[str]  # agent-server calls after the 201, by route
    drained: bool


def callbacks_created(database: Path) -> dict[str, float]:
    """When each conversation's callback row was written (epoch seconds)."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return {
            row[0]: float(row[1])
            for row in connection.execute(
                "SELECT conversation_id, MIN(created_at) FROM conversation_callbacks"
                " GROUP BY conversation_id"
            )
        }
    finally:
        connection.close()


async def main(args: argparse.Namespace) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="bench-api-callbacks-") as tmp:
        workdir = Path(tmp)
        peers = await start_fake_peers(workdir)
        receiver = await Receiver().start()
        database = workdir / "relay.db"
        env = relay_env(
            f"sqlite:///{database}",
            AGENT_SERVER_URL=peers.url,
            AGENT_SERVER_API_KEY=AGENT_SESSION_KEY,
            API_TOKEN=API_TOKEN,
        )
        relay = await start_relay(workdir, env)
        async with running(peers.service, relay.service):
            run = run_id()
            in_flight: dict[str, tuple[float, float]] = {}

            def keep(index: int, sent: float, answered: float, response: HttpResponse) -> None:
                if response.status == 201:
                    in_flight[conversation_id(run, index)] = (sent, answered)

            load = await closed_loop(
                relay.port,
                lambda index: register_callback_request(conversation_id(run, index), receiver.url),
                connections=args.connections,
                duration=args.duration,
                warmup=args.warmup,
                meter=CpuMeter({"relay": relay.service, "agent-server": peers.service}),
                on_response=keep,
            )
            try:
                await wait_idle(database, within=args.drain_within)
                drained = True
            except TimeoutError:
                drained = False
            async with httpx.AsyncClient(timeout=30) as client:
                calls = (await client.get(f"{peers.url}/_log")).json()["calls"]
            receiver.close()
            recorded = callbacks_created(database)
    hot: Counter[str] = Counter()
    later: Counter[str] = Counter()
    wall = time.time() - time.monotonic()  # the fake logs wall-clock times
    for route, conversation, at in calls:
        window = in_flight.get(conversation)
        if window is None:
            continue  # a registration that failed
        sent, answered = window[0] + wall, window[1] + wall
        before_row = at <= recorded.get(conversation, math.inf)
        (hot if sent <= at <= answered and before_row else later)[route] += 1
    return Outcome(load, len(in_flight), hot, later, drained)


def describe_calls(calls: Counter[str], registered: int) -> str:
    if not calls:
        return "0"
    total = sum(calls.values()) / registered
    parts = ", ".join(f"{route} {count / registered:.2f}" for route, count in calls.items())
    return f"{total:.2f} ({parts})"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before that")
    parser.add_argument(
        "--drain-within", type=float, default=120.0, help="seconds to wait for the jobs"
    )
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--label", help="added to the recorded heading")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    outcome = asyncio.run(main(arguments))
    load = outcome.load
    latency = Latency.of(load.latencies)
    cpu = ", ".join(f"{who} {value:.0f}%" for who, value in load.cpu.items())
    drained = "" if outcome.drained else " (jobs not drained: counts incomplete)"
    table = markdown_table(
        [
            "callbacks/s",
            "p50",
            "p99",
            "errors",
            "agent calls per callback: hot path",
            "after the row was written" + drained,
            "CPU (% of a core)",
        ],
        [
            [
                rate(load.per_second),
                ms(latency.p50),
                ms(latency.p99),
                str(load.errors),
                describe_calls(outcome.hot, outcome.registered),
                describe_calls(outcome.later, outcome.registered),
                cpu,
            ]
        ],
    )
    print(table)
    if load.first_error:
        print(f"first error: {load.first_error}")
    if arguments.record:
        record(
            "api_callbacks.py",
            f"POST /api/callbacks (webhook callback, fresh conversation id), SQLite,"
            f" {arguments.connections} keep-alive connections, {arguments.warmup:.0f} s warm-up"
            f" then {arguments.duration:.0f} s measured; {outcome.registered} callbacks"
            " registered in all. Target: ≥ 1,000 callbacks/s.\n\n" + table,
            label=arguments.label,
        )
