"""Soak: ingest and event -> reply for a while, with a short retention; table sizes over time.

Issue 8, target 6: done jobs, old delivery-ledger rows and closed callbacks' heavy
fields are pruned after a setting by a periodic job, in small batches that never
stall ingest, and table sizes stay flat in a soak test.

The real `agent-relay serve` (SQLite, SUMMARY_MODE=final_response, fake agent-server
and receiver on loopback) gets, open loop, --rate finish batches per second on
/agent/events (fresh conversations: ledger rows and a state-change job each) and
--conversation-rate conversations per second (POST /api/callbacks on a fresh id,
then its finish batch a second later, then the reply). Every --sample-every seconds
it reads, read-only beside the relay, the rows of every table, the bytes of the
heavy fields (jobs.payload, conversation_callbacks.processor_json) and the database
file sizes, next to the ingest latency of that interval (a pruning pass that holds
the write lock shows there).

The retention settings are passed with --setting NAME=VALUE (default
RETENTION_DAYS=0.0002, about 17 s). A name that this build does not read is reported:
sizes can then not be flat. Flatness also needs the pruning job to run within the
soak: the growth of each size over the last third of the run is compared with its
growth over the first third.

    .venv/bin/python bench/soak.py [--duration 60] [--rate 50] [--conversation-rate 5]
        [--setting RETENTION_DAYS=0.0002] [--record] [--label TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    AGENT_SESSION_KEY,
    API_TOKEN,
    Latency,
    OpenLoopResult,
    Receiver,
    has_setting,
    markdown_table,
    ms,
    open_loop,
    parse_setting,
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
    conversation_id,
    register_callback_request,
    run_id,
)

MIB = 2**20
HEAVY_FIELDS = {"jobs": "payload", "conversation_callbacks": "processor_json"}
WATCHED = ["jobs", "inbound_deliveries", "conversation_callbacks", "agent_conversations"]


@dataclass
class Sample:
    at: float  # seconds since the load started
    rows: dict[str, int]
    heavy_bytes: dict[str, int]
    file_bytes: int
    ingest: Latency | None = None


@dataclass
class Outcome:
    samples: list[Sample]
    load: OpenLoopResult
    unknown_settings: list[str]
    replies_problems: list[str]
    flat: dict[str, str] = field(default_factory=dict)


def measure(database: Path) -> tuple[dict[str, int], dict[str, int], int]:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        rows = {
            table: int(connection.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
            for table in tables
        }
        heavy = {
            table: int(
                connection.execute(
                    f'SELECT COALESCE(SUM(LENGTH("{column}")), 0) FROM "{table}"'
                ).fetchone()[0]
            )
            for table, column in HEAVY_FIELDS.items()
        }
    finally:
        connection.close()
    files = sum(
        path.stat().st_size for path in (database, Path(f"{database}-wal")) if path.exists()
    )
    return rows, heavy, files


def schedule(
    args: argparse.Namespace, run: str, receiver_url: str
) -> tuple[list[tuple[float, bytes]], list[bool], list[str]]:
    """The requests in time order, which of them are ingest batches, and the
    conversations that must be answered."""
    timed: list[tuple[float, bytes, bool]] = []
    ingest = int(args.duration * args.rate)
    for index in range(ingest):
        offset = index / args.rate
        timed.append((offset, agent_events_request(conversation_id(run, index)), True))
    answered = []
    for number in range(int((args.duration - 1) * args.conversation_rate)):
        offset = number / args.conversation_rate
        conversation = conversation_id(run, ingest + number)
        answered.append(conversation)
        timed.append((offset, register_callback_request(conversation, receiver_url), False))
        timed.append((offset + 1.0, agent_events_request(conversation), False))
    timed.sort(key=lambda item: item[0])
    return [(offset, data) for offset, data, _ in timed], [kind for *_, kind in timed], answered


def flatness(samples: list[Sample]) -> dict[str, str]:
    """Per size: growth over the last third of the load against the first third."""
    loaded = [sample for sample in samples if sample.ingest is not None]
    if len(loaded) < 4:
        return {}
    third = len(loaded) // 3
    first, middle, last = loaded[0], loaded[third], loaded[-1]
    last_start = loaded[-1 - third]
    sizes = {
        **{f"{table} rows": lambda s, t=table: s.rows.get(t, 0) for table in WATCHED},
        **{
            f"{t}.{c} bytes": lambda s, t=t: s.heavy_bytes.get(t, 0)
            for t, c in HEAVY_FIELDS.items()
        },
    }
    verdicts = {}
    for name, size in sizes.items():
        early = (size(middle) - size(first)) / max(middle.at - first.at, 1e-9)
        late = (size(last) - size(last_start)) / max(last.at - last_start.at, 1e-9)
        if early <= 0:
            verdicts[name] = "flat (never grew)"
        elif late <= 0.1 * early:
            verdicts[name] = f"flat (grew {early:,.0f}/s, then {late:,.0f}/s)"
        else:
            verdicts[name] = f"growing ({early:,.0f}/s, then {late:,.0f}/s)"
    return verdicts


async def main(args: argparse.Namespace) -> Outcome:
    unknown = [name for name in args.setting if not has_setting(name)]
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        workdir = Path(tmp)
        peers = await start_fake_peers(workdir)
        receiver = await Receiver().start()
        database = workdir / "relay.db"
        env = relay_env(
            f"sqlite:///{database}",
            AGENT_SERVER_URL=peers.url,
            AGENT_SERVER_API_KEY=AGENT_SESSION_KEY,
            API_TOKEN=API_TOKEN,
            SUMMARY_MODE="final_response",
            **args.setting,
        )
        relay = await start_relay(workdir, env)
        async with running(peers.service, relay.service):
            requests, is_ingest, answered = schedule(args, run_id(), receiver.url)
            samples: list[Sample] = []
            started = time.monotonic()

            async def sample(loaded: bool) -> None:
                rows, heavy, files = await asyncio.to_thread(measure, database)
                samples.append(
                    Sample(
                        time.monotonic() - started,
                        rows,
                        heavy,
                        files,
                        None if not loaded else Latency.of([]),
                    )
                )

            async def sampler() -> None:
                for tick in range(1, int(args.duration / args.sample_every) + 1):
                    delay = started + tick * args.sample_every - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)  # sampling by the clock
                    await sample(loaded=True)

            await sample(loaded=False)
            sampling = asyncio.create_task(sampler())
            load = await open_loop(
                relay.port, requests, connections=args.connections, give_up_after=args.timeout
            )
            await sampling
            await wait_for(
                lambda: len(receiver.replies) >= len(answered),
                within=120,
                what=lambda: f"{len(answered) - len(receiver.replies)} replies missing",
                interval=0.1,
            )
            await wait_idle(database, within=120)
            await sample(loaded=False)
            receiver.close()
    # The ingest latency of each interval, from the requests due in it.
    for sample_number, current in enumerate(samples):
        if current.ingest is None:
            continue
        since = samples[sample_number - 1].at if sample_number else 0.0
        current.ingest = Latency.of(
            [
                load.latencies[index]
                for index, (offset, _) in enumerate(requests)
                if is_ingest[index] and since <= offset < current.at
            ]
        )
    outcome = Outcome(samples, load, unknown, receiver.problems(answered))
    outcome.flat = flatness(samples)
    return outcome


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=50.0, help="ingest batches per second")
    parser.add_argument("--conversation-rate", type=float, default=5.0, help="per second")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds after its due time")
    parser.add_argument(
        "--setting",
        type=parse_setting,
        action="append",
        help="a relay setting, NAME=VALUE (repeatable); default RETENTION_DAYS=0.0002",
    )
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--label", help="added to the recorded heading")
    args = parser.parse_args()
    args.setting = dict(args.setting or [("RETENTION_DAYS", "0.0002")])
    return args


def report(outcome: Outcome, args: argparse.Namespace) -> str:
    header = [
        "t (s)",
        *[f"{table} rows" for table in WATCHED],
        *[f"{table}.{column} MiB" for table, column in HEAVY_FIELDS.items()],
        "db + wal MiB",
        "ingest p99 / max",
    ]
    rows = []
    for sample in outcome.samples:
        label = f"{sample.at:.0f}"
        if sample.ingest is None:
            label += " (before)" if sample is outcome.samples[0] else " (drained)"
        rows.append(
            [
                label,
                *[f"{sample.rows.get(table, 0):,}" for table in WATCHED],
                *[f"{sample.heavy_bytes.get(table, 0) / MIB:.2f}" for table in HEAVY_FIELDS],
                f"{sample.file_bytes / MIB:.1f}",
                "-"
                if sample.ingest is None or math.isnan(sample.ingest.p99)
                else f"{ms(sample.ingest.p99)} / {ms(sample.ingest.max)}",
            ]
        )
    settings = ", ".join(f"{name}={value}" for name, value in args.setting.items())
    lines = [
        f"Settings: {settings}. Load: {args.rate:.0f} finish batches/s on fresh conversations"
        f" and {args.conversation_rate:.0f} conversations/s (callback, finish, reply) for"
        f" {args.duration:.0f} s, open loop; {outcome.load.errors} errors,"
        f" {outcome.load.timeouts} timeouts of {outcome.load.scheduled} requests.",
        "",
        markdown_table(header, rows),
        "",
    ]
    if outcome.unknown_settings:
        lines.append(
            f"**Cannot show flatness yet:** this build does not read"
            f" {', '.join(outcome.unknown_settings)}."
        )
    for name, verdict in outcome.flat.items():
        lines.append(f"- {name}: {verdict}")
    lines.append(
        "- replies: "
        + (
            "all once, completed, signed"
            if not outcome.replies_problems
            else "; ".join(outcome.replies_problems)
        )
    )
    return "\n".join(lines)


if __name__ == "__main__":
    arguments = parse_args()
    result = asyncio.run(main(arguments))
    text = report(result, arguments)
    print(text)
    if arguments.record:
        record("soak.py", text, label=arguments.label)
