"""The intake every platform shares: after its route (or Bolt) has verified a
delivery, record it in the delivery ledger and queue its job in one transaction,
and only then let the 2xx go out. A crash before the commit loses nothing the
platform was told it delivered; a delivery seen before (the platform's retry, or a
redelivery) finds its id in the ledger and queues nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from db.deliveries import record_deliveries, record_delivery
from db.job_kinds import JobKind, VerbatimJson
from db.jobs import JobQueue
from db.logcontext import log_context
from db.metrics import EVENTS_RECEIVED
from db.store import Store

log = logging.getLogger(__name__)

# As long as a reply's: a platform outage of hours delays a mention but does not
# lose it.
EVENT_JOB_MAX_ATTEMPTS = 20


class WebhookEventPayload(BaseModel):
    """A GitHub or GitLab delivery worth a job (their `<platform>.event` jobs)."""

    delivery_id: str
    # The platform's event name (X-GitHub-Event, X-Gitlab-Event).
    event: str
    # The delivery's body: queued as received when it is JSON text (VerbatimJson),
    # which spares encoding it again (bench/RESULTS.md).
    payload: dict[str, Any] | VerbatimJson


class Intake(StrEnum):
    """What became of a verified delivery (the `outcome` label of its metric)."""

    QUEUED = "queued"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


@dataclass(slots=True)
class Delivery:
    """One verified delivery worth a job."""

    platform: str
    delivery_id: str
    # What the log line says it was, e.g. "issue_comment.created".
    description: str
    job_kind: JobKind[Any]
    payload: BaseModel
    # Serialises the jobs of one thread (or installation): they run in order.
    job_key: str
    # What the platform calls one (Slack: an event), in the log lines.
    noun: str = "delivery"
    # Other ids the platform may send the same delivery under (GitLab: the
    # Idempotency-Key, which a resent event keeps while its X-Gitlab-Event-UUID is
    # new): recorded with it, and any of them seen before makes it a duplicate.
    aliases: tuple[str, ...] = ()


async def record_and_queue(store: Store, queue: JobQueue, delivery: Delivery) -> Intake:
    """Ledger row and job in one transaction; counted and logged either way."""
    async with store.transaction():
        if not await _first_time(store, delivery):
            count(delivery.platform, Intake.DUPLICATE)
            with log_context(delivery=delivery.delivery_id):
                log.info(
                    "%s %s %s received again; ignored",
                    delivery.platform,
                    delivery.noun,
                    delivery.delivery_id,
                )
            return Intake.DUPLICATE
        job_id = await queue.enqueue(
            delivery.job_kind,
            delivery.payload,
            key=delivery.job_key,
            idempotency_key=f"{delivery.job_kind.name}:{delivery.delivery_id}",
            max_attempts=EVENT_JOB_MAX_ATTEMPTS,
        )
    count(delivery.platform, Intake.QUEUED)
    with log_context(delivery=delivery.delivery_id, job=job_id):
        log.info(
            "%s %s %s queued (%s)",
            delivery.platform,
            delivery.noun,
            delivery.delivery_id,
            delivery.description,
        )
    return Intake.QUEUED


async def _first_time(store: Store, delivery: Delivery) -> bool:
    """Record the delivery's ids; True when none of them was seen before."""
    if not delivery.aliases:
        return await record_delivery(store, delivery.platform, delivery.delivery_id)
    ids = list(dict.fromkeys((delivery.delivery_id, *delivery.aliases)))
    fresh = await record_deliveries(store, delivery.platform, ids)
    return len(fresh) == len(ids)


# The counter's children by (platform, outcome), made once: .labels() looks a child up
# under a lock on every call, about 5 µs of each webhook (bench/RESULTS.md, 2026-12-04).
_COUNTED: dict[tuple[str, Intake], Any] = {}


def count(platform: str, outcome: Intake) -> None:
    child = _COUNTED.get((platform, outcome))
    if child is None:
        child = _COUNTED[(platform, outcome)] = EVENTS_RECEIVED.labels(
            platform=platform, outcome=outcome.value
        )
    child.inc()
