"""The relay's peers, faked for benchmarks, in a process of their own.

- The agent-server's REST API, as agent.client calls it (shapes as in
  tests/support/fake_agent_api.py, answered at once): start a conversation, read one
  (always "running": a newly registered callback's catch-up finds nothing to do),
  search events (none), send a message, ask_agent and agent_final_response.
  X-Session-API-Key must be harness.AGENT_SESSION_KEY.
- Slack's Web API under /slack/: auth.test answers for the bench's bot (Bolt asks it
  once before it lets an event through); every other method answers invalid_auth,
  so the jobs of Slack events fail for good at their first attempt.
- GitHub's REST API under /github-api/ and GitLab's under /gitlab/api/v4/, refusing
  in the same way: they answer what the relay asks once and then caches (GitHub's
  GET /app and an installation token, GitLab's GET /user), and 403 to everything
  else, so each platform job fails for good at its first attempt, at the cost of a
  few cheap calls. (Against a closed port instead, every attempt of a GitHub job
  signs a new app JWT, about 50 ms of CPU each here, and is retried.)
- GET /_stats: calls per route; GET /_log: every agent-server call as
  [route, conversation id, time.time()]; POST /_reset forgets both.

    .venv/bin/python bench/fake_peers.py --port 8124
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections import Counter
from typing import Any

from harness import AGENT_SESSION_KEY, FINAL_RESPONSE, SLACK_BOT_USER, SLACK_TEAM, serve_http
from harness import HttpAnswer as Answer
from harness import HttpRequest as Request


class FakePeers:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, str, float]] = []

    def handle(self, request: Request) -> Answer:
        parts = request.path.strip("/").split("/")
        if parts[0] == "_stats":
            return Answer.json({"calls": dict(self.counts)})
        if parts[0] == "_log":
            return Answer.json({"calls": self.log})
        if parts[0] == "_reset":
            self.counts.clear()
            self.log.clear()
            return Answer.json({})
        if parts[0] == "slack":
            return self.slack(request, parts[1] if len(parts) > 1 else "")
        if parts[0] == "github-api":
            return self.github(request, "/".join(parts[1:]))
        if parts[:3] == ["gitlab", "api", "v4"]:
            return self.gitlab(request, "/".join(parts[3:]))
        if parts[:2] == ["api", "conversations"]:
            return self.agent(request, parts[2:])
        return Answer.json({"detail": "Not Found"}, 404)

    def slack(self, request: Request, method: str) -> Answer:
        self.counts[f"POST /slack/{method}"] += 1
        if method == "auth.test":
            return Answer.json(
                {
                    "ok": True,
                    "url": "https://bench.slack.example.test/",
                    "team": "Bench",
                    "user": "bench-bot",
                    "team_id": SLACK_TEAM,
                    "user_id": SLACK_BOT_USER,
                    "bot_id": "BBENCH01",
                    "is_enterprise_install": False,
                }
            )
        return Answer.json({"ok": False, "error": "invalid_auth"})

    def github(self, request: Request, path: str) -> Answer:
        self.counts[f"{request.method} /github-api/{path.split('/')[0]}"] += 1
        if (request.method, path) == ("GET", "app"):
            return Answer.json({"id": 424242, "slug": "bench-app", "name": "Bench app"})
        if request.method == "POST" and path.endswith("/access_tokens"):
            return Answer.json({"token": "ghs_bench", "expires_at": "2099-01-01T00:00:00Z"}, 201)
        return Answer.json({"message": "Resource not accessible by integration (bench)"}, 403)

    def gitlab(self, request: Request, path: str) -> Answer:
        self.counts[f"{request.method} /gitlab/api/v4/{path.split('/')[0]}"] += 1
        if (request.method, path) == ("GET", "user"):
            return Answer.json({"id": 900, "username": "bench-bot", "name": "Bench bot"})
        return Answer.json({"message": "403 Forbidden (bench)"}, 403)

    def agent(self, request: Request, rest: list[str]) -> Answer:
        if request.headers.get("x-session-api-key") != AGENT_SESSION_KEY:
            return Answer.json({"detail": "Unauthorized"}, 401)
        if not rest:
            body: dict[str, Any] = json.loads(request.body or b"{}")
            conversation = uuid.UUID(body.get("conversation_id") or str(uuid.uuid4()))
            self._called("POST /api/conversations", conversation.hex)
            return Answer.json(self._info(conversation, body.get("tags") or {}), 201)
        conversation = uuid.UUID(rest[0])
        action = "/".join(rest[1:])
        route = f"{request.method} /api/conversations/{{id}}" + (f"/{action}" if action else "")
        self._called(route, conversation.hex)
        if (request.method, action) == ("GET", ""):
            return Answer.json(self._info(conversation, {}))
        if (request.method, action) == ("GET", "agent_final_response"):
            return Answer.json({"response": FINAL_RESPONSE})
        if (request.method, action) == ("POST", "ask_agent"):
            return Answer.json({"response": FINAL_RESPONSE})
        if (request.method, action) == ("GET", "events/search"):
            return Answer.json({"items": [], "next_page_id": None})
        if (request.method, action) == ("POST", "events"):
            return Answer.json({"success": True})
        return Answer.json({"detail": "Not Found"}, 404)

    def _called(self, route: str, conversation: str) -> None:
        self.counts[route] += 1
        self.log.append((route, conversation, time.time()))

    @staticmethod
    def _info(conversation: uuid.UUID, tags: dict[str, Any]) -> dict[str, Any]:
        return {"id": str(conversation), "execution_status": "running", "tags": tags}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server, _ = await serve_http(FakePeers().handle, args.port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
