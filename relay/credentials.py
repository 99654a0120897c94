"""`GET /agent/credentials/{conversation_id}/{name}`: where a conversation's checkout
gets its token (processors.credentials), asked by the agent-server (a LookupSecret)
and by git (the credential helper), with the conversation's capability as a Bearer
token. 200 text/plain with the token while a turn is in progress; 401 for a wrong
capability, 404 for an unknown conversation (or name), 403 once no turn is in progress.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from agent.http import problem
from db.job_kinds import PermanentJobError, RetryableJobError
from processors.credentials import (
    Credentials,
    NoTurnInProgress,
    UnknownConversation,
    WrongCapability,
)

log = logging.getLogger(__name__)

# Tokens must not linger in caches between the relay and the agent-server.
_NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class CredentialsRoute:
    credentials: Credentials | None

    def routes(self) -> list[Route]:
        return [Route("/agent/credentials/{conversation_id}/{name}", self.token, methods=["GET"])]

    async def token(self, request: Request) -> Response:
        conversation_id = str(request.path_params["conversation_id"])
        name = str(request.path_params["name"])
        scheme, _, capability = request.headers.get("authorization", "").partition(" ")
        if self.credentials is None:
            return problem(404, "no workspaces are configured")
        if scheme.lower() != "bearer" or not capability.strip():
            return problem(401, "a Bearer capability is required")
        try:
            token = await self.credentials.serve(conversation_id, name, capability.strip())
        except UnknownConversation:
            return problem(404, f"no workspace for conversation {conversation_id} and {name}")
        except WrongCapability:
            log.warning(
                "credentials of conversation %s asked with a wrong capability", conversation_id
            )
            return problem(401, "wrong capability")
        except NoTurnInProgress:
            return problem(403, f"conversation {conversation_id} has no turn in progress")
        except (RetryableJobError, PermanentJobError) as exc:
            log.warning("no token for conversation %s: %s", conversation_id, exc)
            return problem(503, "the repository's host did not hand out a token; try again")
        return PlainTextResponse(token, headers=_NO_STORE)
