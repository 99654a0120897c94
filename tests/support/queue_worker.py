"""A worker OS process for the multi-process job-queue tests.

    python -m tests.support.queue_worker DATABASE_URL [--lease-seconds S] [--hang block|succeed]
                                         [--concurrency N] [--poll-interval S] [--ready-file PATH]

Runs relay.worker.Worker on a JobQueue of DATABASE_URL until SIGTERM/SIGINT. Handlers:

- "record": inserts (job_id, job_key, pid, started_at, finished_at) into the table
  `test_job_runs`, which the test creates; the job takes a few milliseconds, so runs
  that overlapped would show in the timestamps.
- "hang": with `--hang block`, never returns (to be SIGKILLed while it holds the lease);
  with `--hang succeed`, records a run like "record" and returns.

The ready file is created once the database is connected, so a test can start
enqueuing when every worker is up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from pathlib import Path

from db.job_kinds import Job
from db.jobs import JobQueue
from db.store import Store
from relay.worker import JobHandler, Worker

RECORD_WORK_SECONDS = 0.005  # simulated work between a run's start and end stamps


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="queue_worker")
    parser.add_argument("database_url")
    parser.add_argument("--lease-seconds", type=float, default=30.0)
    parser.add_argument("--hang", choices=["block", "succeed"], default="block")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--ready-file", type=Path)
    return parser.parse_args(argv)


def make_handlers(store: Store, hang: str) -> dict[str, JobHandler]:
    pid = os.getpid()

    async def record(job: Job) -> None:
        started_at = time.time()
        await asyncio.sleep(RECORD_WORK_SECONDS)
        await store.execute(
            "INSERT INTO test_job_runs (job_id, job_key, pid, started_at, finished_at)"
            " VALUES (:job_id, :job_key, :pid, :started_at, :finished_at)",
            {
                "job_id": job.id,
                "job_key": job.job_key,
                "pid": pid,
                "started_at": started_at,
                "finished_at": time.time(),
            },
        )

    async def hang_forever(job: Job) -> None:
        await asyncio.Event().wait()

    return {"record": record, "hang": hang_forever if hang == "block" else record}


async def main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with Store(args.database_url) as store:
        queue = JobQueue(store, lease_seconds=args.lease_seconds)
        worker = Worker(
            queue,
            make_handlers(store, args.hang),
            concurrency=args.concurrency,
            poll_interval=args.poll_interval,
            name=f"queue-worker-{os.getpid()}",
        )
        if args.ready_file is not None:
            args.ready_file.write_text(str(os.getpid()))
        await worker.run(stop)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
