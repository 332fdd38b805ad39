"""Total parsing: every parser of message, event and ledger input maps any bad input to one MalformedEventError
that names the field, never the value."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomflow.errors import MalformedEventError
from dicomflow.ledger.manifest import ExportMarker, FailureNote, ImportMarker, Manifest, ResultMarker
from dicomflow.messages.events import PUBSUB_PUBLISHED, STORAGE_FINALIZED, parse_object_event, pubsub_message
from dicomflow.messages.records import PendingRecord, WatchMessage, parse_pending

SECRET = "Doe^Jane"  # a value that must never appear in an error message
RECORD = PendingRecord("src-bucket", "up/a.dcm", "1700000000000001", 100, "AAAAAA==", "1.2", "1.2.3", "1.2.3.4",
                       "1.2.840.10008.1.2.1", "CT", "2026-11-28T12:00:00+00:00")  # fmt: skip
WATCH = WatchMessage("projects/p/locations/l/datasets/d/operations/7", "20261128T120000Z-abc",
                     "gs://state/dicomflow/batches/20261128T120000Z-abc/manifest.json", "import")  # type: ignore[arg-type]  # fmt: skip

# raw JSON texts that are wrong where a string or a bounded number belongs
BAD_VALUES = {
    "huge float": "1e400",
    "negative huge float": "-1e400",
    "digits beyond int()": "9" * 5000,
    "object": '{"a": "' + SECRET + '"}',
    "list": '["' + SECRET + '"]',
    "true": "true",
    "float": "1.5",
    "huge string": json.dumps(SECRET + "x" * 200_000),
    "lone surrogate": '"\\ud800"',
    "deep nesting": "[" * 100_000 + "]" * 100_000,
    "newline": json.dumps(SECRET + "\n"),
    "non-numeric": json.dumps(SECRET),
}
STRINGS = {"newline", "non-numeric"}  # wrong only where a field has a form (numbers, UIDs, names, buckets)
FREE_TEXT = {"crc32c", "transfer_syntax", "modality", "event_time", "target", "created", "store"}
OPTIONAL = {("crc32c", "null"), ("modality", "null"), ("replaced", "true"), ("attempt", "null")}


def _with(body: str, field: str, raw: str) -> bytes:
    """The JSON object ``body`` with ``field``'s value replaced by the raw JSON text ``raw``."""
    parsed = json.loads(body)
    parsed[field] = "__RAW__"
    return json.dumps(parsed).replace('"__RAW__"', raw).encode()


def _assert_malformed(parse: Callable[[], Any]) -> MalformedEventError:
    with pytest.raises(MalformedEventError) as caught:
        parse()
    message = str(caught.value)
    assert SECRET not in message and "xxxxxxxxxx" not in message and len(message) < 300
    return caught.value


RECORD_FIELDS = ["bucket", "name", "generation", "size", "crc32c", "study_uid", "series_uid", "sop_uid",
                 "transfer_syntax", "modality", "event_time", "attempt"]  # fmt: skip


@pytest.mark.parametrize("field", RECORD_FIELDS)
@pytest.mark.parametrize("bad", list(BAD_VALUES), ids=list(BAD_VALUES))
def test_parse_pending_refuses_any_bad_field_naming_the_field(field: str, bad: str) -> None:
    if bad in STRINGS and (field in FREE_TEXT or (field, bad) == ("name", "non-numeric")):
        return  # a valid value for this field
    data = _with(RECORD.to_json().decode(), field, BAD_VALUES[bad])
    error = _assert_malformed(lambda: parse_pending(data))
    if bad != "deep nesting":  # too deep is found before any field is read
        assert field in str(error)


@pytest.mark.parametrize("field", ["bucket", "name", "generation", "size", "study_uid", "sop_uid", "event_time"])
def test_parse_pending_refuses_a_missing_or_null_field(field: str) -> None:
    _assert_malformed(lambda: parse_pending(_with(RECORD.to_json().decode(), field, "null")))


@pytest.mark.parametrize("field,raw", sorted(OPTIONAL))
def test_parse_pending_takes_a_null_optional_field(field: str, raw: str) -> None:
    assert isinstance(parse_pending(_with(RECORD.to_json().decode(), field, raw)), PendingRecord)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe\x00garbage",
        b"[]",
        b"null",
        b"1e400",
        b'"x"',
        b"[" * 200_000,
        b'{"version": 1e400}',
        b'{"version": true}',
        b'{"version": 1, "kind": {"a": 1}}',
        b'{"version": 1, "kind": "ready"}',
        b'{"version": 1, "kind": "ready", "bucket": "b-1", "folder": 7, "event_time": "t"}',
        b'{"version": 1, "kind": "skipped", "bucket": "b-1", "name": "a", "generation": "x", "event_time": "t"}',
        b'{"version": 1, "kind": "other"}',
        b"{" + b'"a":' * 50_000,
    ],
    ids=lambda d: repr(d[:24]),
)
def test_parse_pending_refuses_garbage_messages(data: bytes) -> None:
    _assert_malformed(lambda: parse_pending(data))


def test_parse_pending_refuses_generation_that_is_not_a_number() -> None:
    error = _assert_malformed(lambda: parse_pending(_with(RECORD.to_json().decode(), "generation", '"12a"')))
    assert "generation" in str(error)


def test_parse_pending_refuses_a_forged_size_out_of_range() -> None:
    error = _assert_malformed(lambda: parse_pending(_with(RECORD.to_json().decode(), "size", str(10**15))))
    assert "size" in str(error) and "range" in str(error)


@pytest.mark.parametrize("field", ["operation", "batch_id", "manifest_uri", "kind", "target"])
@pytest.mark.parametrize("bad", list(BAD_VALUES), ids=list(BAD_VALUES))
def test_watch_message_refuses_any_bad_field(field: str, bad: str) -> None:
    if bad in STRINGS and field in FREE_TEXT:
        return  # a valid value for this field
    data = _with(WATCH.to_json().decode(), field, BAD_VALUES[bad])
    _assert_malformed(lambda: WatchMessage.from_json(data))


@pytest.mark.parametrize(
    "operation",
    ["operations/7", "projects/p/operations/7", "projects/p/locations/l/datasets/d/operations/",
     "projects/p/locations/l/datasets/d/operations/7/../../x", " projects/p/locations/l/datasets/d/operations/7"],
)  # fmt: skip
def test_watch_message_refuses_a_malformed_operation_name(operation: str) -> None:
    error = _assert_malformed(lambda: WatchMessage.from_json(_with(WATCH.to_json().decode(), "operation",
                                                                   json.dumps(operation))))  # fmt: skip
    assert "operation" in str(error)


def test_watch_message_round_trips() -> None:
    assert WatchMessage.from_json(WATCH.to_json()) == WATCH


def _envelope(message: Any) -> dict[str, Any]:
    return {"message": message, "subscription": "projects/p/subscriptions/s"}


@pytest.mark.parametrize(
    "data",
    [
        None,
        7,
        "x",
        [],
        {"message": 7},
        _envelope({"data": 7}),
        _envelope({"data": "!!!"}),
        _envelope({"data": "", "attributes": {"a": 1}}),
        _envelope({"data": "", "attributes": {SECRET: {"x": 1}}}),
        _envelope({"data": "", "attributes": {str(i): "v" for i in range(1000)}}),
        _envelope({"data": "", "messageId": {"a": SECRET}}),
        _envelope({"data": "", "publishTime": ["t"]}),
    ],
)
def test_pubsub_message_refuses_a_bad_envelope(data: Any) -> None:
    _assert_malformed(lambda: pubsub_message(data))


def _notification(payload: bytes, **attributes: str) -> dict[str, Any]:
    base = {"eventType": "OBJECT_FINALIZE", "bucketId": "src-bucket", "objectId": "a.dcm", "objectGeneration": "1"}
    return _envelope({"data": base64.b64encode(payload).decode(), "attributes": {**base, **attributes}})


@pytest.mark.parametrize(
    "event_type,data",
    [(STORAGE_FINALIZED, {"bucket": "b", "name": {"a": SECRET}, "generation": "1", "timeCreated": "t"}),
     (STORAGE_FINALIZED, {"bucket": "b", "name": "a", "generation": {"x": 1}, "timeCreated": "t"}),
     (STORAGE_FINALIZED, {"bucket": "b", "name": "a", "generation": "1", "size": 1e400, "timeCreated": "t"}),
     (STORAGE_FINALIZED, {"bucket": "b", "name": "a", "generation": "1", "size": "12a", "timeCreated": "t"}),
     (STORAGE_FINALIZED, {"bucket": "b", "name": "a", "generation": "x1", "timeCreated": "t"}),
     (STORAGE_FINALIZED, {"bucket": "b", "name": "a", "generation": "1", "crc32c": {"a": 1}, "timeCreated": "t"}),
     (STORAGE_FINALIZED, {"bucket": "b", "name": "a", "generation": "1", "timeCreated": {"a": 1}}),
     (STORAGE_FINALIZED, {"bucket": "b", "name": "a" * 2000, "generation": "1", "timeCreated": "t"}),
     (PUBSUB_PUBLISHED, _notification(b"[" * 100_000)), (PUBSUB_PUBLISHED, _notification(b"\xff\x00")),
     (PUBSUB_PUBLISHED, _notification(b'{"size": 1e400}')), (PUBSUB_PUBLISHED, _notification(b"9" * 5000)),
     (PUBSUB_PUBLISHED, _notification(b'{"name": ["x"]}'))],
)  # fmt: skip
def test_parse_object_event_refuses_bad_events(event_type: str, data: Any) -> None:
    _assert_malformed(lambda: parse_object_event(event_type, data, "2026-11-28T12:00:00Z"))


_MANIFEST = {"version": 1, "batch_id": "20261128T120000Z-abc", "created": "2026-11-28T12:00:00+00:00",
             "store": "projects/p/locations/l/datasets/d/dicomStores/s",
             "imports": [{"uri": "gs://b/x/**", "operation": "projects/p/locations/l/datasets/d/operations/1",
                          "files": 1}],
             "files": [{**RECORD.to_dict(), "via": "gs://b/x/**", "staged": None}], "failures": []}  # fmt: skip


@pytest.mark.parametrize("field", ["batch_id", "created", "store", "imports", "files", "failures", "duplicates",
                                   "planner", "skipped"])  # fmt: skip
@pytest.mark.parametrize("bad", ["1e400", "9" * 5000, '{"a": 1}', "[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]", "true",
                                 '"' + SECRET + '"', "[" * 50_000 + "]" * 50_000])  # fmt: skip
def test_manifest_read_back_refuses_any_bad_field(field: str, bad: str) -> None:
    from dicomflow.parsing import load_json

    if (bad.startswith('"') and field in FREE_TEXT) or (field, bad) == ("planner", '{"a": 1}'):
        return  # a valid value for this field

    def parse() -> Manifest:
        return Manifest.from_dict(load_json(_with(json.dumps(_MANIFEST), field, bad), "manifest"))

    _assert_malformed(parse)


@pytest.mark.parametrize("field", ["generation", "size", "name", "via", "sop_uid"])
def test_manifest_read_back_refuses_a_bad_file_entry(field: str) -> None:
    body = json.loads(json.dumps(_MANIFEST))
    body["files"][0][field] = {"a": SECRET}
    _assert_malformed(lambda: Manifest.from_dict(body))


def test_manifest_read_back_round_trips() -> None:
    manifest = Manifest.from_dict(_MANIFEST)
    assert Manifest.from_dict(manifest.to_dict()) == manifest


@pytest.mark.parametrize(
    "parse",
    [FailureNote.from_dict, ImportMarker.from_dict, ExportMarker.from_dict, ResultMarker.from_dict],
    ids=["failure note", "import marker", "export marker", "result marker"],
)
@pytest.mark.parametrize(
    "body",
    [7, None, [], {}, {"bucket": 1e400, "name": "n", "stage": "s", "reason": "r"}, {"operation": {"a": SECRET}},
     {"target": "t", "status": "bogus"}, {"target": "t", "status": "done", "attempts": 1e400},
     {"status": ["x"]}, {"operation": "o", "counter": [SECRET], "failures": 7},
     {"operation": "o", "failures": [{"bucket": {"a": SECRET}}]}],
)  # fmt: skip
def test_ledger_state_read_back_refuses_bad_bodies(parse: Callable[[Any], Any], body: Any) -> None:
    _assert_malformed(lambda: parse(body))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from([*RECORD_FIELDS, "version", "kind", "replaced"]), value=_JSON)
def test_parse_pending_is_total_over_any_json_value_in_any_field(field: str, value: Any) -> None:
    body = {**json.loads(RECORD.to_json()), field: value}
    try:
        record = parse_pending(json.dumps(body).encode())
    except MalformedEventError:
        return
    if isinstance(record, PendingRecord):  # what parses is well typed
        assert isinstance(record.size, int) and record.generation.isdigit() and isinstance(record.name, str)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_every_message_parser_is_total_over_binary_garbage(data: bytes) -> None:
    for parse in (parse_pending, WatchMessage.from_json):
        with contextlib.suppress(MalformedEventError):
            parse(data)


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(["operation", "batch_id", "manifest_uri", "kind", "target", "version"]), value=_JSON)
def test_watch_message_is_total_over_any_json_value_in_any_field(field: str, value: Any) -> None:
    with contextlib.suppress(MalformedEventError):
        WatchMessage.from_json(json.dumps({**json.loads(WATCH.to_json()), field: value}).encode())


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def test_nesting_is_measured_before_the_json_parser_recurses(monkeypatch: pytest.MonkeyPatch) -> None:
    """json.loads recurses per level; near the recursion limit even a finalizer run by the collector fails."""
    from dicomflow import parsing

    def no_parser(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("json.loads reached")

    monkeypatch.setattr(json, "loads", no_parser)
    for deep in ("[" * 200_000 + "]" * 200_000, _nested(33), "[" * 200_000, '["' + "[" * 5000):
        with pytest.raises(MalformedEventError):
            parsing.load_json(deep, "message")


@pytest.mark.parametrize(
    ("text", "meaning"),
    [(_nested(32), "fine"), ("[" * 32 + "]" * 32, "fine"), (_nested(33), "deep"), ("[" * 33 + "]" * 33, "deep"),
     (json.dumps({"a": "[[[[" * 100, "b": "}}}"}), "fine"), (json.dumps(["\\\"[[[" * 50]), "fine"),
     ("[}", "not"), ("{not json", "not"), ("[" * 200_000, "not"), ("]" * 50 + "[" * 50, "not")],
)  # fmt: skip
def test_nesting_limit_counts_brackets_outside_strings_only(text: str, meaning: str) -> None:
    from dicomflow.parsing import load_json

    if meaning == "fine":
        assert load_json(text, "message") == json.loads(text)
    else:
        error = _assert_malformed(lambda: load_json(text, "message"))
        assert ("nests deeper than 32 levels" if meaning == "deep" else "is not JSON") in str(error)


def test_json_in_any_encoding_json_loads_takes_still_parses() -> None:
    from dicomflow.parsing import load_json

    body = {"name": "ünïcode/[a].dcm", "n": [1, [2]]}
    for encoding in ("utf-8", "utf-16", "utf-32", "utf-8-sig"):
        assert load_json(json.dumps(body, ensure_ascii=False).encode(encoding), "message") == body
