"""Operator routes: liveness, readiness (database reachable, schema current), metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bots.platform import InboundConnection
from db.callbacks import CallbackStatus
from db.jobs import JobQueue
from db.metrics import REGISTRY as FLOW_METRICS
from db.migrations import is_current
from db.store import Store
from relay.worker import Worker

log = logging.getLogger(__name__)


@dataclass
class Health:
    store: Store
    queue: JobQueue
    worker: Worker | None
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # Connections this process receives events on (Slack's Socket Mode): ready only
    # while each is connected.
    connections: Sequence[InboundConnection] = ()

    def __post_init__(self) -> None:
        self.jobs = Gauge("agent_relay_jobs", "Jobs by status", ["status"], registry=self.registry)
        self.jobs_due = Gauge(
            "agent_relay_jobs_due",
            "Queued jobs that are due now (not waiting for a retry or a schedule)",
            registry=self.registry,
        )
        self.callbacks = Gauge(
            "agent_relay_callbacks",
            "Conversation callbacks by status",
            ["status"],
            registry=self.registry,
        )
        self.outcomes = Gauge(
            "agent_relay_worker_job_outcomes",
            "Job attempts finished by this process, by kind and outcome",
            ["kind", "outcome"],
            registry=self.registry,
        )

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]

    async def healthz(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> JSONResponse:
        try:
            current = await is_current(self.store)
        except Exception as exc:
            log.warning("readiness check: database unreachable: %s", type(exc).__name__)
            return JSONResponse({"status": "database unreachable"}, status_code=503)
        if not current:
            return JSONResponse(
                {"status": "schema out of date: run `agent-relay migrate`"}, status_code=503
            )
        states = {c.name: await c.connected() for c in self.connections}
        shown = {name: "connected" if up else "not connected" for name, up in states.items()}
        if not all(states.values()):
            down = ", ".join(name for name, up in states.items() if not up)
            return JSONResponse(
                {"status": f"{down}: not connected", "connections": shown}, status_code=503
            )
        return JSONResponse({"status": "ready", **({"connections": shown} if shown else {})})

    async def metrics(self, request: Request) -> Response:
        for status, count in (await self.queue.counts()).items():
            self.jobs.labels(status=status).set(count)
        self.jobs_due.set(await self.queue.due_count())
        rows = await self.store.fetch_all(
            "SELECT status, COUNT(*) AS n FROM conversation_callbacks GROUP BY status"
        )
        by_status = {row["status"]: int(row["n"]) for row in rows}
        for status in CallbackStatus:
            self.callbacks.labels(status=status.value).set(by_status.get(status.value, 0))
        if self.worker is not None:
            for key, count in self.worker.outcomes.items():
                kind, _, outcome = key.rpartition(":")
                self.outcomes.labels(kind=kind, outcome=outcome).set(count)
        # The mention -> reply counters and latencies (db.metrics) are this process's
        # own and live in their own registry; the two texts join into one exposition.
        body = generate_latest(self.registry) + generate_latest(FLOW_METRICS)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
