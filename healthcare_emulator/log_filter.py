"""A subset of the Cloud Logging query language, parsed into a predicate over LogEntry JSON.

Supported (everything else is a 400 INVALID_ARGUMENT, as the real API answers a filter it cannot parse):

- comparisons ``PATH OP VALUE`` with OP one of ``=``, ``!=``, ``>``, ``>=``, ``<``, ``<=`` and ``:`` (has:
  case-insensitive substring; ``PATH:*`` tests presence). PATH is a dotted field path of the LogEntry
  (``severity``, ``logName``, ``timestamp``, ``operation.id``, ``resource.type``, ``resource.labels.dataset_id``,
  ``jsonPayload.error.message``...); a segment may be double-quoted (``jsonPayload."@type"``).
- VALUE a double-quoted string (``\\"`` and ``\\\\`` escapes) or a bare word.
- ``NOT`` (and ``-`` before a comparison), ``AND``, juxtaposition as ``AND``, ``OR``, parentheses.
  Precedence as the Logging query language defines it: NOT binds tightest, then OR, then AND, so
  ``a AND b OR c`` is ``a AND (b OR c)``.
- ``severity`` compares by level (``severity>=ERROR``), ``timestamp``/``receiveTimestamp`` as instants
  (RFC 3339), numbers numerically; other values as strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]

SEVERITIES = {
    "DEFAULT": 0,
    "DEBUG": 100,
    "INFO": 200,
    "NOTICE": 300,
    "WARNING": 400,
    "ERROR": 500,
    "CRITICAL": 600,
    "ALERT": 700,
    "EMERGENCY": 800,
}
_TIME_FIELDS = frozenset({"timestamp", "receiveTimestamp"})
_OPERATORS = ("!=", ">=", "<=", "=", ">", "<", ":")
_MAX_LENGTH = 20_000  # ListLogEntriesRequest.filter: "The maximum length of a filter is 20,000 characters"


class FilterError(ValueError):
    """The filter is not in the supported subset (answered as 400 INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "string", "op", "(", ")", "-"
    text: str
    position: int


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<op>!=|>=|<=|=|>|<|:)
  | (?P<paren>[()])
  | (?P<minus>-(?=[\s(A-Za-z"]))
  | (?P<word>[^\s()"=!<>:]+)
    """,
    re.VERBOSE,
)


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise FilterError(f"unparsable filter at character {position + 1}: {text[position : position + 20]!r}")
        kind = match.lastgroup or ""
        value = match.group()
        if kind == "string":
            tokens.append(_Token("string", _unquote(value), position))
        elif kind == "op":
            tokens.append(_Token("op", value, position))
        elif kind == "paren":
            tokens.append(_Token(value, value, position))
        elif kind == "minus":
            tokens.append(_Token("-", value, position))
        elif kind == "word":
            tokens.append(_Token("word", value, position))
        position = match.end()
    return tokens


def _unquote(quoted: str) -> str:
    return re.sub(r"\\(.)", r"\1", quoted[1:-1])


def parse_filter(text: str) -> Predicate:
    """The predicate of ``text``; an empty filter matches every entry. Raises FilterError."""
    if len(text) > _MAX_LENGTH:
        raise FilterError(f"filter is longer than {_MAX_LENGTH} characters")
    tokens = _tokens(text)
    if not tokens:
        return lambda entry: True
    parser = _Parser(tokens)
    predicate = parser.conjunction()
    if not parser.at_end():
        token = parser.peek()
        raise FilterError(f"unexpected {token.text!r} at character {token.position + 1}")
    return predicate


class _Parser:
    """Recursive descent: conjunction := disjunction ((AND)? disjunction)*; disjunction := negation (OR negation)*."""

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._index = 0

    def at_end(self) -> bool:
        return self._index >= len(self._tokens)

    def peek(self) -> _Token:
        return self._tokens[self._index]

    def _take(self) -> _Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def _is_keyword(self, word: str) -> bool:
        return not self.at_end() and self.peek().kind == "word" and self.peek().text == word

    def conjunction(self) -> Predicate:
        parts = [self.disjunction()]
        while not self.at_end() and self.peek().kind != ")":
            if self._is_keyword("AND"):
                self._take()
            parts.append(self.disjunction())
        return parts[0] if len(parts) == 1 else (lambda entry: all(part(entry) for part in parts))

    def disjunction(self) -> Predicate:
        parts = [self.negation()]
        while self._is_keyword("OR"):
            self._take()
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else (lambda entry: any(part(entry) for part in parts))

    def negation(self) -> Predicate:
        if self._is_keyword("NOT") or (not self.at_end() and self.peek().kind == "-"):
            self._take()
            inner = self.negation()
            return lambda entry: not inner(entry)
        return self.primary()

    def primary(self) -> Predicate:
        if self.at_end():
            raise FilterError("filter ends where an expression was expected")
        token = self.peek()
        if token.kind == "(":
            self._take()
            inner = self.conjunction()
            if self.at_end() or self.peek().kind != ")":
                raise FilterError(f"unbalanced '(' at character {token.position + 1}")
            self._take()
            return inner
        if token.kind == "word" and token.text in ("AND", "OR"):
            raise FilterError(f"{token.text} at character {token.position + 1} has no left operand")
        if token.kind != "word":
            raise FilterError(f"expected a field path at character {token.position + 1}, got {token.text!r}")
        return self.comparison()

    def comparison(self) -> Predicate:
        start = self.peek()
        path = self._field_path()
        if self.at_end() or self.peek().kind != "op":
            # A bare word is a global text search in the real language: not in this subset.
            raise FilterError(
                f"expected a comparison operator after {start.text!r} at character {start.position + 1} "
                "(global text search is not supported by the emulator)"
            )
        operator = self._take().text
        if self.at_end() or self.peek().kind not in ("word", "string"):
            raise FilterError(f"expected a value after {start.text}{operator}")
        value_token = self._take()
        if operator == ":" and value_token.kind == "word" and value_token.text == "*":
            return lambda entry: _lookup(entry, path) is not None
        return _comparison(path, operator, value_token.text)

    def _field_path(self) -> tuple[str, ...]:
        """``a.b.c``, with double-quoted segments for names holding dots or other characters (``a."b.c"``)."""
        start = self._take()
        parts = start.text.split(".")
        while parts[-1] == "" and not self.at_end() and self.peek().kind == "string":
            parts[-1] = self._take().text
            if not self.at_end() and self.peek().kind == "word" and self.peek().text.startswith("."):
                parts.extend(self._take().text[1:].split("."))
        if any(not part for part in parts):
            raise FilterError(f"malformed field path {start.text!r} at character {start.position + 1}")
        return tuple(parts)


def _lookup(entry: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = entry
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _comparison(path: tuple[str, ...], operator: str, expected: str) -> Predicate:
    key = _sort_key(path, expected)

    def test(entry: dict[str, Any]) -> bool:
        actual = _lookup(entry, path)
        if actual is None or isinstance(actual, dict | list):
            return operator == "!=" and actual is None
        if operator == ":":
            return expected.lower() in str(actual).lower()
        try:
            left, right = _sort_key(path, str(actual)), key
        except FilterError:
            return False
        if type(left) is not type(right):
            left, right = str(actual), expected
        return _COMPARE[operator](left, right)

    return test


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def _sort_key(path: tuple[str, ...], value: str) -> Any:
    """How values of ``path`` order: severities by level, timestamps as instants, numbers as numbers."""
    if path == ("severity",):
        if value.upper() not in SEVERITIES:
            raise FilterError(f"unknown severity {value!r}; one of {', '.join(SEVERITIES)}")
        return SEVERITIES[value.upper()]
    if path[-1] in _TIME_FIELDS and len(path) == 1:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise FilterError(f"{path[0]} {value!r} is not an RFC 3339 timestamp") from exc
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return float(value)
    return value
