"""Ingest: how fast the real `agent-relay serve` acknowledges webhooks, next to a bare app.

Issue 8, target 1: a signed webhook is verified, deduplicated, durably enqueued and
answered 2xx, on SQLite, with throughput at least 50% of a bare Starlette app's and
p99 at most 10 ms at a fixed 1,000 req/s. For each route:

- POST /agent/events/{id}: the agent-server's finish batch (4 events, ~2.3 KB; one
  state-change job), fresh event and conversation ids, X-Session-API-Key;
- POST /slack/events: a signed app_mention event_callback, fresh event_id and thread;
- POST /github/events: a signed issue_comment.created with a mention (octokit's
  example, ~16 KB), fresh X-GitHub-Delivery;
- POST /gitlab/events: a Note Hook with a mention, X-Gitlab-Token, fresh
  X-Gitlab-Event-UUID;

it measures (a) closed-loop throughput, 16 keep-alive connections for --duration
seconds after a warm-up, and (b) open-loop latency at --rate req/s for
--open-duration seconds, counted from each request's due time. The bare app
(bench/bare_app.py) gets the same requests, measured the same way, in the same run,
and so does the floor: the bare app writing, per request, the delivery-ledger rows
and the job that any deduplicated, durably queued webhook must commit before it
answers, on SQLite in the relay's WAL settings and schema, with nothing else. No
design that commits each webhook before its 2xx can beat the floor on this stack;
its ratio to bare is the ceiling of the relay's.
Each relay phase runs on a fresh `agent-relay serve` and SQLite file (all platforms
configured, default WORKER_CONCURRENCY). The agent-server is a closed port (a
state-change job with no callback does not call it); Slack's, GitHub's and GitLab's
APIs are bench/fake_peers.py's, which refuse, so each job their webhooks queue fails
for good at its first attempt, cheaply (--platform-apis closed points GitHub and
GitLab at a closed port instead: their jobs are then retried, and every GitHub
attempt signs a new app JWT, which costs the relay more CPU than the ingest itself).
Afterwards the delivery ledger must hold every
request answered 2xx: each one was a fresh delivery.

    .venv/bin/python bench/ingest.py [--routes agent,slack,github,gitlab]
        [--duration 10] [--rate 1000] [--open-duration 10] [--record] [--label TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    HOST,
    ClosedLoopResult,
    CpuMeter,
    HttpResponse,
    Latency,
    OpenLoopResult,
    Server,
    all_platforms,
    closed_loop,
    closed_port,
    markdown_table,
    ms,
    open_loop,
    rate,
    record,
    relay_env,
    running,
    start_bare_app,
    start_fake_peers,
    start_relay,
    uniform_schedule,
)
from payloads import (
    agent_events_request,
    conversation_id,
    github_request,
    gitlab_request,
    run_id,
    slack_request,
)


@dataclass(frozen=True)
class Route:
    name: str
    path: str
    source: str  # its source in the delivery ledger
    deliveries_per_request: int
    build: Callable[[str, int], bytes]  # (run id, index) -> request bytes


ROUTES = {
    "agent": Route(
        "agent",
        "/agent/events/{id}",
        "agent",
        4,
        lambda run, index: agent_events_request(conversation_id(run, index)),
    ),
    "slack": Route("slack", "/slack/events", "slack", 1, lambda run, i: slack_request(i, run)),
    "github": Route("github", "/github/events", "github", 1, lambda run, i: github_request(i, run)),
    "gitlab": Route("gitlab", "/gitlab/events", "gitlab", 1, lambda run, i: gitlab_request(i, run)),
}


@dataclass
class Phase:
    """One target (bare app or relay) under both kinds of load."""

    closed: ClosedLoopResult | None = None
    open: OpenLoopResult | None = None
    # Requests answered 2xx (warm-up and late answers included), and for the relay the
    # deliveries its ledger holds afterwards: one per request when each was fresh.
    answered_ok: dict[str, int] = field(default_factory=lambda: {"closed": 0, "open": 0})
    recorded: dict[str, int] = field(default_factory=dict)


@dataclass
class RouteResult:
    route: Route
    bare: Phase = field(default_factory=Phase)
    floor: Phase = field(default_factory=Phase)
    relay: Phase = field(default_factory=Phase)

    def phases(self) -> list[tuple[str, Phase]]:
        return [("bare", self.bare), ("floor", self.floor), ("relay", self.relay)]


def ledger_rows(database: Path, source: str) -> int:
    connection = sqlite3.connect(database)
    try:
        row = connection.execute(
            "SELECT COUNT(*) FROM inbound_deliveries WHERE source = ?", (source,)
        ).fetchone()
        return int(row[0])
    finally:
        connection.close()


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.relays = 0

    def counting(
        self, phase: Phase, load: str
    ) -> Callable[[int, float, float, HttpResponse], None]:
        def count(index: int, sent: float, answered: float, response: HttpResponse) -> None:
            if response.ok:
                phase.answered_ok[load] += 1

        return count

    async def closed(self, target: Server, route: Route, phase: Phase) -> None:
        run = run_id()
        phase.closed = await closed_loop(
            target.port,
            lambda index: route.build(run, index),
            connections=self.args.connections,
            duration=self.args.duration,
            warmup=self.args.warmup,
            meter=CpuMeter({"server": target.service}),
            on_response=self.counting(phase, "closed"),
        )

    async def open(self, target: Server, route: Route, phase: Phase) -> None:
        run = run_id()
        count = int(self.args.rate * self.args.open_duration)
        schedule = uniform_schedule(
            (route.build(run, index) for index in range(count)), self.args.rate
        )
        phase.open = await open_loop(
            target.port,
            schedule,
            connections=self.args.open_connections,
            give_up_after=self.args.timeout,
            on_response=self.counting(phase, "open"),
        )

    async def on_fresh_relay(
        self, env: dict[str, str], route: Route, phase: Phase, load: str
    ) -> None:
        self.relays += 1
        workdir = self.workdir / f"relay-{self.relays}-{route.name}-{load}"
        workdir.mkdir()
        database = workdir / "relay.db"
        relay = await start_relay(workdir, {**env, "DATABASE_URL": f"sqlite:///{database}"})
        async with running(relay.service):
            if load == "closed":
                await self.closed(relay, route, phase)
            else:
                await self.open(relay, route, phase)
        phase.recorded[load] = ledger_rows(database, route.source) // route.deliveries_per_request


def print_route(result: RouteResult, args: argparse.Namespace) -> None:
    print(f"\n{result.route.path}")
    for name, phase in result.phases():
        closed, opened = phase.closed, phase.open
        assert closed is not None and opened is not None
        latency = opened.latency
        cpu = ", ".join(f"{who} {value:.0f}%" for who, value in closed.cpu.items())
        closed_p50 = ms(Latency.of(closed.latencies).p50)
        print(
            f"  {name:<5}  closed: {closed.per_second:8.1f} req/s  p50 {closed_p50:>9}"
            f"  errors {closed.errors}  (cpu: {cpu})"
        )
        print(
            f"         open {args.rate:.0f}/s: p50 {ms(latency.p50):>9}  p99 {ms(latency.p99):>9}"
            f"  max {ms(latency.max):>9}  errors {opened.errors}  timeouts {opened.timeouts}"
            f" of {opened.scheduled}"
        )
        for error in (closed.first_error, opened.first_error):
            if error:
                print(f"         first error: {error}")
        for load, recorded in phase.recorded.items():
            answered = phase.answered_ok[load]
            verdict = "ok" if recorded >= answered else "NOT ALL FRESH"
            print(
                f"         {load}: 2xx answers {answered}, recorded as fresh {recorded} ({verdict})"
            )


def ratio(relay: float, bare: float) -> str:
    return f"{relay / bare:.3f}" if bare else "-"


def results_table(results: list[RouteResult], args: argparse.Namespace) -> str:
    header = [
        "route",
        "app",
        f"req/s ({args.connections} conn.)",
        "ratio to bare",
        "ratio to floor",
        "closed p50",
        f"p50 @ {args.rate:.0f}/s",
        "p99",
        "max",
        "errors / timeouts",
        "CPU server / generator / others",
    ]
    rows = []
    for result in results:
        bare_rate = result.bare.closed.per_second if result.bare.closed else math.nan
        floor_rate = result.floor.closed.per_second if result.floor.closed else math.nan
        for name, phase in result.phases():
            assert phase.closed is not None and phase.open is not None
            latency = phase.open.latency
            errors = phase.closed.errors + phase.open.errors
            rows.append(
                [
                    result.route.path if name == "bare" else "",
                    name,
                    rate(phase.closed.per_second),
                    "1" if name == "bare" else ratio(phase.closed.per_second, bare_rate),
                    ratio(phase.closed.per_second, floor_rate) if name == "relay" else "",
                    ms(Latency.of(phase.closed.latencies).p50),
                    *latency.row(),
                    f"{errors} / {phase.open.timeouts}",
                    " / ".join(
                        f"{phase.closed.cpu.get(who, 0):.0f}%"
                        for who in ("server", "generator", "others")
                    ),
                ]
            )
    return markdown_table(header, rows)


async def main(args: argparse.Namespace) -> list[RouteResult]:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        workdir = Path(tmp)
        bench = Bench(args, workdir)
        peers = await start_fake_peers(workdir)
        bare = await start_bare_app(workdir)
        floor = await start_bare_app(workdir, database=workdir / "floor.db")
        refused = f"http://{HOST}:{closed_port()}"
        env = relay_env(
            "sqlite:///unused",
            **all_platforms(
                agent_url=refused,
                peers_url=peers.url,
                refused_url=refused if args.platform_apis == "closed" else None,
            ),
        )
        results = []
        async with running(peers.service, bare.service, floor.service):
            for name in args.routes:
                route = ROUTES[name]
                result = RouteResult(route)
                print(f"{route.path}: bare closed loop", flush=True)
                await bench.closed(bare, route, result.bare)
                print(f"{route.path}: floor closed loop", flush=True)
                await bench.closed(floor, route, result.floor)
                print(f"{route.path}: relay closed loop", flush=True)
                await bench.on_fresh_relay(env, route, result.relay, "closed")
                print(f"{route.path}: bare open loop", flush=True)
                await bench.open(bare, route, result.bare)
                print(f"{route.path}: floor open loop", flush=True)
                await bench.open(floor, route, result.floor)
                print(f"{route.path}: relay open loop", flush=True)
                await bench.on_fresh_relay(env, route, result.relay, "open")
                results.append(result)
                print_route(result, args)
        return results


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--routes",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=list(ROUTES),
        help="comma-separated, of: " + ", ".join(ROUTES),
    )
    parser.add_argument("--connections", type=int, default=16, help="closed loop")
    parser.add_argument("--duration", type=float, default=10.0, help="closed loop, seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="closed loop, seconds")
    parser.add_argument("--rate", type=float, default=1000.0, help="open loop, req/s")
    parser.add_argument("--open-duration", type=float, default=10.0, help="open loop, seconds")
    parser.add_argument("--open-connections", type=int, default=64, help="open loop")
    parser.add_argument(
        "--timeout", type=float, default=2.0, help="open loop: seconds after its due time"
    )
    parser.add_argument(
        "--platform-apis",
        choices=["refusing", "closed"],
        default="refusing",
        help="GitHub's and GitLab's APIs: the fake peers' refusing ones (each job fails for"
        " good at once) or a closed port (each job fails and is retried)",
    )
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--label", help="added to the recorded heading")
    args = parser.parse_args()
    unknown = set(args.routes) - set(ROUTES)
    if unknown:
        parser.error(f"unknown routes: {', '.join(sorted(unknown))}")
    return args


def describe(args: argparse.Namespace) -> str:
    return (
        f"Closed loop: {args.connections} keep-alive connections, {args.warmup:.0f} s warm-up then"
        f" {args.duration:.0f} s measured. Open loop: {args.rate:.0f} req/s for"
        f" {args.open_duration:.0f} s on up to {args.open_connections} connections, latency from"
        f" each request's due time, no answer within {args.timeout:.0f} s = timeout. A fresh"
        " `agent-relay serve` (SQLite, all platforms, default WORKER_CONCURRENCY) per relay"
        f" phase, platform APIs {args.platform_apis} (see the script); the bare app"
        " (bench/bare_app.py) gets the same requests, and so does the floor: the bare app"
        " committing, per request, the ledger rows and the job a durable webhook must write"
        " (one SQLite file for all routes, the relay's schema and WAL settings). The"
        " generator is one Python asyncio process over keep-alive connections; request"
        " bytes are pre-built for the open loop and filled from pre-serialised templates"
        " (6-25 µs) in the closed loop. CPU is % of one core during the closed loop;"
        " others = the rest of the machine."
    )


if __name__ == "__main__":
    arguments = parse_args()
    outcome = asyncio.run(main(arguments))
    print()
    table = results_table(outcome, arguments)
    print(table)
    if arguments.record:
        record("ingest.py", describe(arguments) + "\n\n" + table, label=arguments.label)
