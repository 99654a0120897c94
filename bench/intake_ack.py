"""How fast /agent/events acknowledges a batch (recorded + jobs queued, no work done).

Target: webhooks are answered in milliseconds, the work left to jobs. Replays the
captured finish batch (5 events, one state-change job) with fresh event ids against
the real app in-process (httpx ASGI transport, no network), on SQLite and PostgreSQL.

    .venv/bin/python bench/intake_ack.py [--requests 300] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from relay.app import create_app
from relay.settings import Settings

CORPUS = Path(__file__).resolve().parents[1] / "tests/corpora/openhands-agent-server"


def fresh_batch(template: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{**event, "id": str(uuid.uuid4())} for event in template]


async def measure(database_url: str, requests: int) -> list[float]:
    template = json.loads((CORPUS / "webhook_03_events_batch.json").read_text())["body"]
    settings = Settings(database_url=database_url, agent_server_api_key="bench-key")
    app = create_app(settings, run_worker=False)
    timings = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
            for _ in range(requests):
                conversation = uuid.uuid4().hex
                body = fresh_batch(template)
                started = time.perf_counter()
                response = await client.post(
                    f"/agent/events/{conversation}",
                    json=body,
                    headers={"X-Session-API-Key": "bench-key"},
                )
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200 and response.json()["jobs"] == 1
    return timings


def report(name: str, timings: list[float]) -> None:
    ordered = sorted(timings)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    print(
        f"{name:<10} n={len(timings)}  p50={statistics.median(timings):.1f} ms"
        f"  p95={p95:.1f} ms  max={ordered[-1]:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--postgres", help="an empty PostgreSQL database URL (it is migrated)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report("sqlite", asyncio.run(measure(f"sqlite:///{tmp}/bench.db", args.requests)))
    if args.postgres:
        from db.migrations import migrate
        from db.store import Store

        async def prepare() -> None:
            async with Store(args.postgres) as store:
                await migrate(store)

        asyncio.run(prepare())
        report("postgresql", asyncio.run(measure(args.postgres, args.requests)))


if __name__ == "__main__":
    main()
