"""Structured JSON logs for Cloud Logging. Library code logs through ``logging.getLogger(__name__)`` and
passes context (batch id, operation, object path, counts) in ``extra={"fields": {...}}``; only entry points
call ``configure``. Never log tag values or raw event payloads.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_LABELS = ("batch_id", "operation", "bucket")


class ExpectedRetryFilter(logging.Filter):
    """The web framework logs every exception a function raises at ERROR; an operation that is simply not done
    yet (raised on purpose so Pub/Sub redelivers) is not an error: log it at INFO."""

    def __init__(self, expected: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self._expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is not None and issubclass(record.exc_info[0], self._expected):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = f"{record.exc_info[0].__name__}: retry requested", None
            record.exc_info = None
        return True


class CloudLoggingFormatter(logging.Formatter):
    """One JSON object per line with ``severity``, ``message`` and ``logging.googleapis.com/labels``."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self._component = component

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", {}) or {})
        labels = {"component": self._component, **{k: str(fields[k]) for k in _LABELS if k in fields}}
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "logging.googleapis.com/labels": labels,
            **fields,
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


def configure(component: str, level: str = "INFO", expected: tuple[type[BaseException], ...] = ()) -> None:
    """Route every log record of this process to stdout as Cloud Logging JSON (idempotent); exceptions of the
    ``expected`` types (raised to request a redelivery) are logged at INFO without a traceback."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, CloudLoggingFormatter) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter(component))
    if expected:
        handler.addFilter(ExpectedRetryFilter(expected))
    root.handlers = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "google", "googleapiclient", "grpc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a log call: ``log.info("...", extra=fields(batch_id=b, files=3))``."""
    return {"fields": values}
