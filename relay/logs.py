"""Logging set-up: plain text for people, JSON lines for log pipelines.

Both formats carry the ids bound in db.logcontext (delivery, job, kind,
conversation, callback): text appends them as ` delivery=… job=…`, JSON gives each
its own key. One `grep <delivery id>` then follows a mention from its webhook to its
reply.
"""

from __future__ import annotations

import json
import logging
import sys

from db.logcontext import FIELDS, log_ids

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _text_value(value: str) -> str:
    # Ids never hold spaces; anything else that does is quoted, so a line stays one
    # `key=value` list that tools can split.
    return value if value and value.isprintable() and " " not in value else json.dumps(value)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        ids = log_ids()
        if not ids:
            return line
        suffix = " ".join(f"{name}={_text_value(ids[name])}" for name in FIELDS if name in ids)
        # Before a traceback, which logging appends after the message.
        return f"{line} {suffix}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(log_ids())
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; a receiver URL may carry a token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Their DEBUG output carries secrets: slack_sdk logs Web API response bodies (an
    # OAuth install's bot token among them). asyncpg is held with them in case a
    # version logs statement parameters (stored processor settings). Even
    # LOG_LEVEL=DEBUG keeps them at INFO or above.
    for noisy in ("slack_sdk", "slack_bolt", "asyncpg"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
