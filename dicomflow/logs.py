"""Structured JSON logs for Cloud Logging. Library code logs through ``logging.getLogger(__name__)`` and
passes context (batch id, operation, object path, counts) in ``extra={"fields": {...}}``; only entry points
call ``configure``. Never log tag values or raw event payloads.

Object names can be patient data (senders name folders after the patient). With ``ObjectNames(hashed=True,
key=...)`` names are hashed as whole values (HMAC-SHA256, 16 hex digits), never found by guessing where a
name ends in a text (names hold spaces, newlines, quotes, any Unicode):

- a field that holds a name (``object``, ``name``, ``uri``, ``folder``, ...) is replaced whole by its hash;
- every other text of the line (the message, ``error``, ``reason``, third-party messages) gets each name the
  line's fields carry replaced by that same hash, wherever and however it appears (bare, URL-quoted, in a
  ``gs://`` URI);
- what is still left after a ``gs://`` that is not a bucket or a hashed name, or after the host of an
  ``http(s)://`` URL, is hashed to the end of that text: a name nobody passed as a field cannot be bounded,
  so it is never shown in part.

The same name always gives the same hash, so lines of one file still correlate, and whoever holds the key
can check a given name. Callers pass names as fields (``fields(object=name, ...)``) so that the texts next
to them stay readable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

_LABELS = ("batch_id", "operation", "bucket")
_OBJECT_FIELDS = frozenset({"object", "name", "uri", "manifest_uri", "staged", "folder", "prefix", "resumed_after"})
_HASH = r"h:[0-9a-f]{16}"
# Where a URI may start inside a text, and the URI forms that show no name: a bare bucket, or a bucket and a
# name already hashed.
_URI_START = re.compile(r"gs://|https?://")
_SAFE_URI = re.compile(rf"(?:gs://[a-z0-9._\-]*+(?:/{_HASH})?|https?://[A-Za-z0-9.\-:]*+)(?![\w/\-~%])")
_URL_HOST = re.compile(r"https?://[A-Za-z0-9.\-:]*")


@dataclass(frozen=True)
class ObjectNames:
    """How log lines show object names: as they are, or as keyed hashes."""

    hashed: bool = False
    key: bytes = b""

    @classmethod
    def policy(cls, log_object_names: str, key: str) -> ObjectNames:
        """The names policy of the settings ``LOG_OBJECT_NAMES`` and ``LOG_HASH_KEY``."""
        return cls(log_object_names == "hashed", key.encode())

    def show(self, name: str) -> str:
        if not self.hashed:
            return name
        return "h:" + hmac.new(self.key, name.encode(), hashlib.sha256).hexdigest()[:16]

    def scrub(self, text: str, known: Iterable[str] = ()) -> str:
        """``text`` with each of the ``known`` names in it shown as ``show`` would, then anything that could
        still be a name (after a ``gs://`` or a URL's host) hashed to the end of the text."""
        if not self.hashed:
            return text
        forms = {form: name for name in known if name for form in _forms(name)}
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, self.show(forms[form]))
        return self._unbounded(text)

    def _unbounded(self, text: str) -> str:
        position = 0
        while (start := _URI_START.search(text, position)) is not None:
            safe = _SAFE_URI.match(text, start.start())
            if safe is not None:
                position = safe.end()
                continue
            head = _URL_HOST.match(text, start.start())
            cut = head.end() if head is not None else start.start()
            return text[:cut] + ("/" if head is not None else "") + self.show(text[cut:])
        return text

    def fields(self, values: dict[str, Any], message: str = "") -> tuple[dict[str, Any], str]:
        """``values`` with every name field hashed whole and every other text scrubbed of those names; and the
        ``message`` scrubbed the same way."""
        if not self.hashed:
            return values, message
        known = [name for key in _OBJECT_FIELDS for name in _strings(values.get(key))]
        shown = {key: self._value(key, value, known) for key, value in values.items()}
        return shown, self.scrub(message, known)

    def _value(self, key: str, value: Any, known: list[str]) -> Any:
        if isinstance(value, str):
            return self.show(value) if key in _OBJECT_FIELDS else self.scrub(value, known)
        if isinstance(value, dict):
            return {str(k): self._value(str(k), v, known) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._value(key, item, known) for item in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.scrub(str(value), known)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple | set | frozenset):
        return [item for item in value if isinstance(item, str)]
    return []


def _forms(name: str) -> set[str]:
    """The ways a name shows up in a text: itself, and URL-quoted as a path or as one path segment."""
    return {name, quote(name), quote(name, safe="")}


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
        fields, message = self._names.fields(dict(getattr(record, "fields", {}) or {}), record.getMessage())
        labels = {"component": self._component, **{k: str(fields[k]) for k in _LABELS if k in fields}}
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": message,
            "logger": record.name,
            "logging.googleapis.com/labels": labels,
            **fields,
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


class OperatorFormatter(logging.Formatter):
    """``LEVEL logger: message`` lines for a terminal (the CLI, the backfill job), object names shown by the
    same policy as the functions' JSON lines."""

    def __init__(self, names: ObjectNames | None = None) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self._names = names or ObjectNames()

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        _, message = self._names.fields(dict(getattr(record, "fields", {}) or {}), record.message)
        return f"{record.levelname} {record.name}: {message}"

    def formatException(self, ei: Any) -> str:  # noqa: N802
        """Only the type: a traceback's texts are not fields and may hold names."""
        return f"{ei[0].__name__}" if self._names.hashed and ei[0] is not None else super().formatException(ei)


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
