"""Conversation callbacks: where the answer of an agent conversation must go.

A callback row holds a serialised processor. Processors are pydantic models that
register their kind here (see processors.base); the row stores that kind, never an
import path, so a row can only ever be turned into one of the registered classes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from db.store import Store, now

# The idempotency key of a callback's one reply job: processors.base queues it, and
# db.retention keeps a callback's processor until that job is done.
REPLY_KEY_PREFIX = "reply:"


def reply_idempotency_key(callback_id: int) -> str:
    return f"{REPLY_KEY_PREFIX}{callback_id}"


class CallbackStatus(StrEnum):
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"


class UnknownProcessorKind(LookupError):
    """A row names a processor kind that this deployment does not know."""


_PROCESSOR_KINDS: dict[str, type[BaseModel]] = {}


def register_processor_kind(kind: str, cls: type[BaseModel]) -> None:
    """Make a processor class loadable from rows of this kind. The composition root
    registers every kind explicitly (relay.platforms); registering a class again
    under its own kind changes nothing."""
    existing = _PROCESSOR_KINDS.get(kind)
    if existing is not None and existing is not cls:
        raise ValueError(f"processor kind {kind!r} is already taken by {existing.__name__}")
    _PROCESSOR_KINDS[kind] = cls


def registered_processor_kinds() -> list[str]:
    return sorted(_PROCESSOR_KINDS)


def processor_kind_of(processor: BaseModel) -> str:
    for kind, cls in _PROCESSOR_KINDS.items():
        if type(processor) is cls:
            return kind
    raise UnknownProcessorKind(f"{type(processor).__name__} is not a registered processor kind")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


class ConversationCallback(BaseModel):
    id: int | None = None
    conversation_id: str
    status: CallbackStatus = CallbackStatus.ACTIVE
    processor_type: str
    # Holds the processor's settings, secrets included: kept out of repr() and logs.
    processor_json: str = Field(repr=False)
    status_reason: str | None = None
    created_at: float
    updated_at: float

    @classmethod
    def for_processor(cls, conversation_id: str, processor: BaseModel) -> ConversationCallback:
        stamp = now()
        callback = cls(
            conversation_id=conversation_id,
            processor_type="",
            processor_json="",
            created_at=stamp,
            updated_at=stamp,
        )
        callback.set_processor(processor)
        return callback

    def get_processor(self) -> Any:
        cls = _PROCESSOR_KINDS.get(self.processor_type)
        if cls is None:
            raise UnknownProcessorKind(
                f"processor kind {self.processor_type!r} is not registered"
                f" (known: {', '.join(registered_processor_kinds()) or 'none'})"
            )
        return cls.model_validate_json(self.processor_json)

    def set_processor(self, processor: BaseModel) -> None:
        self.processor_type = processor_kind_of(processor)
        self.processor_json = processor.model_dump_json()

    def public_view(self) -> dict[str, Any]:
        """What operators and API clients may see: never the processor's settings."""
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "status": self.status.value,
            "status_reason": self.status_reason,
            "processor_type": self.processor_type,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


_COLUMNS = (
    "id, conversation_id, status, processor_type, processor_json, status_reason,"
    " created_at, updated_at"
)


async def insert_callback(store: Store, callback: ConversationCallback) -> ConversationCallback:
    row = await store.fetch_one(
        "INSERT INTO conversation_callbacks (conversation_id, status, processor_type,"
        " processor_json, status_reason, created_at, updated_at) VALUES (:conversation_id,"
        " :status, :processor_type, :processor_json, :status_reason, :created_at, :updated_at)"
        " RETURNING id",
        callback.model_dump(exclude={"id"}, mode="json"),
    )
    assert row is not None
    return callback.model_copy(update={"id": int(row["id"])})


async def get_callback(store: Store, callback_id: int) -> ConversationCallback | None:
    row = await store.fetch_one(
        f"SELECT {_COLUMNS} FROM conversation_callbacks WHERE id = :id", {"id": callback_id}
    )
    return None if row is None else ConversationCallback.model_validate(row)


async def active_callbacks(store: Store, conversation_id: str) -> list[ConversationCallback]:
    rows = await store.fetch_all(
        f"SELECT {_COLUMNS} FROM conversation_callbacks"
        " WHERE conversation_id = :conversation_id AND status = :status ORDER BY id",
        {"conversation_id": conversation_id, "status": CallbackStatus.ACTIVE.value},
    )
    return [ConversationCallback.model_validate(row) for row in rows]


async def list_callbacks(
    store: Store,
    *,
    status: CallbackStatus | None = None,
    conversation_id: str | None = None,
    processor_type: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[ConversationCallback]:
    """Newest first. Paging is by id (`before_id`: only older rows), not by offset, so
    rows inserted between two pages neither repeat nor push rows off the next page."""
    conditions: list[str] = []
    values: dict[str, Any] = {"limit": limit}
    if status is not None:
        conditions.append("status = :status")
        values["status"] = status.value
    if conversation_id is not None:
        conditions.append("conversation_id = :conversation_id")
        values["conversation_id"] = conversation_id
    if processor_type is not None:
        conditions.append("processor_type = :processor_type")
        values["processor_type"] = processor_type
    if before_id is not None:
        conditions.append("id < :before_id")
        values["before_id"] = before_id
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = await store.fetch_all(
        f"SELECT {_COLUMNS} FROM conversation_callbacks{where} ORDER BY id DESC LIMIT :limit",
        values,
    )
    return [ConversationCallback.model_validate(row) for row in rows]


async def save_callback(store: Store, callback: ConversationCallback) -> ConversationCallback:
    """Write back status, processor state and reason; `updated_at` moves to now."""
    assert callback.id is not None, "save_callback needs a stored callback"
    updated = callback.model_copy(update={"updated_at": now()})
    await store.execute(
        "UPDATE conversation_callbacks SET status = :status, processor_type = :processor_type,"
        " processor_json = :processor_json, status_reason = :status_reason,"
        " updated_at = :updated_at WHERE id = :id",
        updated.model_dump(
            include={
                "id",
                "status",
                "processor_type",
                "processor_json",
                "status_reason",
                "updated_at",
            },
            mode="json",
        ),
    )
    return updated
