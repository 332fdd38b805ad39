"""multipart/related bodies (round trips with dicomweb-client) and Accept negotiation."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from healthcare_emulator import multipart
from healthcare_emulator.multipart import (
    MultipartError,
    accept_media_type,
    build_multipart_related,
    parse_media_type,
    parse_multipart_related,
)

DICOM = 'multipart/related; type="application/dicom"'
OCTETS = 'multipart/related; type="application/octet-stream"'
ANY_FRAMES = 'multipart/related; type="*/*"'
TRICKY_PARTS = [
    b"first\r\n--not-a-boundary\r\n\r\nstill the first part\r\n",
    b"",
    b"\r\n\r\nstarts with a blank line",
    bytes(range(256)) * 40,
]


def _client() -> DICOMwebClient:
    return DICOMwebClient(url="http://127.0.0.1:1/dicomWeb")


def _response(body: bytes, content_type: str, *, streamed: bool) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response.headers["Content-Type"] = content_type
    if streamed:
        response.raw = io.BytesIO(body)
    else:
        response._content = body
    return response


def _dicomweb_client_decodes(body: bytes, content_type: str, *, streamed: bool = False) -> list[bytes]:
    client = _client()
    client.set_chunk_size(7)  # small chunks: delimiters straddle them when streamed
    return list(client._decode_multipart_message(_response(body, content_type, streamed=streamed), stream=streamed))


# ----- parse_multipart_related -----


def test_parse_reads_what_dicomweb_client_encodes() -> None:
    content_type = 'multipart/related; type="application/dicom"; boundary=0f3cf5c0-0e9e-4b7e'
    body = _client()._encode_multipart_message(TRICKY_PARTS, content_type)
    parsed = parse_multipart_related(body, content_type)
    assert [data for _, data in parsed] == TRICKY_PARTS
    assert [part_type for part_type, _ in parsed] == ["application/dicom"] * len(TRICKY_PARTS)


def test_parse_reads_a_quoted_boundary_and_case_insensitive_names() -> None:
    body = b"--a:b c\r\ncontent-TYPE: application/dicom\r\n\r\nDATA\r\n--a:b c--\r\n"
    assert parse_multipart_related(body, 'Multipart/Related; TYPE="application/dicom"; Boundary="a:b c"') == [
        ("application/dicom", b"DATA")
    ]


def test_parse_tolerates_lf_line_endings() -> None:
    body = b"--XX\nContent-Type: application/dicom\n\none\n--XX\nContent-Type: application/dicom\n\ntwo\n--XX--\n"
    assert parse_multipart_related(body, "multipart/related; boundary=XX") == [
        ("application/dicom", b"one"),
        ("application/dicom", b"two"),
    ]


def test_parse_ignores_preamble_epilogue_and_transport_padding() -> None:
    body = (
        b"This is the preamble.\r\n--XX  \r\nContent-Type: application/dicom\r\n\r\nDATA"
        b"\r\n--XX-- \t\r\nThis is the epilogue.\r\n--XX\r\nnot a part"
    )
    assert parse_multipart_related(body, "multipart/related; boundary=XX") == [("application/dicom", b"DATA")]


def test_parse_does_not_take_a_longer_boundary_for_the_boundary() -> None:
    body = b"--XX\r\n\r\nline\r\n--XXY\r\nmore\r\n--XX--"
    assert parse_multipart_related(body, "multipart/related; boundary=XX") == [
        ("application/octet-stream", b"line\r\n--XXY\r\nmore")
    ]


def test_parse_gives_a_part_without_content_type_the_type_parameter() -> None:
    body = (
        b"--XX\r\nContent-Location: a.dcm\r\n\r\nA\r\n"
        b"--XX\r\n\r\nB\r\n"
        b"--XX\r\nContent-Type: text/plain\r\n\r\nC\r\n--XX--"
    )
    assert parse_multipart_related(body, 'multipart/related; type="application/dicom"; boundary=XX') == [
        ("application/dicom", b"A"),
        ("application/dicom", b"B"),
        ("text/plain", b"C"),
    ]
    assert parse_multipart_related(body, "multipart/related; boundary=XX")[0] == ("application/octet-stream", b"A")


def test_parse_keeps_part_content_type_parameters_and_unfolds_headers() -> None:
    body = b'--XX\r\nContent-Type: application/dicom;\r\n transfer-syntax="1.2.840.10008.1.2.1"\r\n\r\nA\r\n--XX--'
    [(part_type, data)] = parse_multipart_related(body, "multipart/related; boundary=XX")
    assert part_type == 'application/dicom; transfer-syntax="1.2.840.10008.1.2.1"'
    assert data == b"A"


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"x", "application/json", "expected Content-Type multipart/related, got 'application/json'"),
        (b"x", "", "expected Content-Type multipart/related, got 'none'"),
        (b"--XX\r\n\r\nx\r\n--XX--", "multipart/related", "no boundary parameter"),
        (b"--XX\r\n\r\nx\r\n--XX--", 'multipart/related; boundary=""', "no boundary parameter"),
        (b"nothing here", "multipart/related; boundary=zz", "no part: no delimiter line '--zz'"),
        (b"--zz--\r\n", "multipart/related; boundary=zz", "no part before its closing delimiter"),
        (b"--zz\r\n\r\ntruncated", "multipart/related; boundary=zz", "without the closing delimiter '--zz--'"),
        (b"--zz\r\n\r\na\r\n--zz\r\nContent-Type: x", "multipart/related; boundary=zz", "closing delimiter"),
        (b"--zz\r\nContent-Type: a/b\r\nno blank line\r\n--zz--", "multipart/related; boundary=zz", "part 1 has no"),
        (b"--zz\r\n\r\na\r\n--zz\r\nbad\r\n--zz--", "multipart/related; boundary=zz", "part 2 has no blank line"),
    ],
)
def test_parse_errors_say_what_is_wrong(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(MultipartError, match=message):
        parse_multipart_related(body, content_type)


# ----- build_multipart_related -----


def test_build_writes_a_content_type_header_and_one_part_per_item() -> None:
    content_type, body = build_multipart_related(
        [("application/dicom", b"A"), ("application/dicom; transfer-syntax=*", b"B")], "application/dicom"
    )
    media_type, params = parse_media_type(content_type)
    assert media_type == "multipart/related"
    assert params["type"] == "application/dicom"
    boundary = params["boundary"]
    assert content_type == f'multipart/related; type="application/dicom"; boundary={boundary}'
    assert (
        body
        == (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\nA\r\n"
            f"--{boundary}\r\nContent-Type: application/dicom; transfer-syntax=*\r\n\r\nB\r\n"
            f"--{boundary}--\r\n"
        ).encode()
    )


def test_build_then_parse_round_trips_every_part() -> None:
    parts = [("application/dicom", data) for data in TRICKY_PARTS] + [("application/octet-stream", b"frame")]
    content_type, body = build_multipart_related(parts, "application/dicom")
    assert parse_multipart_related(body, content_type) == parts


@pytest.mark.parametrize("streamed", [False, True])
def test_dicomweb_client_decodes_what_build_writes(streamed: bool) -> None:
    parts = [data for data in TRICKY_PARTS if data]  # dicomweb-client drops empty parts
    content_type, body = build_multipart_related([("application/dicom", data) for data in parts], "application/dicom")
    assert _dicomweb_client_decodes(body, content_type, streamed=streamed) == parts


def test_dicomweb_client_decodes_a_single_frame_response() -> None:
    content_type, body = build_multipart_related(
        [("application/octet-stream", b"\0\1" * 50)], "application/octet-stream"
    )
    assert _dicomweb_client_decodes(body, content_type) == [b"\0\1" * 50]


def test_build_picks_a_boundary_found_in_no_part(monkeypatch: pytest.MonkeyPatch) -> None:
    candidates: Iterator[str] = iter(["inside", "alsoinside", "fresh"])
    monkeypatch.setattr(multipart, "_new_boundary", lambda: next(candidates))
    content_type, body = build_multipart_related(
        [("application/dicom", b"..inside.."), ("application/dicom", b"alsoinside")], "application/dicom"
    )
    assert content_type.endswith("boundary=fresh")
    assert parse_multipart_related(body, content_type) == [
        ("application/dicom", b"..inside.."),
        ("application/dicom", b"alsoinside"),
    ]


def test_build_uses_a_new_random_boundary_each_time() -> None:
    first, _ = build_multipart_related([("application/dicom", b"A")], "application/dicom")
    second, _ = build_multipart_related([("application/dicom", b"A")], "application/dicom")
    assert first != second


def test_build_refuses_no_parts_and_header_injection() -> None:
    with pytest.raises(MultipartError, match="at least one part"):
        build_multipart_related([], "application/dicom")
    with pytest.raises(MultipartError, match="invalid part content type"):
        build_multipart_related([("application/dicom\r\nX-Evil: 1", b"A")], "application/dicom")
    with pytest.raises(MultipartError, match="invalid part content type"):
        build_multipart_related([("application/dicom", b"A")], "")


# ----- parse_media_type -----


def test_parse_media_type_lowers_names_and_unquotes_values() -> None:
    assert parse_media_type('Multipart/Related; Type="application/dicom"; boundary="a;b\\"c"; transfer-syntax=*') == (
        "multipart/related",
        {"type": "application/dicom", "boundary": 'a;b"c', "transfer-syntax": "*"},
    )
    assert parse_media_type("") == ("", {})


# ----- accept_media_type -----


@pytest.mark.parametrize(
    ("accept", "offered", "chosen", "params"),
    [
        (None, [DICOM], DICOM, {}),
        ("", [DICOM], DICOM, {}),
        ("   ", ["image/jpeg", "image/png"], "image/jpeg", {}),
        (
            'multipart/related; type="application/dicom"; transfer-syntax=*',
            [DICOM],
            DICOM,
            {"type": "application/dicom", "transfer-syntax": "*"},
        ),
        ("multipart/related", [DICOM], DICOM, {}),
        ('multipart/related; type="application/*"', [DICOM], DICOM, {"type": "application/*"}),
        (
            "application/dicom; transfer-syntax=*",
            [DICOM, "application/dicom"],
            "application/dicom",
            {"transfer-syntax": "*"},
        ),
        ("application/dicom+json", ["application/dicom+json"], "application/dicom+json", {}),
        ("APPLICATION/DICOM+JSON", ["application/dicom+json"], "application/dicom+json", {}),
        ("image/png", ["image/jpeg", "image/png"], "image/png", {}),
        ("image/*", ["image/jpeg", "image/png"], "image/jpeg", {}),
        ("*/*", ["image/jpeg", "image/png"], "image/jpeg", {}),
        ("*/*", [DICOM, "application/dicom"], DICOM, {}),
        ('multipart/related; type="*/*"', [OCTETS], OCTETS, {"type": "*/*"}),
        ('multipart/related; type="image/jp2"', [OCTETS, ANY_FRAMES], ANY_FRAMES, {"type": "image/jp2"}),
        (
            'multipart/related; type="application/octet-stream"',
            [ANY_FRAMES, OCTETS],
            OCTETS,
            {"type": "application/octet-stream"},
        ),
    ],
)
def test_accept_media_type_negotiates(
    accept: str | None, offered: list[str], chosen: str, params: dict[str, str]
) -> None:
    assert accept_media_type(accept, offered, offered[0]) == (chosen, params)


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("image/png, image/jpeg;q=0.5", "image/png"),
        ("image/jpeg;q=0.5, image/png", "image/png"),
        ("image/png;q=0.4, image/*;q=0.5", "image/jpeg"),  # png takes the q of its most specific range
        ("image/*;q=0.5, image/jpeg;q=0", "image/png"),  # q=0: not acceptable
        ("image/png, image/jpeg", "image/png"),  # equal q: the range listed first
        ("*/*;q=0.1, image/png", "image/png"),
        ("image/png ; q=1.000, image/jpeg", "image/png"),
    ],
)
def test_accept_media_type_follows_quality_then_specificity(accept: str, chosen: str) -> None:
    assert accept_media_type(accept, ["image/jpeg", "image/png"], "image/jpeg")[0] == chosen


def test_accept_media_type_prefers_the_first_of_equally_good_multipart_ranges() -> None:
    accept = _client()._build_multipart_accept_header_field_value(
        (("application/dicom", "1.2.840.10008.1.2.1"), ("application/dicom", "*")),
        {"1.2.840.10008.1.2.1": "application/dicom", "*": "application/dicom"},
    )
    assert accept_media_type(accept, [DICOM], DICOM) == (
        DICOM,
        {"type": "application/dicom", "transfer-syntax": "1.2.840.10008.1.2.1"},
    )


def test_accept_media_type_handles_commas_and_semicolons_inside_quotes() -> None:
    accept = 'multipart/related; type="application/dicom"; note="a, b; c", image/png;q=0.1'
    assert accept_media_type(accept, [DICOM, "image/png"], DICOM) == (
        DICOM,
        {"type": "application/dicom", "note": "a, b; c"},
    )


def test_accept_media_type_skips_malformed_ranges() -> None:
    assert accept_media_type("garbage, image/png", ["image/jpeg", "image/png"], "image/jpeg")[0] == "image/png"
    assert accept_media_type("image/png;q=high, image/jpeg", ["image/jpeg", "image/png"], "image/png")[0] == (
        "image/jpeg"
    )
    assert accept_media_type("*/png, image/png;q=2", ["image/jpeg"], "image/jpeg") == ("image/jpeg", {})


@pytest.mark.parametrize(
    ("accept", "offered"),
    [
        ("image/gif", ["image/jpeg", "image/png"]),
        ("image/png;q=0, image/jpeg;q=0", ["image/jpeg", "image/png"]),
        ("image/*;q=0", ["image/jpeg", "image/png"]),
        ('multipart/related; type="application/octet-stream"', [DICOM]),
        ('multipart/related; type="image/*"', [DICOM, OCTETS]),
        ("application/json", [DICOM, "application/dicom"]),
    ],
)
def test_accept_media_type_refuses_what_is_not_offered(accept: str, offered: list[str]) -> None:
    with pytest.raises(MultipartError, match="none of the requested media types") as raised:
        accept_media_type(accept, offered, offered[0])
    assert accept in str(raised.value)
    assert offered[0] in str(raised.value)
