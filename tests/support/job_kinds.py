"""Job kinds of any name, for tests of the queue and the worker themselves: their
payload takes whatever fields a test gives it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from db.job_kinds import JobKind


class AnyPayload(BaseModel):
    model_config = ConfigDict(extra="allow")


def kind_named(name: str) -> JobKind[AnyPayload]:
    return JobKind(name, AnyPayload)
