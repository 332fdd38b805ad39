"""The parsers of settings' values and ``setting``, the declaration of one field of ``Settings``: each parser
turns the raw environment string into the typed value or raises ValueError saying what was expected."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
_STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, the attribute it fills, its default (None = required), its parser."""

    env: str
    attribute: str
    default: str | None
    description: str
    parse: Callable[[str], Any]


def parse_pattern(regex: re.Pattern[str], expected: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not regex.match(raw):
            raise ValueError(f"expected {expected}")
        return raw

    return parse


def parse_list(item: Callable[[str], Any], *, allow_empty: bool = True) -> Callable[[str], tuple[Any, ...]]:
    def parse(raw: str) -> tuple[Any, ...]:
        items = tuple(item(part.strip()) for part in raw.split(",") if part.strip())
        if not items and not allow_empty:
            raise ValueError("expected at least one value")
        return items

    return parse


def parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def parse_number(kind: Callable[[str], Any], *, minimum: float, maximum: float | None = None) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"expected a number (at least {minimum:g})") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else f"at least {minimum:g}"
            raise ValueError(f"expected a value {bound}")
        return value

    return parse


def parse_prefix(raw: str) -> str:
    if raw.startswith("/"):
        raise ValueError("must not start with '/'")
    return raw if raw.endswith("/") else raw + "/"


def parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return raw.lower()

    return parse


def parse_object_basename(raw: str) -> str:
    if "/" in raw:
        raise ValueError("expected an object name without '/' (it is matched in every folder)")
    return raw


def parse_storage_class(raw: str) -> str | None:
    if raw in ("", "-"):
        return None
    if raw.upper() not in _STORAGE_CLASSES:
        raise ValueError(f"expected one of {', '.join(_STORAGE_CLASSES)}")
    return raw.upper()


def parse_endpoint(raw: str) -> str | None:
    if raw in ("", "-"):
        return None
    if not re.match(r"^https?://[^/\s]+/?$", raw):
        raise ValueError("expected a base URL such as http://127.0.0.1:8089")
    return raw.rstrip("/")


def parse_log_level(raw: str) -> str:
    if raw.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
    return raw.upper()


def setting(default: str | None, parse: Callable[[str], T], description: str, *, secret: bool = False) -> T:
    """Declare a field of ``Settings``; its default is ``parse(default)`` (no default when None: required).
    A ``secret`` never shows in the settings' repr."""
    metadata = {"setting": (default, description, parse)}
    if default is None:
        return field(metadata=metadata, repr=not secret)  # type: ignore[no-any-return]
    return field(default=parse(default), metadata=metadata, repr=not secret)
