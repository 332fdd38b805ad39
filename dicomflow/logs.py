"""Structured JSON logs for Cloud Logging. Library code logs through ``logging.getLogger(__name__)`` and
passes context (batch id, operation, object path, counts) in ``extra={"fields": {...}}``; only entry points
call ``configure``. Never log tag values or raw event payloads.

Object names can be patient data (senders name folders after the patient). With ``ObjectNames(hashed=True,
key=...)`` every object name a log line carries — the fields that hold one, and every ``gs://`` URI inside
any text — is replaced by a keyed hash (HMAC-SHA256, 16 hex digits): the same name always gives the same
hash, so lines of one file still correlate, and whoever holds the key can check a given name.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import sys
from dataclasses import dataclass
from typing import Any

_LABELS = ("batch_id", "operation", "bucket")
_OBJECT_FIELDS = frozenset({"object", "name", "uri", "manifest_uri", "staged", "folder"})
_GCS_URI = re.compile(r"gs://[^\s'\"]+")


@dataclass(frozen=True)
class ObjectNames:
    """How log lines show object names: as they are, or as keyed hashes."""

    hashed: bool = False
    key: bytes = b""

    def show(self, name: str) -> str:
        if not self.hashed:
            return name
        return "h:" + hmac.new(self.key, name.encode(), hashlib.sha256).hexdigest()[:16]

    def scrub(self, text: str) -> str:
        """``text`` with every gs:// URI in it shown as ``show`` would."""
        return _GCS_URI.sub(lambda match: self.show(match.group(0)), text) if self.hashed else text

    def fields(self, values: dict[str, Any]) -> dict[str, Any]:
        if not self.hashed:
            return values
        return {
            key: self.show(value) if key in _OBJECT_FIELDS and isinstance(value, str)
            else self.scrub(value) if isinstance(value, str) else value
            for key, value in values.items()
        }  # fmt: skip


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

    def __init__(self, component: str, names: ObjectNames | None = None) -> None:
        super().__init__()
        self._component = component
        self._names = names or ObjectNames()

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = self._names.fields(dict(getattr(record, "fields", {}) or {}))
        labels = {"component": self._component, **{k: str(fields[k]) for k in _LABELS if k in fields}}
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": self._names.scrub(record.getMessage()),
            "logger": record.name,
            "logging.googleapis.com/labels": labels,
            **fields,
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


def configure(
    component: str,
    level: str = "INFO",
    expected: tuple[type[BaseException], ...] = (),
    names: ObjectNames | None = None,
) -> None:
    """Route every log record of this process to stdout as Cloud Logging JSON (idempotent: a second call
    updates the level and the object-name policy); exceptions of the ``expected`` types (raised to request a
    redelivery) are logged at INFO without a traceback."""
    root = logging.getLogger()
    for existing in root.handlers:
        if isinstance(existing.formatter, CloudLoggingFormatter):
            existing.setFormatter(CloudLoggingFormatter(component, names))
            if isinstance(existing, logging.StreamHandler) and existing.stream is not sys.stdout:
                existing.stream = sys.stdout  # replaced since (a test's capture); the old one may be closed
            root.setLevel(level)
            return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter(component, names))
    if expected:
        handler.addFilter(ExpectedRetryFilter(expected))
    root.handlers = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "google", "googleapiclient", "grpc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a log call: ``log.info("...", extra=fields(batch_id=b, files=3))``."""
    return {"fields": values}
