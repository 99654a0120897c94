"""The ids that tie one mention's log lines together, carried in a context variable.

A webhook handler knows the platform's delivery id, a worker the job it runs, a
mention job the conversation and callback it records. Each binds what it knows once;
the log formatters (relay.logs) append the ids to every line logged later in the same
task, library code's lines included. asyncio copies the context into each task it
creates, so what a job binds stays in that job's task.

It lives in db/, the room every other room may import.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token

# The ids, in the order a text line shows them.
FIELDS = ("delivery", "job", "kind", "conversation", "callback")

_EMPTY: Mapping[str, str] = {}
# Never changed in place: binding sets a new mapping, so a copied context keeps its own.
_ids: ContextVar[Mapping[str, str]] = ContextVar("agent_relay_log_ids", default=_EMPTY)


def log_ids() -> Mapping[str, str]:
    """The ids bound in the current context (empty when none are)."""
    return _ids.get()


def bind(
    *,
    delivery: object = None,
    job: object = None,
    kind: object = None,
    conversation: object = None,
    callback: object = None,
) -> Token[Mapping[str, str]]:
    """Add ids to the current context (None leaves an id as it was); returns the token
    that restores the ids from before."""
    given = {
        "delivery": delivery,
        "job": job,
        "kind": kind,
        "conversation": conversation,
        "callback": callback,
    }
    added = {name: str(value) for name, value in given.items() if value is not None}
    return _ids.set({**_ids.get(), **added} if added else _ids.get())


@contextlib.contextmanager
def log_context(
    *,
    delivery: object = None,
    job: object = None,
    kind: object = None,
    conversation: object = None,
    callback: object = None,
) -> Iterator[None]:
    """Bind ids for the block; on leaving it, the ids bound before it come back (also
    those that `bind` added inside the block are dropped)."""
    token = bind(
        delivery=delivery, job=job, kind=kind, conversation=conversation, callback=callback
    )
    try:
        yield
    finally:
        _ids.reset(token)
