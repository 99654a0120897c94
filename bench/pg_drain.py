"""PostgreSQL job queue: serve plus 2 workers drain 10,000 jobs; an idle worker's start.

Issue 8, target 4: `agent-relay serve` and 2 `agent-relay worker` processes on one
PostgreSQL database drain 10,000 jobs at least 1,000 jobs/s with none run twice, and
an idle worker starts a new job within 50 ms of its enqueue.

The jobs are `callback.catch_up` jobs for callbacks that do not exist: the handler
reads one row, finds nothing and returns, so what is measured is the queue (claim
with lease, complete) and the wake-ups. A trigger that the benchmark adds to its own
database records every claim of its jobs (a rise of `jobs.attempts`) with the
claiming backend and the database's clock: that is the per-job record that shows
that no job ran twice, and it dates each job's start exactly.

1. Start latency: with every worker idle, the benchmark process (a process of its own,
   as a web replica would be) enqueues one job through the product's JobQueue.enqueue
   (so whatever wake-up enqueue sends is sent), and the time runs to its claim.
   Workers that only poll (every second, in each of the 3 processes' 4 slots) find
   it after about 1/13 s on average, and after up to a second: look at p99 and max.
2. Drain: N-1 jobs inserted in one transaction straight into the jobs table, plus one
   through JobQueue.enqueue (the wake-up); then every job must be done, with one claim
   and attempts = 1 each. Jobs are spread over --keys job keys (0: no key), since keyed
   jobs take the per-key ordering check.

    .venv/bin/python bench/pg_drain.py [--jobs 10000] [--keys 1000] [--samples 20]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--record] [--label TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from harness import (
    CpuMeter,
    Latency,
    Service,
    markdown_table,
    ms,
    rate,
    record,
    relay_env,
    running,
    start_relay,
    start_worker,
    wait_for,
)

JOB_KIND = "callback.catch_up"  # processors.runtime.CATCH_UP_JOB; a missing callback: no-op
CLAIMS_DDL = [
    "CREATE TABLE bench_job_claims (job_id BIGINT NOT NULL, attempts INTEGER NOT NULL,"
    " backend_pid INTEGER NOT NULL, claimed_at DOUBLE PRECISION NOT NULL)",
    """CREATE FUNCTION bench_record_claim() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO bench_job_claims VALUES
            (NEW.id, NEW.attempts, pg_backend_pid(), extract(epoch FROM clock_timestamp()));
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER bench_job_claims AFTER UPDATE OF attempts ON jobs FOR EACH ROW"
    f" WHEN (NEW.attempts > OLD.attempts AND NEW.kind = '{JOB_KIND}')"
    " EXECUTE FUNCTION bench_record_claim()",
]


@dataclass
class Outcome:
    start_latency: Latency
    jobs: int
    from_enqueue: float  # seconds from the insert's commit to the last completion
    from_first_claim: float
    not_done: int
    failed: int
    claimed_twice: int
    attempts_not_one: int
    claims_by_process: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # during the drain, % of a core
    postgres: str = ""


def admin_url(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for link in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = link.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def processes_of_ports(services: Mapping[str, Service]) -> dict[int, str]:
    """Local TCP port -> the name of the service whose socket it is."""
    owners = {
        inode: name for name, service in services.items() for inode in _socket_inodes(service.pid)
    }
    ports = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        inode = fields[9]
        if inode in owners:
            ports[int(fields[1].rsplit(":", 1)[1], 16)] = owners[inode]
    return ports


async def claims_by_process(
    db: asyncpg.Connection, services: Mapping[str, Service]
) -> dict[str, int]:
    ports = processes_of_ports(services)
    backends = {
        row["pid"]: ports.get(row["client_port"], "other")
        for row in await db.fetch("SELECT pid, client_port FROM pg_stat_activity")
    }
    counts: Counter[str] = Counter()
    for row in await db.fetch(
        "SELECT backend_pid, COUNT(*) AS n FROM bench_job_claims GROUP BY backend_pid"
    ):
        counts[backends.get(row["backend_pid"], "closed connection")] += int(row["n"])
    return dict(counts)


async def start_latency(db: asyncpg.Connection, url: str, samples: int) -> list[float]:
    from db.jobs import JobQueue
    from db.store import Store
    from processors.runtime import CATCH_UP_JOB, CatchUpPayload

    latencies = []
    async with Store(url) as store:
        queue = JobQueue(store)
        for sample in range(samples):
            enqueued = time.time()
            job_id = await queue.enqueue(CATCH_UP_JOB, CatchUpPayload(callback_id=-1 - sample))
            assert job_id is not None

            async def claimed(job: int = job_id) -> float | None:
                value: float | None = await db.fetchval(
                    "SELECT MIN(claimed_at) FROM bench_job_claims WHERE job_id = $1", job
                )
                return value

            claimed_at = await wait_for(
                claimed, within=10, what=f"job {job_id} never claimed", interval=0.002
            )
            assert claimed_at is not None
            latencies.append(claimed_at - enqueued)

            async def done(job: int = job_id) -> bool:
                status = await db.fetchval("SELECT status FROM jobs WHERE id = $1", job)
                return bool(status == "done")

            await wait_for(done, within=10, what=f"job {job_id} never done")
    return latencies


async def drain(db: asyncpg.Connection, url: str, jobs: int, keys: int) -> tuple[float, float]:
    """Returns (seconds from the insert's commit, seconds from the first claim) to the
    last completion."""
    from db.jobs import JobQueue
    from db.store import Store
    from processors.runtime import CATCH_UP_JOB, CatchUpPayload

    first = await db.fetchval("SELECT COALESCE(MAX(id), 0) FROM jobs")
    stamp = time.time()
    rows = [
        (
            JOB_KIND,
            json.dumps({"callback_id": -1_000_000 - number}),
            f"bench:{number % keys}" if keys else None,
            "queued",
            0,
            12,
            stamp,
            stamp,
            stamp,
        )
        for number in range(jobs - 1)
    ]
    async with Store(url) as store:
        queue = JobQueue(store)
        await db.executemany(
            "INSERT INTO jobs (kind, payload, job_key, status, attempts, max_attempts,"
            " run_after, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            rows,
        )
        committed = time.time()
        await queue.enqueue(CATCH_UP_JOB, CatchUpPayload(callback_id=-1), key="bench:wake-up")
    remaining = jobs

    async def all_done() -> bool:
        nonlocal remaining
        remaining = await db.fetchval(
            "SELECT COUNT(*) FROM jobs WHERE id > $1 AND kind = $2 AND status <> 'done'",
            first,
            JOB_KIND,
        )
        failed = await db.fetchval(
            "SELECT COUNT(*) FROM jobs WHERE id > $1 AND kind = $2 AND status = 'failed'",
            first,
            JOB_KIND,
        )
        if failed:
            raise RuntimeError(f"{failed} jobs failed")
        return remaining == 0

    await wait_for(all_done, within=600, what=lambda: f"{remaining} jobs not done", interval=0.1)
    last_done = await db.fetchval(
        "SELECT MAX(updated_at) FROM jobs WHERE id > $1 AND kind = $2", first, JOB_KIND
    )
    first_claim = await db.fetchval(
        "SELECT MIN(claimed_at) FROM bench_job_claims WHERE job_id > $1", first
    )
    return last_done - committed, last_done - first_claim


async def main(args: argparse.Namespace) -> Outcome:
    name = f"agent_relay_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(args.postgres)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url(args.postgres, name)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pg-drain-") as tmp:
            workdir = Path(tmp)
            env = relay_env(url)
            relay = await start_relay(workdir, env, migrate=True)
            db = await asyncpg.connect(url)
            try:
                for statement in CLAIMS_DDL:
                    await db.execute(statement)
                workers = [
                    await start_worker(workdir, env, name=f"worker-{number}") for number in (1, 2)
                ]
                services = {"serve": relay.service} | {w.name: w for w in workers}
                async with running(relay.service, *workers):
                    latencies = await start_latency(db, url, args.samples)
                    await db.execute("DELETE FROM bench_job_claims")
                    meter = CpuMeter(services)
                    meter.start()
                    from_enqueue, from_first_claim = await drain(db, url, args.jobs, args.keys)
                    cpu = meter.stop()
                    # Here "others" is mostly PostgreSQL's backends.
                    cpu["postgres + others"] = cpu.pop("others")
                    cpu["bench"] = cpu.pop("generator")
                    by_process = await claims_by_process(db, services)
                twice = await db.fetchval(
                    "SELECT COUNT(*) FROM (SELECT job_id FROM bench_job_claims"
                    " GROUP BY job_id HAVING COUNT(*) > 1) AS repeated"
                )
                claimed = await db.fetchval("SELECT COUNT(DISTINCT job_id) FROM bench_job_claims")
                counts = {
                    row["status"]: row["n"]
                    for row in await db.fetch(
                        "SELECT status, COUNT(*) AS n FROM jobs WHERE kind = $1 GROUP BY status",
                        JOB_KIND,
                    )
                }
                attempts_not_one = await db.fetchval(
                    "SELECT COUNT(*) FROM jobs WHERE kind = $1 AND attempts <> 1", JOB_KIND
                )
                version = await db.fetchval("SHOW server_version")
            finally:
                await db.close()
            if claimed != args.jobs:
                print(f"warning: {claimed} jobs claimed, {args.jobs} expected")
            return Outcome(
                start_latency=Latency.of(latencies),
                jobs=args.jobs,
                from_enqueue=from_enqueue,
                from_first_claim=from_first_claim,
                not_done=sum(n for status, n in counts.items() if status != "done"),
                failed=counts.get("failed", 0),
                claimed_twice=twice,
                attempts_not_one=attempts_not_one,
                claims_by_process=by_process,
                cpu=cpu,
                postgres=f"PostgreSQL {version}",
            )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=1000, help="job keys (0: no key)")
    parser.add_argument("--samples", type=int, default=20, help="start-latency samples")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a database to connect to; the benchmark creates and drops its own beside it",
    )
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--label", help="added to the recorded heading")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    outcome = asyncio.run(main(arguments))
    latency = outcome.start_latency
    checks = (
        f"not done {outcome.not_done}, failed {outcome.failed}, claimed twice"
        f" {outcome.claimed_twice}, attempts ≠ 1: {outcome.attempts_not_one}"
    )
    by_process = ", ".join(f"{who} {n}" for who, n in sorted(outcome.claims_by_process.items()))
    table = markdown_table(
        [
            "jobs",
            "jobs/s from enqueue",
            "jobs/s from first claim",
            "checks",
            "claims by process",
            f"start latency p50 / p99 / max (n={latency.count})",
            "CPU during the drain (% of a core)",
        ],
        [
            [
                f"{outcome.jobs:,} ({arguments.keys} keys)",
                rate(outcome.jobs / outcome.from_enqueue),
                rate(outcome.jobs / outcome.from_first_claim),
                checks,
                by_process,
                " / ".join(ms(value) for value in (latency.p50, latency.p99, latency.max)),
                ", ".join(f"{who} {value:.0f}%" for who, value in outcome.cpu.items()),
            ]
        ],
    )
    print(table)
    if arguments.record:
        record(
            "pg_drain.py",
            f"{outcome.postgres} on loopback; `agent-relay serve` + 2 `agent-relay worker`"
            " (default WORKER_CONCURRENCY), no-op `callback.catch_up` jobs (missing callback)."
            " Start latency: one job enqueued through JobQueue.enqueue by another process"
            " while every worker is idle, to its claim. Targets: ≥ 1,000 jobs/s, none twice;"
            " start ≤ 50 ms.\n\n" + table,
            label=arguments.label,
        )
    if outcome.claimed_twice or outcome.attempts_not_one or outcome.not_done:
        raise SystemExit(1)
