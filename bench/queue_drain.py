"""Job throughput: how many no-op jobs one worker process drains per second.

Measures the queue's own cost (claim with lease, complete) without any handler
work: the ceiling for state changes and replies per process.

    .venv/bin/python bench/queue_drain.py [--jobs 1000] [--concurrency 4] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from pydantic import BaseModel

from db.job_kinds import Job, JobKind
from db.jobs import JobQueue
from db.migrations import migrate
from db.store import Store
from relay.worker import Worker


class Noop(BaseModel):
    n: int


NOOP_JOB = JobKind("noop", Noop)


async def drain(database_url: str, jobs: int, concurrency: int) -> float:
    async with Store(database_url) as store:
        await migrate(store)
        queue = JobQueue(store)
        for number in range(jobs):
            await queue.enqueue(NOOP_JOB, Noop(n=number), key=f"conversation-{number % 50}")
        done = asyncio.Event()
        handled = 0

        async def noop(job: Job) -> None:
            nonlocal handled
            handled += 1
            if handled == jobs:
                done.set()

        stop = asyncio.Event()
        worker = Worker(queue, {NOOP_JOB.name: noop}, concurrency=concurrency, poll_interval=0.05)
        started = time.perf_counter()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.wait_for(done.wait(), timeout=600)
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        await store.execute("DELETE FROM jobs")
        return jobs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--postgres", help="a PostgreSQL database URL (it is migrated)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rate = asyncio.run(drain(f"sqlite:///{tmp}/bench.db", args.jobs, args.concurrency))
        print(f"sqlite      {args.jobs} jobs, {args.concurrency} slots: {rate:.0f} jobs/s")
    if args.postgres:
        rate = asyncio.run(drain(args.postgres, args.jobs, args.concurrency))
        print(f"postgresql  {args.jobs} jobs, {args.concurrency} slots: {rate:.0f} jobs/s")


if __name__ == "__main__":
    main()
