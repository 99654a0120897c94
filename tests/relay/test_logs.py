"""Log lines carry the ids bound in db.logcontext, in text and in JSON.

The formatters are fed real LogRecords; the worker runs real jobs on SQLite and
PostgreSQL, so a job's lines (its handler's, in the task the worker makes) are seen
with the ids the worker and the handler bound.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from db.job_kinds import Job
from db.jobs import JobQueue
from db.logcontext import bind, log_context, log_ids
from db.store import Store
from relay.logs import JsonFormatter, TextFormatter, configure_logging
from relay.worker import Worker
from tests.support.job_kinds import AnyPayload, kind_named

log = logging.getLogger("tests.relay.test_logs")


def record(message: str, *args: object, exc_info: bool = False) -> logging.LogRecord:
    return logging.LogRecord(
        "bots.slack.inbound",
        logging.INFO,
        __file__,
        1,
        message,
        args,
        sys.exc_info() if exc_info else None,
    )


class Captured(logging.Handler):
    """Keeps each record formatted by both formatters, as it was logged."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text: list[str] = []
        self.json: list[dict[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(TextFormatter().format(record))
        self.json.append(json.loads(JsonFormatter().format(record)))


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured()
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


def test_text_lines_end_with_the_bound_ids_in_a_fixed_order() -> None:
    with log_context(conversation="c0ffee", delivery="Ev123"):
        bind(callback=7, job=42, kind="slack.event")
        line = TextFormatter().format(record("slack event %s queued", "Ev123"))

    assert line.endswith(
        "INFO bots.slack.inbound: slack event Ev123 queued"
        " delivery=Ev123 job=42 kind=slack.event conversation=c0ffee callback=7"
    )


def test_json_lines_give_each_id_its_own_key() -> None:
    with log_context(delivery="Ev123", job=42, conversation="c0ffee", callback=7):
        entry = json.loads(JsonFormatter().format(record("reply of callback %s delivered", 7)))

    assert entry["message"] == "reply of callback 7 delivered"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "bots.slack.inbound"
    assert {k: entry[k] for k in ("delivery", "job", "conversation", "callback")} == {
        "delivery": "Ev123",
        "job": "42",
        "conversation": "c0ffee",
        "callback": "7",
    }
    assert "kind" not in entry


def test_lines_without_ids_are_as_before() -> None:
    assert log_ids() == {}
    line = TextFormatter().format(record("worker %s started", "w1"))
    entry = json.loads(JsonFormatter().format(record("worker %s started", "w1")))

    assert line.endswith("INFO bots.slack.inbound: worker w1 started")
    assert set(entry) == {"time", "level", "logger", "message"}


def test_the_ids_come_before_a_traceback() -> None:
    with log_context(delivery="Ev9"):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            text = TextFormatter().format(record("job failed", exc_info=True))
            entry = json.loads(JsonFormatter().format(record("job failed", exc_info=True)))

    first_line, _, rest = text.partition("\n")
    assert first_line.endswith("job failed delivery=Ev9")
    assert rest.startswith("Traceback") and "RuntimeError: boom" in rest
    assert entry["delivery"] == "Ev9" and "RuntimeError: boom" in entry["exception"]


def test_an_odd_id_is_quoted_in_text_so_the_line_stays_one_list_of_pairs() -> None:
    with log_context(delivery="has space"):
        line = TextFormatter().format(record("x"))

    assert line.endswith('x delivery="has space"')


def test_a_context_block_restores_the_ids_it_found() -> None:
    with log_context(delivery="Ev1"):
        with log_context(job=5):
            bind(conversation="c1")
            assert log_ids() == {"delivery": "Ev1", "job": "5", "conversation": "c1"}
        assert log_ids() == {"delivery": "Ev1"}
    assert log_ids() == {}


async def test_ids_bound_in_one_task_stay_out_of_others() -> None:
    async def job(delivery: str) -> dict[str, str]:
        bind(delivery=delivery)
        await asyncio.sleep(0)
        return dict(log_ids())

    with log_context(job=1):
        first, second = await asyncio.gather(job("Ev1"), job("Ev2"))
        assert log_ids() == {"job": "1"}

    assert first == {"job": "1", "delivery": "Ev1"}
    assert second == {"job": "1", "delivery": "Ev2"}


async def test_a_job_s_lines_carry_its_id_and_kind_and_what_its_handler_bound(
    store: Store, captured: Captured
) -> None:
    queue = JobQueue(store)

    async def handler(job: Job) -> None:
        log.info("looking at the event")
        bind(delivery=job.payload["event_id"], conversation="c0ffee")
        log.info("conversation started")

    job_id = await queue.enqueue(kind_named("slack.event"), AnyPayload(event_id="EvABC"))
    job = await queue.claim()
    assert job is not None and job.id == job_id

    await Worker(queue, {"slack.event": handler}, listen=False).run_job(job)

    assert captured.text[0].endswith(f"looking at the event job={job_id} kind=slack.event")
    assert captured.text[1].endswith(
        f"conversation started delivery=EvABC job={job_id} kind=slack.event conversation=c0ffee"
    )
    assert captured.json[1]["delivery"] == "EvABC"
    assert captured.json[1]["job"] == str(job_id)
    # Nothing stays bound once the job is done.
    assert log_ids() == {}


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_configure_logging_puts_the_ids_on_every_logger_s_lines(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    touched = [
        logging.getLogger(name) for name in ("", "httpx", "slack_sdk", "slack_bolt", "asyncpg")
    ]
    saved = [(logger, logger.handlers[:], logger.level) for logger in touched]
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    try:
        configure_logging("INFO", fmt)
        with log_context(delivery="EvLIB"):
            # A library's logger, which knows nothing of agent-relay.
            logging.getLogger("some.library").info("retrying")
    finally:
        for logger, handlers, level in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)

    line = stream.getvalue().strip()
    if fmt == "json":
        assert json.loads(line)["delivery"] == "EvLIB"
    else:
        assert line.endswith("some.library: retrying delivery=EvLIB")
