"""Total parsing of untrusted JSON: the one place every message, event and state object the pipeline reads back
is loaded and its fields type- and range-checked.

Anything that is not what the schema says -- wrong types, ``1e400``, a number with 10,000 digits, deep nesting,
an object where a string belongs, a huge string, binary garbage -- becomes one ``MalformedEventError`` that
names the field (and what was expected), never the value. ``guarded`` is the safety net around a whole parse:
whatever a parser still raises becomes the same error, so no input can take a handler down.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dicomflow.errors import MalformedEventError

MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # Pub/Sub's own limit on a message
MAX_STATE_BYTES = 512 * 1024 * 1024  # a ledger object (a manifest of MAX_BATCH_FILES records)
MAX_DEPTH = 32  # our schemas nest at most 6 levels (an operation's error details)
MAX_TEXT = 4096
MAX_NAME_BYTES = 1024  # Cloud Storage's limit on an object name (UTF-8)
GENERATION = re.compile(r"[0-9]{1,20}")
BUCKET = re.compile(r"[a-z0-9][a-z0-9._\-]{1,220}[a-z0-9]")
UID = re.compile(r"[0-9][0-9.]{0,63}")
OPERATION = re.compile(
    r"projects/[^/\s]{1,256}/locations/[^/\s]{1,256}/datasets/[^/\s]{1,256}/operations/[^/\s]{1,256}"
)


def load_json(data: bytes | str, what: str, *, max_bytes: int = MAX_MESSAGE_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """``data`` as JSON, at most ``max_bytes`` long and ``max_depth`` deep.

    The depth is measured on the text before any parser sees it: ``json.loads`` recurses once per level, and a
    message of a few hundred thousand brackets would otherwise reach the interpreter's recursion limit, where
    any finalizer the garbage collector runs at that moment fails too (an "unraisable" error in another frame).
    """
    if not isinstance(data, (bytes, bytearray, str)):
        raise MalformedEventError(f"{what} is not text")
    if len(data) > max_bytes:
        raise MalformedEventError(f"{what} is larger than {max_bytes} bytes")
    try:
        text = data if isinstance(data, str) else bytes(data).decode(json.detect_encoding(data), "surrogatepass")
    except UnicodeDecodeError:
        raise MalformedEventError(f"{what} is not JSON") from None
    _check_nesting(text, what, max_depth)
    try:
        return json.loads(text, parse_int=_bounded_int)
    except ValueError:  # JSONDecodeError, and integers of more digits than int() takes
        raise MalformedEventError(f"{what} is not JSON") from None


_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\Z)', re.DOTALL)  # an unterminated one runs to the end
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_INNERMOST_PAIR = re.compile(r"\[\]|\{\}")


def _check_nesting(text: str, what: str, max_depth: int) -> None:
    """Refuse ``text`` whose brackets (outside strings) nest deeper than ``max_depth`` or do not pair up.

    Each pass removes the innermost pairs, so balanced brackets of depth d are gone after d passes; what is left
    once no pair remains cannot be JSON. Linear in the text per pass, at most ``max_depth + 1`` passes.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(max_depth):
        if not brackets:
            return
        fewer = _INNERMOST_PAIR.sub("", brackets)
        if fewer == brackets:
            raise MalformedEventError(f"{what} is not JSON")
        brackets = fewer
    if not brackets:
        return
    if _INNERMOST_PAIR.search(brackets):
        raise MalformedEventError(f"{what} nests deeper than {max_depth} levels")
    raise MalformedEventError(f"{what} is not JSON")


def _bounded_int(digits: str) -> int | float:
    """A JSON integer; one longer than any field allows reads as infinity, so its field's check names it."""
    return int(digits) if len(digits) <= 64 else float("inf")


def load_object(data: bytes | str, what: str, *, max_bytes: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    body = load_json(data, what, max_bytes=max_bytes)
    if not isinstance(body, dict):
        raise MalformedEventError(f"{what} is not a JSON object")
    return body


@contextmanager
def guarded(what: str) -> Iterator[None]:
    """Whatever the block raises becomes a MalformedEventError about ``what`` (naming the error type only)."""
    try:
        yield
    except MalformedEventError:
        raise
    except Exception as exc:
        raise MalformedEventError(f"{what} cannot be parsed ({type(exc).__name__})") from None


def obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedEventError(f"{what} is not a JSON object")
    return value


def items(body: Mapping[str, Any], key: str, what: str, *, max_items: int = 10_000_000) -> list[Any]:
    """A list field (missing: empty)."""
    value = body.get(key, [])
    if not isinstance(value, list):
        raise MalformedEventError(f"{what} field '{key}' is not a list")
    if len(value) > max_items:
        raise MalformedEventError(f"{what} field '{key}' has more than {max_items} items")
    return value


def text(
    body: Mapping[str, Any], key: str, what: str, *, max_chars: int = MAX_TEXT, pattern: re.Pattern[str] | None = None
) -> str:
    """A required string field, at most ``max_chars`` long, matching ``pattern`` in full when given."""
    if key not in body or body[key] is None:
        raise MalformedEventError(f"{what} lacks field '{key}'")
    return _text(body[key], key, what, max_chars, pattern)


def optional_text(
    body: Mapping[str, Any], key: str, what: str, *, max_chars: int = MAX_TEXT, pattern: re.Pattern[str] | None = None
) -> str | None:
    value = body.get(key)
    return None if value is None else _text(value, key, what, max_chars, pattern)


def _text(value: Any, key: str, what: str, max_chars: int, pattern: re.Pattern[str] | None) -> str:
    if not isinstance(value, str):
        raise MalformedEventError(f"{what} field '{key}' is not a string")
    if len(value) > max_chars:
        raise MalformedEventError(f"{what} field '{key}' is longer than {max_chars} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
        raise MalformedEventError(f"{what} field '{key}' is not valid UTF-8") from None
    if pattern is not None and not pattern.fullmatch(value):
        raise MalformedEventError(f"{what} field '{key}' is not {_EXPECTED.get(pattern, 'well formed')}")
    return value


_EXPECTED = {
    GENERATION: "a generation number",
    BUCKET: "a bucket name",
    UID: "a DICOM UID",
    OPERATION: "an operation name (projects/P/locations/L/datasets/D/operations/ID)",
}


def object_name(body: Mapping[str, Any], key: str, what: str) -> str:
    """A Cloud Storage object name: 1-1024 bytes of UTF-8, no carriage return or line feed."""
    name = text(body, key, what, max_chars=MAX_NAME_BYTES)
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \\ud800 escape
        raise MalformedEventError(f"{what} field '{key}' is not valid UTF-8") from None
    if not encoded or len(encoded) > MAX_NAME_BYTES or "\r" in name or "\n" in name:
        raise MalformedEventError(f"{what} field '{key}' is not an object name")
    return name


def integer(
    body: Mapping[str, Any], key: str, what: str, *, minimum: int, maximum: int, default: int | None = None
) -> int:
    """An integer field (a JSON integer, or a string of decimal digits as the APIs write int64) in range."""
    if key not in body or body[key] is None:
        if default is None:
            raise MalformedEventError(f"{what} lacks field '{key}'")
        return default
    raw = body[key]
    if isinstance(raw, str) and re.fullmatch(r"-?[0-9]{1,20}", raw):
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise MalformedEventError(f"{what} field '{key}' is not an integer")
    value: int = raw
    if not minimum <= value <= maximum:
        raise MalformedEventError(f"{what} field '{key}' is out of range ({minimum} to {maximum})")
    return value


def flag(body: Mapping[str, Any], key: str) -> bool:
    """A boolean field that counts only when it is JSON ``true``."""
    return body.get(key) is True
