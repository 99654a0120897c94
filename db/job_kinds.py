"""What a job is: its row, its kinds (each with the pydantic model of its payload), and
the errors a handler raises to say whether trying again can help. The queue that
stores and leases them is db/jobs.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


# What a worker calls for each claimed job of a kind.
JobHandler = Callable[["Job"], Coroutine[Any, Any, None]]


class RetryableJobError(Exception):
    """The job may succeed later: a 5xx, a timeout, a rate limit."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentJobError(Exception):
    """Trying again cannot help: the job is failed at once and kept for inspection."""


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    payload: dict[str, Any]
    job_key: str | None
    status: JobStatus
    attempts: int
    max_attempts: int
    run_after: float
    lease_token: str | None
    lease_until: float | None
    last_error: str | None
    idempotency_key: str | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        return cls(
            **{**row, "payload": json.loads(row["payload"]), "status": JobStatus(row["status"])}
        )


@dataclass(frozen=True)
class VerbatimJson:
    """A JSON document as it arrived, already parsed and checked by the caller: a job
    payload value stored as this text instead of the parsed document encoded again.

    A GitHub webhook's body is 5-25 KB; encoding it again was about a tenth of the
    CPU its acknowledgement cost, to store what the body already says."""

    text: str

    @classmethod
    def of_body(cls, body: bytes, content_type: str | None) -> VerbatimJson | None:
        """A request body the webhook libraries decoded as UTF-8 JSON (None for any
        other media type or charset, whose bytes are not the document's JSON text)."""
        media_type, _, parameters = (content_type or "").partition(";")
        if media_type.strip().lower() != "application/json":
            return None
        name, _, charset = parameters.strip().partition("=")
        if parameters.strip() and (
            name.strip().lower() != "charset"
            or charset.strip().strip('"').lower() not in ("utf-8", "utf8")
        ):
            return None
        try:
            return cls(body.decode("utf-8"))
        except UnicodeDecodeError:
            return None


def json_object(document: dict[str, Any] | VerbatimJson) -> dict[str, Any]:
    """The JSON object of a payload field that may be queued as received: a handler
    reads it back parsed; the VerbatimJson only ever exists on the way in."""
    if isinstance(document, dict):
        return document
    parsed = json.loads(document.text)
    if not isinstance(parsed, dict):
        raise ValueError("the verbatim document is not a JSON object")
    return parsed


P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class JobKind(Generic[P]):
    """A kind of job and the model of its payload, declared together so that the
    code that queues such jobs and the handler that runs them agree on one shape.

    Stored payloads outlive a release: a job queued by the previous version runs
    in the next one. So a model keeps its field names, and a field it gains is
    optional (rows queued before lack it)."""

    name: str
    payload: type[P]

    def payload_of(self, job: Job) -> P:
        """`job`'s payload, validated. One that does not fit the model fails the job
        for good (no attempt could make it fit) with an error naming the kind."""
        if job.kind != self.name:
            raise PermanentJobError(f"job {job.id} is a {job.kind!r} job, not {self.name!r}")
        try:
            return self.payload.model_validate(job.payload)
        except ValidationError as exc:
            # Without the ValidationError's own text, which quotes the input.
            raise PermanentJobError(
                f"{self.name} job {job.id}: its payload does not load: {_problems(exc)}"
            ) from None

    def encode(self, payload: P) -> str:
        """`payload` as its job stores it, which must be of exactly this kind's model.

        Only the fields the caller set are stored: one left at its default reads
        back as that default, and every job keeps the shape it had before these
        models (a start job queued by the API has no `platform`, say). A VerbatimJson
        field is stored as its text."""
        if type(payload) is not self.payload:
            raise TypeError(
                f"{self.name} jobs take a {self.payload.__name__} payload,"
                f" not {type(payload).__name__}"
            )
        verbatim = {name: value for name, value in payload if isinstance(value, VerbatimJson)}
        unset = type(payload).model_fields.keys() - payload.model_fields_set
        # Serialised once, by pydantic-core: dumping to Python values and then through
        # json.dumps cost twice as much CPU per webhook (bench/RESULTS.md, 2026-12-03).
        encoded = payload.model_dump_json(exclude=unset | verbatim.keys())
        return _with_verbatim(encoded, verbatim)


def _problems(exc: ValidationError) -> str:
    """Where and how a payload fails its model, without the values it holds."""
    return "; ".join(
        f"{'.'.join(map(str, error['loc'])) or 'payload'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    )


def encode_payload(payload: Mapping[str, Any]) -> str:
    """A job's payload as stored: JSON, with each VerbatimJson member's text in place.

    By hand because the json module can write no pre-encoded text into a document."""
    verbatim = {key: value for key, value in payload.items() if isinstance(value, VerbatimJson)}
    encoded = json.dumps({key: value for key, value in payload.items() if key not in verbatim})
    return _with_verbatim(encoded, verbatim)


def _with_verbatim(encoded: str, verbatim: Mapping[str, VerbatimJson]) -> str:
    """`encoded` (a JSON object) with each VerbatimJson member's text added in place."""
    if not verbatim:
        return encoded
    inner = encoded.strip()[1:-1].strip()
    members = [inner] if inner else []
    members += [f"{json.dumps(key)}: {value.text}" for key, value in verbatim.items()]
    return "{" + ", ".join(members) + "}"
