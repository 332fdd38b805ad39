"""The import URI grammar (DESIGN.md §1): what each wildcard matches and which forms are invalid."""

from __future__ import annotations

import pytest

from healthcare_emulator.wildcard import InvalidImportUriError, parse_import_uri


@pytest.mark.parametrize(
    ("uri", "name", "expected"),
    [
        # DESIGN.md §1 examples
        ("gs://bkt/Example*.dcm", "Example.dcm", True),
        ("gs://bkt/Example*.dcm", "Example22.dcm", True),
        ("gs://bkt/Example?.dcm", "Example1.dcm", True),
        ("gs://bkt/Example?.dcm", "Example.dcm", False),
        ("gs://bkt/Example?.dcm", "Example01.dcm", False),
        ("gs://bkt/dir/**.dcm", "dir/a.dcm", True),
        ("gs://bkt/dir/**.dcm", "dir/x/y/z.dcm", True),
        ("gs://bkt/dir/**.dcm", "dir/x/y/z.txt", False),
        ("gs://bkt/dir/**.dcm", "other/a.dcm", False),
        # `*` and `?` never cross a folder
        ("gs://bkt/dir/*.dcm", "dir/sub/a.dcm", False),
        ("gs://bkt/dir/*.dcm", "dir/a.dcm", True),
        ("gs://bkt/dir/?.dcm", "dir/a.dcm", True),
        ("gs://bkt/dir/?.dcm", "dir//.dcm", False),
        # `**` alone takes everything below
        ("gs://bkt/**", "a", True),
        ("gs://bkt/**", "x/y/z.dcm", True),
        ("gs://bkt/dir/**", "dir/x/y", True),
        ("gs://bkt/dir/**", "dirx/y", False),
        # no wildcard: exactly one object, regex metacharacters are literal
        ("gs://bkt/dir/a+b (1).dcm", "dir/a+b (1).dcm", True),
        ("gs://bkt/dir/a.dcm", "dir/aXdcm", False),
        ("gs://bkt/dir/a.dcm", "dir/a.dcm.bak", False),
    ],
)
def test_parse_import_uri_matches_as_the_api_does(uri: str, name: str, expected: bool) -> None:
    assert parse_import_uri(uri).matches(name) is expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("gs://bkt/dir/[ab].dcm", "character classes"),
        ("gs://bkt/**/x.dcm", "'**' must be at the end"),
        ("gs://bkt/dir/**/*.dcm", "'**' must be the only wildcard"),
        ("gs://bkt/a*/**.dcm", "'**' must be the only wildcard"),
        ("gs://bkt/**.dcm/**", "only once"),
        ("gs://bkt/***.dcm", "'***'"),
        ("gs://bkt*/a.dcm", "bucket"),
        ("gs://bkt", "names no object"),
        ("gs://bkt/", "names no object"),
        ("s3://b/a.dcm", "must start with gs://"),
        ("gs://B_/a.dcm", "invalid bucket name"),
    ],
)
def test_parse_import_uri_rejects_invalid_forms_with_the_reason(uri: str, message: str) -> None:
    with pytest.raises(InvalidImportUriError, match=message.replace("*", r"\*").replace("[", r"\[")):
        parse_import_uri(uri)


def test_literal_prefix_is_the_part_before_the_first_wildcard() -> None:
    assert parse_import_uri("gs://bkt/dir/sub/IM*.dcm").literal_prefix == "dir/sub/IM"
    assert parse_import_uri("gs://bkt/dir/**.dcm").literal_prefix == "dir/"
    assert parse_import_uri("gs://bkt/dir/a.dcm").literal_prefix == "dir/a.dcm"
    assert not parse_import_uri("gs://bkt/dir/a.dcm").has_wildcards
