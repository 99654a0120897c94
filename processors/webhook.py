"""The generic outgoing-webhook processor: POST the answer as signed JSON.

This is how a script or another tool, without Slack or GitHub, gets agent-relay's
answers. The body is signed like GitHub signs its webhooks, under our own header:
X-Relay-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the secret>.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import ClassVar

from pydantic import SecretStr, field_serializer, field_validator

from agent.http import send
from processors.base import Reply, ReplyingProcessor
from processors.context import ProcessorContext
from processors.receiver_guard import RefusedReceiverAddress

SIGNATURE_HEADER = "X-Relay-Signature-256"
DELIVERY_HEADER = "X-Relay-Delivery"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookProcessor(ReplyingProcessor):
    processor_kind: ClassVar[str] = "webhook"
    url: str
    secret: SecretStr

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("url must be an http:// or https:// URL")
        return url

    @field_validator("secret")
    @classmethod
    def _non_empty_secret(cls, secret: SecretStr) -> SecretStr:
        if len(secret.get_secret_value()) < 8:
            raise ValueError("secret must be at least 8 characters")
        return secret

    @field_serializer("secret", when_used="json")
    def _store_secret(self, secret: SecretStr) -> str:
        # The row must keep the real secret to sign with; repr() and logs still
        # show it masked.
        return secret.get_secret_value()

    async def deliver(self, reply: Reply, context: ProcessorContext) -> None:
        body = json.dumps(
            {
                "conversation_id": reply.conversation_id,
                "callback_id": reply.callback_id,
                "status": reply.status.value,
                "summary": reply.summary,
                "url": reply.url,
                "pull_request": reply.pull_request,
            }
        ).encode()
        what = f"webhook receiver of callback {reply.callback_id}"
        try:
            await send(
                # Guarded against private networks unless WEBHOOK_ALLOW_PRIVATE_NETWORKS.
                context.receiver_client(),
                "POST",
                self.url,
                what,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(self.secret.get_secret_value(), body),
                    DELIVERY_HEADER: reply.delivery_id,
                },
            )
        except RefusedReceiverAddress as exc:
            raise RefusedReceiverAddress(f"{what}: {exc}") from None
