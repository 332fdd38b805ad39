"""Hostile inputs for tests and benchmarks: a deflate bomb (a small DICOM file whose deflated data set inflates
to gigabytes) and poison messages for the pending topic."""

from __future__ import annotations

import json
import struct
import zlib

DEFLATED = "1.2.840.10008.1.2.1.99"
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_CHUNK = 1 << 20


def _element(group: int, number: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element (value padded to even length)."""
    if len(value) % 2:
        value += b"\0"
    if vr in (b"OB", b"UN", b"UT", b"SQ"):
        return struct.pack("<HH2sHI", group, number, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, number, vr, len(value)) + value


def deflate_bomb(inflated_bytes: int = 1 << 30, *, sop_uid: str = "1.2.3.4.5") -> bytes:
    """A Deflated Explicit VR Little Endian Part-10 file whose data set starts with one OB element of
    ``inflated_bytes`` zeros before its UIDs: about 1 MiB of upload per GiB inflated, built in chunks (the
    builder never holds the inflated bytes)."""
    meta_body = (
        _element(0x0002, 0x0001, b"OB", b"\0\1")
        + _element(0x0002, 0x0002, b"UI", _SECONDARY_CAPTURE.encode())
        + _element(0x0002, 0x0003, b"UI", sop_uid.encode())
        + _element(0x0002, 0x0010, b"UI", DEFLATED.encode())
    )
    meta = struct.pack("<HH2sH", 2, 0, b"UL", 4) + struct.pack("<I", len(meta_body)) + meta_body
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [
        b"\0" * 128,
        b"DICM",
        meta,
        compressor.compress(struct.pack("<HH2sHI", 0x0008, 0x0001, b"OB", 0, inflated_bytes)),
    ]
    zeros, left = b"\0" * _CHUNK, inflated_bytes
    while left > 0:
        out.append(compressor.compress(zeros[: min(left, _CHUNK)]))
        left -= _CHUNK
    tail = _element(0x0008, 0x0018, b"UI", sop_uid.encode())
    tail += _element(0x0020, 0x000D, b"UI", b"1.2.3") + _element(0x0020, 0x000E, b"UI", b"1.2.3.4")
    out += [compressor.compress(tail), compressor.flush()]
    return b"".join(out)


def poison_pending_messages(good: bytes) -> dict[str, bytes]:
    """Poison for the pending topic by kind, built from one good record's JSON ``good`` (its fields broken one
    at a time) plus whole-message garbage."""
    body = json.loads(good)

    def broken(field: str, raw: str) -> bytes:
        return json.dumps({**body, field: "__RAW__"}).replace('"__RAW__"', raw).encode()

    return {
        "huge size": broken("size", "1e400"),
        "digits beyond int()": broken("size", "9" * 5000),
        "object crc32c": broken("crc32c", '{"a": 1}'),
        "list name": broken("name", '["a"]'),
        "non-numeric generation": broken("generation", '"12abc"'),
        "huge string": broken("sop_uid", json.dumps("1" * 500_000)),
        "deep nesting": b"[" * 200_000 + b"]" * 200_000,
        "deep field": broken("study_uid", "[" * 50_000 + "]" * 50_000),
        "binary garbage": bytes(range(256)) * 4,
        "not an object": b"[1, 2, 3]",
        "wrong version": broken("version", "2"),
        "forged bucket": json.dumps({**body, "bucket": "forged-bucket"}).encode(),
    }
