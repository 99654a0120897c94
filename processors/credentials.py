"""The tokens a conversation's checkout pushes with: minted per conversation, served
to the agent-server while a turn is in progress, revoked when it ends.

The agent-server fetches them itself (a LookupSecret, each time a terminal command
names the variable; git through the credential helper agent.checkout writes), from
`GET /agent/credentials/{conversation id}/{NAME}` (relay.credentials), with the
conversation's capability: a random value only its workspace row knows the SHA-256 of.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from agent.checkout import CheckoutMode
from db.callbacks import UnknownProcessorKind, active_callbacks
from db.secrets import SecretBox
from db.store import Store, now
from db.workspaces import Workspace, get_workspace, update_workspace
from processors.hosts import MintedToken, RepositoryHost, WorkspacePolicy

log = logging.getLogger(__name__)

# A token is served until this long before it expires, then a fresh one: a git push
# that starts with it has time to finish.
RENEW_BEFORE_SECONDS = 600.0
CAPABILITY_BYTES = 32


class UnknownConversation(LookupError):
    """No workspace (or not this token name) for the conversation: 404."""


class WrongCapability(PermissionError):
    """The capability does not match: 401."""


class NoTurnInProgress(PermissionError):
    """The conversation has no turn in progress, so no token is served: 403."""


def new_capability() -> tuple[str, str]:
    """A fresh capability and the hash that is stored of it."""
    capability = secrets.token_urlsafe(CAPABILITY_BYTES)
    return capability, capability_hash(capability)


def capability_hash(capability: str) -> str:
    return hashlib.sha256(capability.encode()).hexdigest()


def may_push(workspace: Workspace, policy: WorkspacePolicy) -> bool:
    return (
        policy.pushes
        and workspace.branch is not None
        and workspace.mode
        in (
            CheckoutMode.NEW_BRANCH,
            CheckoutMode.HEAD_BRANCH,
        )
    )


@dataclass
class Credentials:
    """Mints, keeps and revokes the agent's tokens (one object per process)."""

    store: Store
    hosts: Mapping[str, RepositoryHost]
    policy: WorkspacePolicy
    box: SecretBox
    # Without SECRET_KEY a token is never written to the database: this process
    # keeps it (another process mints its own).
    _memory: dict[str, MintedToken] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def serve(self, conversation_id: str, name: str, capability: str) -> str:
        """The token for `name` (GITHUB_TOKEN, GITLAB_TOKEN), or why not (the errors
        above, in the order the endpoint answers them)."""
        workspace = await get_workspace(self.store, conversation_id)
        host = self.hosts.get(workspace.host) if workspace is not None else None
        if workspace is None or host is None or name.upper() != host.token_name:
            raise UnknownConversation(conversation_id)
        presented = capability_hash(capability)
        if not hmac.compare_digest(presented, workspace.capability_hash):
            raise WrongCapability(conversation_id)
        if workspace.removed_at is not None or not await turn_in_progress(
            self.store, conversation_id
        ):
            raise NoTurnInProgress(conversation_id)
        lock = self._locks.setdefault(conversation_id, asyncio.Lock())
        async with lock:
            return await self._current_token(workspace, host)

    async def _current_token(self, workspace: Workspace, host: RepositoryHost) -> str:
        # Read again under the lock: a concurrent request may have just minted one.
        fresh = await get_workspace(self.store, workspace.conversation_id) or workspace
        kept = self._kept(fresh)
        if kept is not None and (
            kept.expires_at is None or kept.expires_at - now() > RENEW_BEFORE_SECONDS
        ):
            return kept.value
        minted = await host.mint_token(fresh, write=may_push(fresh, self.policy))
        await self._keep(fresh.conversation_id, minted)
        log.info(
            "minted a %s token for conversation %s (%s)",
            host.name,
            fresh.conversation_id,
            "write" if may_push(fresh, self.policy) else "read",
        )
        return minted.value

    def _kept(self, workspace: Workspace) -> MintedToken | None:
        if workspace.token_ciphertext is not None and self.box.available:
            value = self.box.decrypt(workspace.token_ciphertext)
            return MintedToken(value, workspace.token_expires_at)
        return self._memory.get(workspace.conversation_id)

    async def _keep(self, conversation_id: str, token: MintedToken | None) -> None:
        if token is None:
            self._memory.pop(conversation_id, None)
        elif not self.box.available:
            self._memory[conversation_id] = token
        await update_workspace(
            self.store,
            conversation_id,
            token_ciphertext=self.box.encrypt(token.value)
            if token is not None and self.box.available
            else None,
            token_expires_at=token.expires_at if token is not None else None,
        )

    async def revoke(self, conversation_id: str) -> None:
        """The turn ended: the token it was served dies now (where the host allows)."""
        workspace = await get_workspace(self.store, conversation_id)
        if workspace is None:
            return
        kept = self._kept(workspace)
        host = self.hosts.get(workspace.host)
        if kept is not None and host is not None:
            await host.revoke_token(workspace, kept.value)
            log.info("revoked the %s token of conversation %s", host.name, conversation_id)
        if kept is not None or workspace.token_ciphertext is not None:
            await self._keep(conversation_id, None)


async def turn_in_progress(store: Store, conversation_id: str) -> bool:
    """Whether an ACTIVE callback of the conversation is a turn the agent works on
    (not a follow-up still waiting to send its message)."""
    for callback in await active_callbacks(store, conversation_id):
        try:
            processor = callback.get_processor()
        except (UnknownProcessorKind, ValidationError):  # closed by the runtime; no turn
            continue
        if getattr(processor, "turn_message", None) is None:
            return True
    return False
