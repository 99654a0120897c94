"""Conversation callbacks on real SQLite and real PostgreSQL (every test runs on both)."""

from __future__ import annotations

import builtins
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pydantic import BaseModel

from db.callbacks import (
    CallbackStatus,
    ConversationCallback,
    UnknownProcessorKind,
    active_callbacks,
    get_callback,
    insert_callback,
    list_callbacks,
    register_processor_kind,
    registered_processor_kinds,
    save_callback,
)
from db.store import Store, now

ECHO_KIND = "test-echo"
SECRET = "s3cret-signing-key"


class EchoProcessor(BaseModel):
    """A stand-in processor: settings that must round-trip and must never be shown."""

    reply_to: str
    secret: str = SECRET
    sent: int = 0


register_processor_kind(ECHO_KIND, EchoProcessor)


class UnregisteredProcessor(BaseModel):
    note: str = "not registered"


def an_hour_ago() -> float:
    return now() - 3600


def echo_callback(conversation_id: str = "conv-1", reply_to: str = "C123") -> ConversationCallback:
    """A callback whose timestamps lie in the past, so that changes to them are visible."""
    stamp = an_hour_ago()
    callback = ConversationCallback.for_processor(conversation_id, EchoProcessor(reply_to=reply_to))
    return callback.model_copy(update={"created_at": stamp, "updated_at": stamp})


def raw_callback(processor_type: str, processor_json: str = "{}") -> ConversationCallback:
    stamp = an_hour_ago()
    return ConversationCallback(
        conversation_id="conv-1",
        processor_type=processor_type,
        processor_json=processor_json,
        created_at=stamp,
        updated_at=stamp,
    )


# --- storage ----------------------------------------------------------------------------


async def test_insert_then_get_round_trips_every_field(store: Store) -> None:
    callback = echo_callback()

    inserted = await insert_callback(store, callback)

    assert inserted.id is not None
    assert inserted.model_dump(exclude={"id"}) == callback.model_dump(exclude={"id"})
    assert await get_callback(store, inserted.id) == inserted


async def test_get_callback_of_an_unknown_id_returns_none(store: Store) -> None:
    assert await get_callback(store, 12345) is None


async def test_save_callback_moves_updated_at_and_keeps_created_at(store: Store) -> None:
    inserted = await insert_callback(store, echo_callback())
    assert inserted.id is not None
    inserted.set_processor(EchoProcessor(reply_to="C123", sent=1))
    changed = inserted.model_copy(
        update={"status": CallbackStatus.COMPLETED, "status_reason": "replied"}
    )

    before = now()
    saved = await save_callback(store, changed)

    assert saved.updated_at >= before > inserted.updated_at
    assert saved.created_at == inserted.created_at
    stored = await get_callback(store, inserted.id)
    assert stored == saved
    assert stored.status is CallbackStatus.COMPLETED
    assert stored.status_reason == "replied"
    assert stored.get_processor() == EchoProcessor(reply_to="C123", sent=1)


async def test_active_callbacks_lists_only_active_ones_of_that_conversation(
    store: Store,
) -> None:
    first = await insert_callback(store, echo_callback("conv-a", "C1"))
    finished = await insert_callback(store, echo_callback("conv-a", "C2"))
    second = await insert_callback(store, echo_callback("conv-a", "C3"))
    await insert_callback(store, echo_callback("conv-b", "C4"))
    await save_callback(store, finished.model_copy(update={"status": CallbackStatus.COMPLETED}))

    active = await active_callbacks(store, "conv-a")

    assert [callback.id for callback in active] == [first.id, second.id]
    assert all(callback.status is CallbackStatus.ACTIVE for callback in active)
    assert await active_callbacks(store, "conv-unknown") == []


async def test_list_callbacks_returns_newest_first_and_filters_by_status(store: Store) -> None:
    first = await insert_callback(store, echo_callback("conv-a"))
    second = await insert_callback(store, echo_callback("conv-b"))
    await save_callback(store, second.model_copy(update={"status": CallbackStatus.ERROR}))

    assert [c.id for c in await list_callbacks(store)] == [second.id, first.id]
    assert [c.id for c in await list_callbacks(store, limit=1)] == [second.id]
    assert [c.id for c in await list_callbacks(store, status=CallbackStatus.ERROR)] == [second.id]


# --- processors ---------------------------------------------------------------------------


async def test_set_processor_and_get_processor_round_trip_through_the_database(
    store: Store,
) -> None:
    callback = echo_callback()
    callback.set_processor(EchoProcessor(reply_to="C999", sent=3))
    assert callback.processor_type == ECHO_KIND

    inserted = await insert_callback(store, callback)
    assert inserted.id is not None
    stored = await get_callback(store, inserted.id)

    assert stored is not None
    assert stored.processor_type == ECHO_KIND
    processor = stored.get_processor()
    assert isinstance(processor, EchoProcessor)
    assert processor == EchoProcessor(reply_to="C999", sent=3)


def test_set_processor_of_an_unregistered_class_is_refused() -> None:
    callback = echo_callback()

    with pytest.raises(UnknownProcessorKind, match="UnregisteredProcessor"):
        callback.set_processor(UnregisteredProcessor())

    assert callback.processor_type == ECHO_KIND


def test_a_registered_kind_cannot_be_taken_by_another_class() -> None:
    with pytest.raises(ValueError, match=ECHO_KIND):
        register_processor_kind(ECHO_KIND, UnregisteredProcessor)

    assert ECHO_KIND in registered_processor_kinds()
    assert echo_callback().get_processor() == EchoProcessor(reply_to="C123")


@contextmanager
def recording_imports() -> Iterator[list[str]]:
    """Record every module import (statement or importlib) made inside the block."""
    imported: list[str] = []
    real_import = builtins.__import__
    real_import_module = importlib.import_module

    def recording_import(name: str, *args: Any, **kwargs: Any) -> Any:
        imported.append(name)
        return real_import(name, *args, **kwargs)

    def recording_import_module(name: str, package: str | None = None) -> Any:
        imported.append(name)
        return real_import_module(name, package)

    builtins.__import__ = recording_import
    importlib.import_module = recording_import_module
    try:
        yield imported
    finally:
        builtins.__import__ = real_import
        importlib.import_module = real_import_module


@pytest.mark.parametrize(
    "processor_type",
    ["os.system", "subprocess.Popen", "tests.db.test_callbacks.EchoProcessor", "no-such-kind"],
)
async def test_an_unknown_processor_kind_raises_a_readable_error_without_importing(
    store: Store, processor_type: str
) -> None:
    inserted = await insert_callback(store, raw_callback(processor_type, '{"command": "id"}'))
    assert inserted.id is not None
    stored = await get_callback(store, inserted.id)
    assert stored is not None

    raised: Exception | None = None
    with recording_imports() as imported:
        try:
            stored.get_processor()
        except Exception as error:  # an import-path loader would raise something else
            raised = error

    assert isinstance(raised, UnknownProcessorKind), f"{processor_type!r} gave {raised!r}"
    assert imported == []
    message = str(raised)
    assert repr(processor_type) in message
    assert "not registered" in message
    assert ECHO_KIND in message  # names the kinds that do exist


# --- public view ---------------------------------------------------------------------------


async def test_public_view_never_shows_the_processor_settings(store: Store) -> None:
    inserted = await insert_callback(store, echo_callback())

    view = inserted.public_view()

    assert "processor_json" not in view
    assert SECRET not in repr(view)
    assert SECRET not in repr(inserted)
    assert view == {
        "id": inserted.id,
        "conversation_id": "conv-1",
        "status": "ACTIVE",
        "status_reason": None,
        "processor_type": ECHO_KIND,
        "created_at": view["created_at"],
        "updated_at": view["updated_at"],
    }
    assert view["created_at"].endswith("+00:00")
