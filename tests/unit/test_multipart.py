"""multipart/related round trips with dicomweb-client and Accept negotiation."""

from __future__ import annotations

import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from healthcare_emulator.multipart import (
    MultipartError,
    accept_media_type,
    build_multipart_related,
    parse_multipart_related,
)

DICOM = 'multipart/related; type="application/dicom"'


def test_parse_reads_what_dicomweb_client_encodes() -> None:
    client = DICOMwebClient(url="http://127.0.0.1:1/dicomWeb")
    parts = [b"first\r\n--not-a-boundary", b"second"]
    content_type = 'multipart/related; type="application/dicom"; boundary=0f3cf5c0-0e9e-4b7e'
    body = client._encode_multipart_message(parts, content_type)
    parsed = parse_multipart_related(body, content_type)
    assert [data for _, data in parsed] == parts
    assert {part_type for part_type, _ in parsed} == {"application/dicom"}


def test_dicomweb_client_decodes_what_build_writes() -> None:
    content_type, body = build_multipart_related(
        [("application/dicom", b"a" * 10), ("application/dicom", b"b")], "application/dicom"
    )
    response = requests.Response()
    response._content = body
    response.headers["Content-Type"] = content_type
    response.status_code = 200
    decoded = list(DICOMwebClient(url="http://127.0.0.1:1")._decode_multipart_message(response, stream=False))
    assert decoded == [b"a" * 10, b"b"]


def test_parse_errors_are_clear() -> None:
    with pytest.raises(MultipartError, match="no boundary"):
        parse_multipart_related(b"x", "multipart/related")
    with pytest.raises(MultipartError, match="no part"):
        parse_multipart_related(b"nothing here", "multipart/related; boundary=zz")
    with pytest.raises(MultipartError, match="expected Content-Type multipart/related"):
        parse_multipart_related(b"x", "application/json")


@pytest.mark.parametrize(
    ("accept", "offered", "chosen", "params"),
    [
        (None, [DICOM], DICOM, {}),
        (
            'multipart/related; type="application/dicom"; transfer-syntax=*',
            [DICOM],
            DICOM,
            {"type": "application/dicom", "transfer-syntax": "*"},
        ),
        (
            "application/dicom; transfer-syntax=*",
            [DICOM, "application/dicom"],
            "application/dicom",
            {"transfer-syntax": "*"},
        ),
        ("image/png, image/jpeg;q=0.5", ["image/jpeg", "image/png"], "image/png", {}),
        ("image/*", ["image/jpeg", "image/png"], "image/jpeg", {}),
        ("*/*", ["image/jpeg"], "image/jpeg", {}),
        (
            'multipart/related; type="*/*"',
            ['multipart/related; type="application/octet-stream"'],
            'multipart/related; type="application/octet-stream"',
            {"type": "*/*"},
        ),
    ],
)
def test_accept_media_type_negotiates(
    accept: str | None, offered: list[str], chosen: str, params: dict[str, str]
) -> None:
    assert accept_media_type(accept, offered, offered[0]) == (chosen, params)


def test_accept_media_type_refuses_what_is_not_offered() -> None:
    with pytest.raises(MultipartError, match="image/gif"):
        accept_media_type("image/gif", ["image/jpeg", "image/png"], "image/jpeg")
    with pytest.raises(MultipartError):
        accept_media_type('multipart/related; type="application/octet-stream"', [DICOM], DICOM)
