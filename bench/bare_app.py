"""The reference the ingest benchmark compares with: a bare Starlette app.

It reads the request body and answers JSON, on every path, under the same Python and
uvicorn (and the same uvicorn options) as `agent-relay serve`. Started by harness:

    .venv/bin/python bench/bare_app.py --port 8123
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def answer(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"ok": True, "bytes": len(body)})


app = Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # As relay.cli.serve runs the relay's app.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, proxy_headers=True)


if __name__ == "__main__":
    main()
