"""Logging set-up: plain text for people, JSON lines for log pipelines."""

from __future__ import annotations

import json
import logging
import sys


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
