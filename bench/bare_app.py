"""The references the ingest benchmark compares with: a bare Starlette app, and the
same app writing what any durable webhook must write before it answers.

Bare, it reads the request body and answers JSON, on every path, under the same
Python and uvicorn (and the same uvicorn options) as `agent-relay serve`.

With --database (the "floor"), each POST also parses the JSON and, in one SQLite
transaction on one connection in WAL mode with synchronous=NORMAL (the relay's own
settings, db/sqlite.py), records a delivery-ledger row per delivery (per event of an
agent-server batch) and a job holding the body, and commits before it answers: the
least a webhook that is deduplicated and durably queued costs, with no verification,
no routing and no logic. The tables are the product's, created by its migrations.
What the relay does beyond that is the distance between its row and this one.

    .venv/bin/python bench/bare_app.py --port 8123 [--database /tmp/floor.db]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import time
import uuid
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from db.migrations import migrate
from db.store import Store

# The headers that carry the platforms' delivery ids (Slack's is in the body).
_DELIVERY_HEADERS = ("x-github-delivery", "x-gitlab-event-uuid")


async def answer(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"ok": True, "bytes": len(body)})


class DurableWrites:
    def __init__(self, path: str) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("PRAGMA journal_mode = WAL")
        self.connection.execute("PRAGMA synchronous = NORMAL")

    def delivery_ids(self, request: Request, document: Any) -> list[str]:
        if isinstance(document, list):  # an agent-server batch: one delivery per event
            conversation = request.url.path.rsplit("/", 1)[-1]
            return [f"{conversation}:{event['id']}" for event in document]
        for header in _DELIVERY_HEADERS:
            if header in request.headers:
                return [request.headers[header]]
        event_id = document.get("event_id") if isinstance(document, dict) else None
        return [str(event_id or uuid.uuid4())]

    async def answer(self, request: Request) -> JSONResponse:
        body = await request.body()
        if request.method != "POST":
            return JSONResponse({"ok": True})
        ids = self.delivery_ids(request, json.loads(body))
        stamp = time.time()
        rows = ", ".join("(?, ?, ?)" for _ in ids)
        values = [value for delivery in ids for value in ("floor", delivery, stamp)]
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            fresh = connection.execute(
                f"INSERT INTO inbound_deliveries (source, delivery_id, received_at) VALUES {rows}"
                " ON CONFLICT (source, delivery_id) DO NOTHING RETURNING delivery_id",
                values,
            ).fetchall()
            if fresh:
                connection.execute(
                    "INSERT INTO jobs (kind, payload, idempotency_key, status, attempts,"
                    " max_attempts, run_after, created_at, updated_at)"
                    " VALUES ('bench.floor', ?, ?, 'queued', 0, 12, ?, ?, ?)",
                    (body.decode(), f"floor:{ids[0]}", stamp, stamp, stamp),
                )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return JSONResponse({"accepted": len(fresh)}, status_code=202)


async def create_schema(path: str) -> None:
    async with Store(f"sqlite:///{path}") as store:
        await migrate(store)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", help="SQLite file: write like a durable webhook (floor)")
    args = parser.parse_args()
    handler = answer
    if args.database:
        asyncio.run(create_schema(args.database))
        handler = DurableWrites(args.database).answer
    app = Starlette(routes=[Route("/{path:path}", handler, methods=["GET", "POST"])])
    # As relay.cli.serve runs the relay's app.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, proxy_headers=True)


if __name__ == "__main__":
    main()
