"""Intake CPU: the relay's CPU time per webhook, in-process, without HTTP or the worker.

ingest.py measures the intake through uvicorn and a load generator, and on a shared
machine its figures move by 10-15% from run to run. This script measures only the
app's own work: `relay.app.create_app(settings, run_worker=False)` on a fresh SQLite
file per route (every platform configured as ingest.py configures it, Slack's Web API
served by bench/fake_peers.py for Bolt's one auth.test), its lifespan run through the
ASGI lifespan protocol, then ingest.py's own requests (the same builders, fresh ids
each request) passed to the ASGI app one after another, each awaited to the end of
its response. CPU is `time.process_time()`, all threads of this process (the store's
SQLite thread included), per batch of --batch-size requests after --warmup requests
that are not counted. Each route reports its best and median batch in µs per webhook.

Requests are handed to the app as hand-built ASGI scopes, parsed from ingest.py's
request bytes before each batch's clock starts, with the smallest receive/send that
uvicorn's contract allows (the body in one message; `http.disconnect` only once the
response is complete). httpx.ASGITransport would do as well, but it builds and reads
an httpx Request and Response around every call, in this process: CPU the same on
both sides of a comparison that only dilutes the difference. What the driver itself
costs per request is measured too (the same scopes to an app that answers 200 at
once) and printed with the results.

Logging is configured as `agent-relay serve` configures it (relay.logs, the
settings' level and format), writing to a file instead of stderr, and the heap built
at start-up is frozen out of the collector as serve freezes it.

Of the product the script uses only create_app, Settings and relay.logs'
configure_logging, which the trees before the platform layout have too, and it takes
its helpers from its own directory (bench/), so it also measures an older tree put
first on PYTHONPATH. Run it from outside the worktree (e.g. from /tmp), so that the
worktree's packages do not come first; it stops if a product module was loaded from
another tree than relay's (the editable install finds in the worktree what an older
tree lacks).

    cd /tmp && PYTHONPATH=/tmp/bench-before /path/to/.venv/bin/python \\
        /path/to/bench/intake_cpu.py [--routes agent,slack,github,gitlab] [--batches 10]
        [--batch-size 500] [--warmup 200] [--json runs.jsonl] [--profile DIR]
        [--record] [--label TEXT]

`--compare BEFORE.jsonl AFTER.jsonl` reads runs saved with --json (run i of one file
paired with run i of the other) and prints, per route, the median and range over runs
of each run's best and median batch, the after/before ratio, and in how many pairs
after was higher.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from harness import (
    HOST,
    CpuMeter,
    all_platforms,
    closed_port,
    code_version,
    markdown_table,
    record,
    relay_env,
    running,
    start_fake_peers,
)
from ingest import ROUTES, Route, ledger_rows
from payloads import run_id

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Message, Receive, Send], Coroutine[Any, Any, None]]


# -- ASGI by hand ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One request as uvicorn would hand it to the app: its scope and its body."""

    scope: dict[str, Any]
    body: bytes


def parse_request(data: bytes, state: dict[str, Any]) -> Call:
    """An ASGI http scope from the HTTP/1.1 bytes that ingest.py would send."""
    head, _, body = data.partition(b"\r\n\r\n")
    request_line, *header_lines = head.split(b"\r\n")
    method, target, _ = request_line.split(b" ", 2)
    path, _, query = target.partition(b"?")
    headers = []
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": (HOST, 8000),
        "client": (HOST, 50000),
        "scheme": "http",
        "method": method.decode(),
        "root_path": "",
        "path": path.decode(),
        "raw_path": path,
        "query_string": query,
        "headers": headers,
        # Uvicorn gives each request a shallow copy of what the lifespan left.
        "state": dict(state),
    }
    return Call(scope, body)


async def call(app: Asgi, request: Call) -> int:
    """Run one request through the app to the end of its response; its status."""
    done = asyncio.Event()
    status = 0
    body_sent = False

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await done.wait()  # as uvicorn: a disconnect only once the response is over
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            done.set()

    await app(request.scope, receive, send)
    done.set()
    return status


@contextlib.asynccontextmanager
async def lifespan(app: Asgi) -> Any:
    """The ASGI lifespan protocol, as a server runs it; yields the lifespan state."""
    state: dict[str, Any] = {}
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"}}
    task = asyncio.create_task(app({**scope, "state": state}, inbox.get, outbox.put))

    async def step(event: str) -> None:
        await inbox.put({"type": f"lifespan.{event}"})
        answer = await outbox.get()
        if answer["type"] != f"lifespan.{event}.complete":
            raise RuntimeError(f"lifespan {event}: {answer}")

    await step("startup")
    try:
        yield state
    finally:
        await step("shutdown")
        await task


async def answer_at_once(scope: Message, receive: Receive, send: Send) -> None:
    """The driver's own cost: reads the body and answers 200, nothing else."""
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


# -- the measurement ---------------------------------------------------------------------------


@dataclass
class RouteRun:
    route: str
    batches_us: list[float] = field(default_factory=list)  # CPU µs per webhook, each batch
    cpu_to_wall: list[float] = field(default_factory=list)  # this process's CPU ÷ wall time
    # The part of each batch's CPU spent in the kernel (system time), µs per webhook.
    system_us: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)  # the rest of the machine, % of a core
    driver_us: float = 0.0  # the driver alone, µs per request
    errors: int = 0
    first_error: str | None = None
    fresh_ok: bool = True  # the ledger holds a delivery for every request answered

    @property
    def best(self) -> float:
        return min(self.batches_us)

    @property
    def median(self) -> float:
        return statistics.median(self.batches_us)


def settings_for(env: dict[str, str]) -> Any:
    """Settings as `agent-relay serve` would read them from `env` (no .env file)."""
    from relay.settings import Settings

    for name in list(os.environ):
        if name not in env:
            del os.environ[name]
    os.environ.update(env)
    # pydantic-settings reads `_env_file` at run time; its signature does not show it.
    return Settings(_env_file=None)  # type: ignore[call-arg]


def configure_logging(settings: Any, log_path: Path) -> TextIO:
    """serve's logging (relay.logs), into a file instead of this terminal; the file."""
    from relay.logs import configure_logging as configure

    configure(settings.log_level, settings.log_format)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    log_file = log_path.open("a", encoding="utf-8")
    handler.setStream(log_file)
    return log_file


def build_calls(
    route: Route, run: str, start: int, count: int, state: dict[str, Any]
) -> list[Call]:
    return [parse_request(route.build(run, index), state) for index in range(start, start + count)]


async def run_calls(app: Asgi, calls: Sequence[Call], result: RouteRun) -> None:
    for request in calls:
        status = await call(app, request)
        if not 200 <= status < 300:
            result.errors += 1
            if result.first_error is None:
                result.first_error = f"{status} for {request.scope['path']}"


async def driver_cost(calls: Sequence[Call]) -> float:
    """µs of CPU per request that the driver spends around the app."""
    for request in calls:  # warm
        await call(answer_at_once, request)
    started = time.process_time()
    for request in calls:
        await call(answer_at_once, request)
    return (time.process_time() - started) / len(calls) * 1e6


def system_seconds() -> float:
    """CPU time this process has spent in the kernel so far (all threads)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


async def measure_batch(
    app: Asgi, calls: Sequence[Call], result: RouteRun, profiler: cProfile.Profile | None
) -> None:
    meter = CpuMeter({})
    meter.start()
    wall, cpu, system = time.monotonic(), time.process_time(), system_seconds()
    if profiler is not None:
        profiler.enable()
    await run_calls(app, calls, result)
    if profiler is not None:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    system = system_seconds() - system
    used = meter.stop()
    result.batches_us.append(cpu / len(calls) * 1e6)
    result.cpu_to_wall.append(cpu / wall)
    result.system_us.append(system / len(calls) * 1e6)
    result.others.append(used["others"])


async def measure_route(
    route: Route, env: dict[str, str], workdir: Path, args: argparse.Namespace
) -> RouteRun:
    from relay.app import create_app

    database = workdir / f"{route.name}.db"
    settings = settings_for({**env, "DATABASE_URL": f"sqlite:///{database}"})
    log_file = configure_logging(settings, workdir / f"{route.name}.log")
    app = create_app(settings, run_worker=False)
    gc.collect()
    gc.freeze()  # as serve does once the app is built (relay/cli.py)
    result = RouteRun(route.name)
    run = run_id()
    sent = 0
    profiler = cProfile.Profile() if args.profile else None
    async with lifespan(app) as state:
        warm = build_calls(route, run, sent, args.warmup, state)
        sent += len(warm)
        await run_calls(app, warm, result)
        for _ in range(args.batches):
            calls = build_calls(route, run, sent, args.batch_size, state)
            sent += len(calls)
            await measure_batch(app, calls, result, profiler)
        result.driver_us = await driver_cost(build_calls(route, run, sent, 200, state))
    if profiler is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(args.profile / f"{route.name}.prof")
    recorded = ledger_rows(database, route.source) // route.deliveries_per_request
    result.fresh_ok = recorded == sent - result.errors
    gc.unfreeze()
    log_file.close()
    return result


async def main(args: argparse.Namespace) -> list[RouteRun]:
    original_env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="bench-intake-cpu-") as tmp:
        workdir = Path(tmp)
        peers = await start_fake_peers(workdir)
        refused = f"http://{HOST}:{closed_port()}"
        env = relay_env(
            "sqlite:///unused",
            **all_platforms(agent_url=refused, peers_url=peers.url, refused_url=None),
        )
        results = []
        try:
            async with running(peers.service):
                for name in args.routes:
                    print(f"{ROUTES[name].path}: warm-up, then {args.batches} batches", flush=True)
                    result = await measure_route(ROUTES[name], env, workdir, args)
                    print_route(result)
                    results.append(result)
            foreign = foreign_modules()
            if foreign:
                raise SystemExit(f"product modules from another tree: {', '.join(foreign)}")
        finally:
            os.environ.clear()
            os.environ.update(original_env)
    return results


PRODUCT_PACKAGES = ("relay", "bots", "processors", "agent", "db")


def foreign_modules() -> list[str]:
    """Product modules loaded from another tree than `relay`'s. An editable install
    finds, after PYTHONPATH, what an older tree lacks in the worktree: code of one
    tree measured with another's would show up here."""
    import relay

    tree = Path(relay.__file__).resolve().parents[1]
    files = {name: getattr(module, "__file__", None) for name, module in sys.modules.items()}
    return sorted(
        name
        for name, file in files.items()
        if name.split(".")[0] in PRODUCT_PACKAGES
        and file is not None
        and not Path(file).resolve().is_relative_to(tree)
    )


# -- output ------------------------------------------------------------------------------------


def print_route(result: RouteRun) -> None:
    batches = " ".join(f"{value:.0f}" for value in result.batches_us)
    others = " ".join(f"{value:.0f}" for value in result.others)
    ratio = statistics.median(result.cpu_to_wall)
    print(
        f"  best {result.best:.0f} µs, median {result.median:.0f} µs per webhook"
        f" (batches: {batches}); of which system {statistics.median(result.system_us):.0f} µs;"
        f" CPU ÷ wall {ratio:.2f}; others' CPU {others} %;"
        f" driver alone {result.driver_us:.1f} µs; errors {result.errors}"
        f"{'' if result.fresh_ok else '; NOT ALL RECORDED AS FRESH'}"
    )
    if result.first_error:
        print(f"  first error: {result.first_error}")


def results_table(results: Sequence[RouteRun]) -> str:
    rows = [
        [
            ROUTES[result.route].path,
            f"{result.best:.0f} µs",
            f"{result.median:.0f} µs",
            f"{statistics.median(result.system_us):.0f} µs",
            f"{statistics.median(result.cpu_to_wall):.2f}",
            f"{min(result.others):.0f}-{max(result.others):.0f}%",
            f"{result.driver_us:.1f} µs",
            f"{result.errors}",
        ]
        for result in results
    ]
    header = [
        "route",
        "best batch",
        "median batch",
        "system (median)",
        "CPU ÷ wall",
        "others (CPU)",
        "driver alone",
        "errors",
    ]
    return markdown_table(header, rows)


def describe(args: argparse.Namespace) -> str:
    return (
        f"CPU time of this process (all threads) per webhook, in-process: `create_app(settings,"
        f" run_worker=False)` on a fresh SQLite file per route, all platforms configured as"
        f" ingest.py configures them, ingest.py's requests (fresh ids) passed to the ASGI app"
        f" as hand-built scopes, one at a time; {args.warmup} requests to warm up, then"
        f" {args.batches} batches of {args.batch_size}. Best and median batch in µs per"
        f" webhook; system = the kernel's part of it (median batch); CPU ÷ wall of the"
        f" process during the batches; others = the rest of the machine during the batches,"
        f" % of one core; driver alone = the same scopes to an app that answers at once."
    )


def save_json(path: Path, results: Sequence[RouteRun], args: argparse.Namespace) -> None:
    line = {
        "code": code_version(),
        "label": args.label,
        "load_at_end": os.getloadavg()[0],
        "batch_size": args.batch_size,
        "routes": {
            result.route: {
                "batches_us": result.batches_us,
                "cpu_to_wall": result.cpu_to_wall,
                "system_us": result.system_us,
                "others": result.others,
                "driver_us": result.driver_us,
                "errors": result.errors,
                "fresh_ok": result.fresh_ok,
            }
            for result in results
        },
    }
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def compare(before_path: Path, after_path: Path) -> str:
    """Per route: each run's best and median batch, summarised over the paired runs."""
    before = [json.loads(line) for line in before_path.read_text().splitlines() if line.strip()]
    after = [json.loads(line) for line in after_path.read_text().splitlines() if line.strip()]
    pairs = list(zip(before, after, strict=False))
    rows = []
    for name in ROUTES:
        sides = [[run["routes"].get(name) for run in side] for side in zip(*pairs, strict=True)]
        if not all(sides[0]) or not all(sides[1]):
            continue
        for figure, pick in (("best", min), ("median", statistics.median)):
            values = [[pick(route["batches_us"]) for route in side] for side in sides]
            medians = [statistics.median(side) for side in values]
            higher = sum(1 for old, new in zip(*values, strict=True) if new > old)
            ratios = sorted(new / old for old, new in zip(*values, strict=True))
            rows.append(
                [
                    ROUTES[name].path if figure == "best" else "",
                    f"{figure} batch",
                    *(
                        f"{median:.0f} ({min(side):.0f}-{max(side):.0f})"
                        for median, side in zip(medians, values, strict=True)
                    ),
                    f"{medians[1] / medians[0]:.3f} ({medians[1] - medians[0]:+.0f} µs)",
                    f"{statistics.median(ratios):.3f} ({ratios[0]:.3f}-{ratios[-1]:.3f})",
                    f"{higher} of {len(pairs)}",
                ]
            )
    header = [
        "route",
        "µs per webhook, each run's",
        f"before: median (min-max), {len(pairs)} runs",
        "after",
        "after ÷ before (medians)",
        "after ÷ before, pair by pair: median (min-max)",
        "after higher in",
    ]
    return markdown_table(header, rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--routes",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=list(ROUTES),
        help="comma-separated, of: " + ", ".join(ROUTES),
    )
    parser.add_argument("--batches", type=int, default=10, help="measured batches per route")
    parser.add_argument("--batch-size", type=int, default=500, help="requests per batch")
    parser.add_argument("--warmup", type=int, default=200, help="requests before the batches")
    parser.add_argument("--json", type=Path, help="append this run's figures to a JSON-lines file")
    parser.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("BEFORE", "AFTER"),
        help="summarise paired runs saved with --json instead of measuring",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="profile the measured batches (cProfile, the event loop's thread) into"
        " DIR/<route>.prof; the µs figures of such a run include the profiler's cost",
    )
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--label", help="added to the recorded heading")
    args = parser.parse_args()
    unknown = set(args.routes) - set(ROUTES)
    if unknown:
        parser.error(f"unknown routes: {', '.join(sorted(unknown))}")
    if args.batches < 1 or args.batch_size < 1 or args.warmup < 0:
        parser.error("--batches and --batch-size must be positive, --warmup not negative")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.compare:
        table = compare(*arguments.compare)
        print(table)
        if arguments.record:
            record("intake_cpu.py, paired runs", table, label=arguments.label)
    else:
        outcome = asyncio.run(main(arguments))
        print()
        table = results_table(outcome)
        print(table)
        if arguments.json:
            save_json(arguments.json, outcome, arguments)
        if arguments.record:
            record("intake_cpu.py", describe(arguments) + "\n\n" + table, label=arguments.label)
