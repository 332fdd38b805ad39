"""multipart/related bodies (STOW-RS requests, WADO-RS responses, RFC 2046/2387) and Accept negotiation."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

_DEFAULT_PART_TYPE = "application/octet-stream"
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"({_TOKEN})/({_TOKEN})")
_QUALITY = re.compile(r"(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)")
_HEADERS_END = re.compile(rb"\r?\n\r?\n")


class MultipartError(Exception):
    """A body or Accept header that cannot be used (400, or 406 for Accept); the message says why."""


# ----- media types -----


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """``'multipart/related; type="application/dicom"; boundary=x'`` -> ``('multipart/related', {...})``.

    The type and parameter names come out lower-cased, parameter values unquoted (``\\`` escapes undone).
    """
    head, *rest = _split_outside_quotes(value, ";")
    params: dict[str, str] = {}
    for part in rest:
        name, equals, raw = part.partition("=")
        if equals and name.strip():
            params[name.strip().lower()] = _unquote(raw.strip())
    return head.strip().lower(), params


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split on ``separator`` where it is not inside a quoted string."""
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return items


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


# ----- multipart/related -----


def parse_multipart_related(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """The (content type, bytes) of each part of a multipart/related body, in order.

    The boundary comes from ``content_type`` (quoted or not). Delimiter lines may end in CRLF or LF; a preamble,
    transport padding after a delimiter and an epilogue are ignored. A part without a Content-Type header has
    the ``type`` parameter of ``content_type`` (else application/octet-stream).
    """
    media_type, params = parse_media_type(content_type)
    if media_type != "multipart/related":
        raise MultipartError(f"expected Content-Type multipart/related, got {media_type or 'none'!r}")
    boundary = params.get("boundary", "")
    if not boundary:
        raise MultipartError("Content-Type multipart/related has no boundary parameter")
    if not boundary.isascii():
        raise MultipartError(f"the boundary {boundary!r} is not ASCII")
    default_type = params.get("type") or _DEFAULT_PART_TYPE
    delimiter = re.compile(
        rb"(?:\A|\r?\n)--" + re.escape(boundary.encode("ascii")) + rb"(?P<close>--)?[ \t]*(?=\r?\n|\Z)"
    )
    delimiters = list(delimiter.finditer(body))
    if not delimiters:
        raise MultipartError(f"the body holds no part: no delimiter line '--{boundary}'")
    parts: list[tuple[str, bytes]] = []
    for number, current in enumerate(delimiters, start=1):
        if current.group("close"):
            break
        if number == len(delimiters):
            raise MultipartError(f"the body ends without the closing delimiter '--{boundary}--'")
        parts.append(_parse_part(body[current.end() : delimiters[number].start()], number, default_type))
    if not parts:
        raise MultipartError("the body holds no part before its closing delimiter")
    return parts


def _parse_part(raw: bytes, number: int, default_type: str) -> tuple[str, bytes]:
    """One body part (what follows its delimiter line, up to the CRLF before the next delimiter)."""
    raw = raw.removeprefix(b"\r\n") if raw.startswith(b"\r\n") else raw.removeprefix(b"\n")
    if raw.startswith((b"\r\n", b"\n")):  # no header at all
        return default_type, raw.removeprefix(b"\r\n") if raw.startswith(b"\r\n") else raw.removeprefix(b"\n")
    end = _HEADERS_END.search(raw)
    if end is None:
        raise MultipartError(f"part {number} has no blank line between its headers and its content")
    part_type = default_type
    for line in re.sub(r"\r?\n[ \t]+", " ", raw[: end.start()].decode("latin-1")).splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() == "content-type" and value.strip():
            part_type = value.strip()
    return part_type, raw[end.end() :]


def build_multipart_related(parts: Sequence[tuple[str, bytes]], part_content_type: str) -> tuple[str, bytes]:
    """A multipart/related body of ``parts`` ((content type, bytes) each) and its Content-Type header value.

    ``part_content_type`` is the ``type`` parameter (the type of the root part). The boundary is random and
    occurs in no part. Each part gets its own Content-Type header; lines end in CRLF.
    """
    if not parts:
        raise MultipartError("a multipart/related body needs at least one part")
    for content_type in (part_content_type, *(content_type for content_type, _ in parts)):
        if not content_type or any(char in content_type for char in "\r\n"):
            raise MultipartError(f"invalid part content type {content_type!r}")
    boundary = _new_boundary()
    while any(boundary.encode("ascii") in data for _, data in parts):
        boundary = _new_boundary()
    chunks: list[bytes] = []
    for content_type, data in parts:
        chunks += [f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode("latin-1"), data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode("ascii"))
    type_parameter = part_content_type.replace("\\", "\\\\").replace('"', '\\"')
    return f'multipart/related; type="{type_parameter}"; boundary={boundary}', b"".join(chunks)


def _new_boundary() -> str:
    return secrets.token_hex(16)


# ----- Accept -----


@dataclass(frozen=True)
class _MediaRange:
    media_type: str
    params: dict[str, str] = field(default_factory=dict)
    quality: float = 1.0
    position: int = 0


def accept_media_type(accept_header: str | None, offered: Sequence[str], default: str) -> tuple[str, dict[str, str]]:
    """Choose one of ``offered`` for an Accept header: (the offered string, the params of the range chosen).

    RFC 9110 §12.5.1: each offered type takes the quality of the most specific range matching it (exact type,
    then ``type/*``, then ``*/*``); the highest quality wins, then the more specific match, then the range
    listed first, then the type offered first. Quality 0 means "not acceptable". An offered
    ``multipart/related; type="X"`` matches a requested multipart/related whose ``type`` is X, covers X by a
    wildcard, or is absent (``type="*/*"`` offered matches any requested type). Returned params exclude ``q``.
    No or an empty Accept header (or one without a single well-formed range) gives ``(default, {})``.
    MultipartError (a 406) when nothing offered is acceptable.
    """
    ranges = _media_ranges(accept_header or "")
    if not ranges:
        return default, {}
    best: tuple[tuple[float, int, int, int], str, dict[str, str]] | None = None
    for offer_index, candidate in enumerate(offered):
        offered_type, offered_params = parse_media_type(candidate)
        matches = [
            (specificity, media_range)
            for media_range in ranges
            if (specificity := _specificity(media_range, offered_type, offered_params)) is not None
        ]
        if not matches:
            continue
        specificity, chosen = max(matches, key=lambda match: (match[0], -match[1].position))
        if chosen.quality <= 0:
            continue
        rank = (chosen.quality, specificity, -chosen.position, -offer_index)
        if best is None or rank > best[0]:
            best = (rank, candidate, dict(chosen.params))
    if best is None:
        raise MultipartError(
            f"none of the requested media types ({accept_header}) can be returned; available: {', '.join(offered)}"
        )
    return best[1], best[2]


def _media_ranges(header: str) -> list[_MediaRange]:
    """The well-formed media ranges of an Accept header; malformed ones are skipped."""
    ranges: list[_MediaRange] = []
    for position, item in enumerate(_split_outside_quotes(header, ",")):
        if not item.strip():
            continue
        media_type, params = parse_media_type(item)
        found = _MEDIA_TYPE.fullmatch(media_type)
        if found is None or (found.group(1) == "*" and found.group(2) != "*"):
            continue
        quality_text = params.pop("q", "1")
        if not _QUALITY.fullmatch(quality_text.strip()):
            continue
        ranges.append(_MediaRange(media_type, params, float(quality_text), position))
    return ranges


def _specificity(media_range: _MediaRange, offered_type: str, offered_params: dict[str, str]) -> int | None:
    """How specifically ``media_range`` matches the offered type (higher is more specific), None if it does not."""
    if media_range.media_type == "*/*":
        return 0
    major, _, minor = media_range.media_type.partition("/")
    if minor == "*":
        return 1 if offered_type.partition("/")[0] == major else None
    if media_range.media_type != offered_type:
        return None
    requested_part_type = media_range.params.get("type")
    offered_part_type = offered_params.get("type")
    if offered_type != "multipart/related" or requested_part_type is None or offered_part_type is None:
        return 2
    requested_part_type = requested_part_type.lower()
    offered_part_type = offered_part_type.lower()
    if requested_part_type == offered_part_type:
        return 3
    return 2 if _covers(requested_part_type, offered_part_type) or offered_part_type == "*/*" else None


def _covers(requested: str, offered: str) -> bool:
    if requested == "*/*":
        return True
    major, _, minor = requested.partition("/")
    return minor == "*" and offered.partition("/")[0] == major
