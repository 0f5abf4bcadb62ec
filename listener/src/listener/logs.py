"""The listener's log lines: one JSON object per line (or plain text), with every secret scrubbed.

    {"time": "2026-11-28T06:41:48.120Z", "level": "INFO", "logger": "listener.service",
     "message": "cycle: applied 5f0c...", "deployment_id": "5f0c...", "revision_id": "9a1e..."}

Ids travel as fields, not only in the text: pass `extra=ids(deployment_id, revision_id)` to a log
call. Whatever a line contains -- a message, its arguments, an exception's text and traceback --
every registered secret value (the API key) is replaced by `<redacted>` before it is written, so a
secret echoed by a library or an upstream error cannot reach the logs.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

REDACTED = "<redacted>"
FIELDS = ("deployment_id", "revision_id", "namespace")
"""Extra fields a log call may carry (`extra={...}`); they become JSON keys."""

QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2")
"""One line per HTTP request drowns what the listener decided; these log at WARNING and above."""


def ids(deployment_id: str | None = None, revision_id: str | None = None) -> dict[str, str]:
    """`extra=` for a log call about one deployment (and revision)."""
    fields = {"deployment_id": deployment_id, "revision_id": revision_id}
    return {key: value for key, value in fields.items() if value}


class _Scrubbing(logging.Formatter):
    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class JsonFormatter(_Scrubbing):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": self.scrub(record.getMessage()),
        }
        for field in FIELDS:
            value = getattr(record, field, None)
            if value:
                line[field] = self.scrub(str(value))
        if record.exc_info:
            line["exception"] = self.scrub(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(_Scrubbing):
    def format(self, record: logging.LogRecord) -> str:
        time = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        fields = "".join(
            f" {field}={getattr(record, field)}" for field in FIELDS if getattr(record, field, None)
        )
        text = f"{time} {record.levelname} {record.name}: {record.getMessage()}{fields}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return self.scrub(text)


def configure(
    *, format: str = "json", level: str = "INFO", secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    """Route every logger to one stderr handler with the chosen format; replaces earlier handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if format == "json" else TextFormatter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
