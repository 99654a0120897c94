"""Workers: claim jobs, run their handler under a kept-alive lease, record the outcome.

An idle slot waits for the queue's wakeup event (set on enqueue in this process and,
on PostgreSQL, by db.wakeups for every other process) or for its poll interval,
which stays as the fallback when a wakeup is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

from db.job_kinds import Job, JobHandler, JobStatus, PermanentJobError, RetryableJobError
from db.jobs import JobQueue
from db.logcontext import log_context
from db.wakeups import JobWakeupListener, job_wakeups

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        queue: JobQueue,
        handlers: Mapping[str, JobHandler],
        *,
        concurrency: int = 4,
        poll_interval: float = 1.0,
        name: str | None = None,
        listen: bool = True,
    ) -> None:
        self.queue = queue
        self.handlers = dict(handlers)
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.outcomes: dict[str, int] = {}
        # Jobs the claim loop's slots finished, recorded done with its next claim.
        self._finished: list[Job] = []
        # listen=False leaves cross-process wakeups out (tests of the other paths).
        self.listen = listen
        self.wakeups: JobWakeupListener | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; jobs under way are finished first."""
        log.info("worker %s started with %d slots", self.name, self.concurrency)
        wakeups = (
            job_wakeups(self.queue.store, self.queue.wakeup)
            if self.listen
            else contextlib.nullcontext()
        )
        async with wakeups as self.wakeups:
            await self._dispatch(stop)
        self.wakeups = None
        log.info("worker %s stopped", self.name)

    async def _dispatch(self, stop: asyncio.Event) -> None:
        # One loop claims for every free slot at once and runs each job as a task of
        # its own. It looks for work again when a job ends (which may free its key),
        # when the queue is woken, and every poll interval; the jobs finished since
        # its last look are recorded done in the same transaction
        # (JobQueue.complete_and_claim).
        running: set[asyncio.Task[None]] = set()
        job_ended = asyncio.Event()

        def ended(task: asyncio.Task[None]) -> None:
            running.discard(task)
            job_ended.set()

        try:
            while not stop.is_set():
                free = self.concurrency - len(running)
                if free == 0:
                    await _first_of(stop, job_ended, within=self.poll_interval)
                    continue
                # Cleared before the claim: a job that ends or is queued while the
                # claim runs sets them again, and is looked for at once.
                job_ended.clear()
                self.queue.wakeup.clear()
                try:
                    claimed = await self._record_finished_and_claim(free)
                except Exception:
                    log.exception("claiming jobs failed; trying again shortly")
                    await _first_of(stop, within=self.poll_interval)
                    continue
                for job in claimed:
                    task = asyncio.create_task(self.run_job(job, defer_completion=True))
                    running.add(task)
                    task.add_done_callback(ended)
                if len(claimed) < free:
                    await _first_of(stop, self.queue.wakeup, job_ended, within=self.poll_interval)
        except BaseException:
            for task in running:
                task.cancel()
            raise
        finally:
            if running:
                await asyncio.wait(list(running))
            if self._finished:
                try:
                    await self._record_finished_and_claim(0)
                except Exception:
                    # Their leases run out and they run again: jobs are idempotent.
                    log.exception("recording %d finished jobs failed", len(self._finished))

    async def _record_finished_and_claim(self, free: int) -> list[Job]:
        finished, self._finished = self._finished, []
        try:
            done, claimed = await self.queue.complete_and_claim(finished, free)
        except BaseException:
            self._finished[:0] = finished  # recorded with the next claim instead
            raise
        for job in finished:
            if job.id in done:
                self._count(job, "done")
            else:
                self._lease_lost(job)
        return claimed

    async def run_job(self, job: Job, *, defer_completion: bool = False) -> None:
        """Run `job` and record its outcome; with `defer_completion`, a success is
        left for the claim loop to record with its next claim."""
        # Every line of the job, its handler's task and its outcome carry its id and kind.
        with log_context(job=job.id, kind=job.kind):
            await self._run_job(job, defer_completion)

    async def _run_job(self, job: Job, defer_completion: bool) -> None:
        handler = self.handlers.get(job.kind)
        if handler is None:
            await self._record(job, PermanentJobError(f"no handler for job kind {job.kind!r}"))
            return
        if job.attempts > job.max_attempts:
            # Claimed again after its lease ran out on the last attempt: the worker
            # running it keeps dying (or hanging); stop feeding it the job.
            await self._record(job, PermanentJobError("lease expired on the last attempt"))
            return
        work = asyncio.create_task(handler(job))
        keeper = asyncio.create_task(self._keep_lease(job, work))
        try:
            await work
        except asyncio.CancelledError:
            if not keeper.done():
                raise  # this worker is being cancelled, not the job
            # The lease went to another worker, which runs the job now; what this
            # attempt would record is fenced off anyway.
            self._count(job, "lease_lost")
        except Exception as exc:
            await self._record(job, exc)
        else:
            if defer_completion:
                self._finished.append(job)
            else:
                await self._record(job, None)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_lease(self, job: Job, work: asyncio.Task[None]) -> None:
        """Renew the lease while `work` runs; stop `work` if the lease is lost."""
        while True:
            await asyncio.sleep(self.queue.lease_seconds / 3)
            try:
                kept = await self.queue.extend_lease(job)
            except Exception as exc:
                # A passing database fault: try again before the lease runs out.
                log.warning("job %s: renewing its lease failed (%s)", job.id, type(exc).__name__)
                continue
            if not kept:
                log.warning("job %s: lease lost to another worker; stopping it here", job.id)
                work.cancel()
                return

    async def _record(self, job: Job, error: Exception | None) -> None:
        outcome: JobStatus | str | None
        try:
            if error is None:
                outcome = "done" if await self.queue.complete(job) else None
            elif isinstance(error, RetryableJobError):
                outcome = await self.queue.fail(job, str(error), retry_after=error.retry_after)
            elif isinstance(error, PermanentJobError):
                outcome = await self.queue.fail(job, str(error), permanent=True)
            else:
                log.error("job %s (%s) raised", job.id, job.kind, exc_info=error)
                outcome = await self.queue.fail(job, f"{type(error).__name__}: {error}")
        except Exception:
            # The lease will run out and another attempt will follow; nothing is lost.
            log.exception("job %s: recording its outcome failed", job.id)
            return
        if outcome is None:
            self._lease_lost(job)
            outcome = "lease_lost"
        else:
            self._count(job, str(outcome))
        if error is not None:
            log.warning(
                "job %s (%s) attempt %d: %s -> %s", job.id, job.kind, job.attempts, error, outcome
            )

    def _lease_lost(self, job: Job) -> None:
        """Another worker took `job` over after our lease ran out; its outcome counts."""
        with log_context(job=job.id, kind=job.kind):
            log.warning("job %s: lease lost before its outcome was recorded", job.id)
        self._count(job, "lease_lost")

    def _count(self, job: Job, outcome: str) -> None:
        key = f"{job.kind}:{outcome}"
        self.outcomes[key] = self.outcomes.get(key, 0) + 1


async def _first_of(*events: asyncio.Event, within: float) -> None:
    """Wait until one of `events` is set, or `within` seconds have passed."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
