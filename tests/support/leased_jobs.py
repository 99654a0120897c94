"""A job as the worker hands it to its handler (leased, running), for tests that call
a handler directly instead of running the queue."""

from __future__ import annotations

from typing import Any

from db.job_kinds import Job, JobStatus


def leased_job(job_id: int, kind: str, payload: dict[str, Any], *, attempts: int = 1) -> Job:
    return Job(
        id=job_id,
        kind=kind,
        payload=payload,
        job_key=None,
        status=JobStatus.RUNNING,
        attempts=attempts,
        max_attempts=20,
        run_after=0.0,
        lease_token="lease",
        lease_until=None,
        last_error=None,
        idempotency_key=None,
        created_at=0.0,
        updated_at=0.0,
    )
