"""multipart/related bodies (STOW-RS requests, WADO-RS responses) and Accept negotiation."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence


class MultipartError(Exception):
    """A body or Accept header that cannot be used; the message says why."""


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """``'multipart/related; type="application/dicom"; boundary=x'`` -> (type, {param: value})."""
    parts = _split_params(value)
    media_type = parts[0].strip().lower()
    params: dict[str, str] = {}
    for part in parts[1:]:
        key, eq, raw = part.partition("=")
        if eq:
            params[key.strip().lower()] = raw.strip().strip('"')
    return media_type, params


def _split_params(value: str) -> list[str]:
    """Split on ``;`` outside quotes."""
    return [part for part in re.split(r';(?=(?:[^"]*"[^"]*")*[^"]*$)', value) if part.strip()] or [""]


def parse_multipart_related(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """The (content type, bytes) of each part of a multipart/related body."""
    media_type, params = parse_media_type(content_type)
    if media_type != "multipart/related":
        raise MultipartError(f"expected Content-Type multipart/related, got {media_type or 'none'!r}")
    boundary = params.get("boundary")
    if not boundary:
        raise MultipartError("Content-Type has no boundary parameter")
    default_type = params.get("type", "application/octet-stream")
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    parts: list[tuple[str, bytes]] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        head, separator, content = _split_head(chunk.removeprefix(b"\r\n").removeprefix(b"\n"))
        if not separator:
            raise MultipartError("a part has no blank line between its headers and its content")
        part_type = default_type
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-type":
                part_type = value.strip()
        parts.append((part_type, content.removesuffix(b"\r\n").removesuffix(b"\n")))
    if not parts:
        raise MultipartError("the body holds no part")
    return parts


def _split_head(chunk: bytes) -> tuple[bytes, bytes, bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, content = chunk.partition(separator)
        if found:
            return head, found, content
    return chunk, b"", b""


def build_multipart_related(parts: Sequence[tuple[str, bytes]], part_content_type: str) -> tuple[str, bytes]:
    """A multipart/related body of ``parts`` and its Content-Type header value."""
    boundary = secrets.token_hex(16)
    while any(boundary.encode() in data for _, data in parts):
        boundary = secrets.token_hex(16)
    chunks: list[bytes] = []
    for content_type, data in parts:
        chunks += [f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode(), data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return f'multipart/related; type="{part_content_type}"; boundary={boundary}', b"".join(chunks)


def accept_media_type(accept_header: str | None, offered: Sequence[str], default: str) -> tuple[str, dict[str, str]]:
    """Choose among ``offered`` media types for an Accept header; returns (offered type, requested params).

    An offered ``multipart/related; type="X"`` matches a requested multipart/related whose ``type`` is X,
    ``X``'s wildcard form, or absent. MultipartError (a 406) when nothing offered is acceptable.
    """
    if not accept_header or not accept_header.strip():
        return default, {}
    ranges = []
    for index, item in enumerate(_split_list(accept_header)):
        media_type, params = parse_media_type(item)
        quality = _quality(params.pop("q", "1"))
        if quality > 0:
            ranges.append((-quality, index, media_type, params))
    for _, _, media_type, params in sorted(ranges):
        for candidate in offered:
            if _acceptable(media_type, params, candidate):
                return candidate, params
    raise MultipartError(f"none of the requested media types ({accept_header}) is offered: {', '.join(offered)}")


def _split_list(header: str) -> list[str]:
    return [part.strip() for part in re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', header) if part.strip()]


def _quality(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 1.0


def _acceptable(requested: str, params: dict[str, str], candidate: str) -> bool:
    offered_type, offered_params = parse_media_type(candidate)
    if not _type_matches(requested, offered_type):
        return False
    if offered_type == "multipart/related" and "type" in offered_params:
        wanted = params.get("type")
        return wanted is None or _type_matches(wanted.lower(), offered_params["type"])
    return True


def _type_matches(requested: str, offered: str) -> bool:
    if requested in ("*/*", offered) or offered == "*/*":
        return True
    major, _, minor = requested.partition("/")
    return minor == "*" and offered.startswith(major + "/")
