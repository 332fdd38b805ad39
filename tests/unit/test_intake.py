"""Intake with in-memory fakes: selection, exclusions, sniffing outcomes, what is published."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from devstack.fileset import write_file_set
from devstack.synthetic import generate_dataset, make_instance
from dicomflow.config.settings import Settings
from dicomflow.ledger.failures import failure_notes
from dicomflow.messages.events import ObjectEvent
from dicomflow.messages.records import SkippedFile, parse_pending
from dicomflow.ports import Message
from dicomflow.stages.intake import IntakeOutcome, examine, handle_object_event, publish_all
from tests.fakes.services import FakePublisher, FakeStore

SETTINGS = Settings(
    project_id="proj", location="us-central1", dataset="ds", dicom_store="store", source_buckets=("incoming",),
    state_bucket="incoming", exclude_prefixes=("quarantine/",), sniff_extensionless=True,
)  # fmt: skip
DICOM = make_instance(study_uid="1.2", series_uid="1.2.3", sop_uid="1.2.3.4", patient_name="SYNTH^HIDDEN^9999")


def _run(name: str, data: bytes | None, bucket: str = "incoming") -> tuple[IntakeOutcome, FakePublisher]:
    store = FakeStore({(bucket, name): data} if data is not None else {})
    publisher = FakePublisher()
    event = ObjectEvent(bucket, name, "7", len(data) if data is not None else 10, None, "2026-11-28T10:00:00Z")
    return handle_object_event(event, SETTINGS, store=store, publisher=publisher), publisher


def test_intake_publishes_a_pending_record_with_the_header_uids() -> None:
    outcome, publisher = _run("a/IM1.DCM", DICOM)
    assert outcome is IntakeOutcome.PENDING
    [record] = publisher.bodies("dicom-pending")
    assert (record["sop_uid"], record["generation"], record["attempt"], record["version"]) == ("1.2.3.4", "7", 1, 1)
    assert "SYNTH^HIDDEN" not in json.dumps(record)


def test_intake_reports_a_non_dicom_dcm_file_as_failed() -> None:
    outcome, publisher = _run("a/notes.dcm", b"plain text")
    assert outcome is IntakeOutcome.FAILED
    [failed] = publisher.bodies("dicom-failed")
    assert failed["stage"] == "intake" and "DICM" in failed["reason"]


def test_intake_notes_a_failure_by_generation_in_the_state_bucket() -> None:
    store = FakeStore({("incoming", "a/bad.dcm"): b"not dicom"})
    event = ObjectEvent("incoming", "a/bad.dcm", "7", 9, None, "2026-11-28T10:00:00Z")
    assert handle_object_event(event, SETTINGS, store=store, publisher=FakePublisher()) is IntakeOutcome.FAILED
    notes = failure_notes(SETTINGS, store)
    reported = notes.reported()
    assert reported.holds("incoming", "a/bad.dcm", "7")
    assert not reported.holds("incoming", "a/bad.dcm", "8")  # a rewritten file was not reported yet
    assert not reported.holds("incoming", "a/other.dcm", "7")
    note = notes.read("incoming", "a/bad.dcm", "7")
    assert note is not None and (note.stage, note.name) == ("intake", "a/bad.dcm") and "DICM" in note.reason


def test_intake_ignores_what_is_not_ours() -> None:
    assert _run("a/IM1.dcm", DICOM, bucket="elsewhere")[0] is IntakeOutcome.IGNORED_FOREIGN_BUCKET
    assert _run("quarantine/IM1.dcm", DICOM)[0] is IntakeOutcome.IGNORED_EXCLUDED
    assert _run("dicomflow/batches/x/manifest.json", b"{}")[0] is IntakeOutcome.IGNORED_EXCLUDED
    assert _run("a/readme.txt", b"hi")[0] is IntakeOutcome.IGNORED_NOT_SELECTED


def test_intake_sniffs_extensionless_objects_when_enabled() -> None:
    assert _run("a/IM000001", DICOM)[0] is IntakeOutcome.PENDING
    outcome, publisher = _run("a/LICENSE", b"not dicom")
    assert outcome is IntakeOutcome.IGNORED_NOT_SELECTED
    assert publisher.published == []


def test_intake_ignores_an_object_that_is_gone() -> None:
    outcome, publisher = _run("a/deleted.dcm", None)
    assert outcome is IntakeOutcome.IGNORED_GONE
    assert publisher.published == []


def test_intake_sniffs_extensionless_objects_by_default() -> None:
    # GIVEN settings that leave SNIFF_EXTENSIONLESS at its default
    defaults = Settings(project_id="p", location="l", dataset="d", dicom_store="s", source_buckets=("incoming",),
                        state_bucket="state")  # fmt: skip
    store = FakeStore({("incoming", "CD/CT1/17106"): DICOM})
    publisher = FakePublisher()
    event = ObjectEvent("incoming", "CD/CT1/17106", "7", len(DICOM), None, "2026-11-28T10:00:00Z")
    # WHEN an extensionless DICOM file arrives THEN it is queued
    assert handle_object_event(event, defaults, store=store, publisher=publisher) is IntakeOutcome.PENDING
    assert [r["name"] for r in publisher.bodies("dicom-pending")] == ["CD/CT1/17106"]


def test_intake_skips_a_dicomdir_with_one_info_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN the DICOMDIR of a media file-set written with pydicom's FileSet API
    dicomdir = write_file_set(generate_dataset(1, 1, 2, seed=3), tmp_path)[0]
    # WHEN it arrives (by its usual name, or named .dcm)
    with caplog.at_level(logging.DEBUG, logger="dicomflow.stages.intake"):
        outcomes = [_run(name, dicomdir.read_bytes()) for name in ("cd/DICOMDIR", "cd/dicomdir.dcm")]
    # THEN it is skipped: no record and nothing failed, only a note for its file-set's batch; one INFO line each
    assert [outcome for outcome, _ in outcomes] == [IntakeOutcome.SKIPPED_MEDIA_DIRECTORY] * 2
    assert [(topic, parse_pending(data)) for _, publisher in outcomes for topic, data, _ in publisher.published] == [
        ("dicom-pending", SkippedFile("incoming", "cd/DICOMDIR", "7", "2026-11-28T10:00:00Z")),
        ("dicom-pending", SkippedFile("incoming", "cd/dicomdir.dcm", "7", "2026-11-28T10:00:00Z")),
    ]
    assert outcomes[0][1].bodies("dicom-pending")[0]["kind"] == "skipped"
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [("INFO", "DICOMDIR (index of a media file-set, not an instance) skipped")] * 2


def test_intake_reports_dicm_followed_by_garbage_as_unreadable() -> None:
    outcome, publisher = _run("a/broken.dcm", b"\0" * 128 + b"DICM" + bytes(range(256)) * 8)
    assert outcome is IntakeOutcome.FAILED
    [failed] = publisher.bodies("dicom-failed")
    assert failed["reason"].startswith("unreadable DICOM:")


def test_intake_logs_events_from_other_buckets_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="dicomflow.stages.intake"):
        assert _run("dicomflow/batches/b1/manifest.json", b"{}", bucket="exports")[0] is (
            IntakeOutcome.IGNORED_FOREIGN_BUCKET
        )
    assert [r.levelname for r in caplog.records] == ["DEBUG"]


def test_a_ready_marker_is_queued_as_a_marker_never_as_a_file() -> None:
    settings = Settings(project_id="proj", location="l", dataset="d", dicom_store="s", source_buckets=("src",),
                        state_bucket="state", ready_marker="_READY", sniff_extensionless=True)  # fmt: skip
    store, publisher = FakeStore({("src", "study1/_READY"): b""}), FakePublisher()
    event = ObjectEvent("src", "study1/_READY", "3", 0, None, "2026-12-02T12:00:00+00:00")
    outcome = handle_object_event(event, settings, store=store, publisher=publisher)
    assert outcome is IntakeOutcome.READY_MARKER
    [body] = publisher.bodies("dicom-pending")
    assert (body["kind"], body["folder"]) == ("ready", "study1/") and publisher.bodies("dicom-failed") == []
    assert store.reads == []  # never sniffed


def test_publish_all_sends_one_publish_call_per_topic() -> None:
    """The backfill publishes a chunk at a time: records and failures each go out in one call of their topic."""
    names = {f"a/{i}.dcm": make_instance(study_uid="1.2", series_uid="1.2.3", sop_uid=f"1.2.3.{i}") for i in range(5)}
    names["a/bad.dcm"] = b"not dicom at all"
    store = FakeStore({("incoming", name): data for name, data in names.items()})
    examined = [
        examine(ObjectEvent("incoming", name, "1", len(data), None, "2026-11-28T10:00:00Z"), SETTINGS, store=store)
        for name, data in names.items()
    ]
    calls: list[tuple[str, int]] = []
    publisher = FakePublisher()
    original = publisher.publish

    def counting(topic: str, messages: Sequence[Message]) -> list[str]:
        calls.append((topic, len(messages)))
        return original(topic, messages)

    publisher.publish = counting  # type: ignore[method-assign]
    publish_all(examined, SETTINGS, publisher, store)
    assert sorted(calls) == [("dicom-failed", 1), ("dicom-pending", 5)]
    assert sorted(r["sop_uid"] for r in publisher.bodies("dicom-pending")) == [f"1.2.3.{i}" for i in range(5)]


class _DenyingStore(FakeStore):
    def read_range(self, bucket: str, name: str, generation: str | None, start: int, end: int) -> bytes:
        from dicomflow.errors import PermissionDeniedError

        raise PermissionDeniedError(f"reading gs://{bucket}/{name}: HTTP 403 (grant roles/storage.objectViewer)", 403)


def test_intake_reports_a_read_refused_for_good_on_the_failed_topic_with_a_note() -> None:
    # GIVEN an object the pipeline may not read (403)
    store, publisher = _DenyingStore({("incoming", "a/IM1.dcm"): DICOM}), FakePublisher()
    event = ObjectEvent("incoming", "a/IM1.dcm", "7", len(DICOM), None, "2026-11-28T10:00:00Z")
    # WHEN intake handles its event THEN it is reported (once) with the API's reason, and noted for status
    assert handle_object_event(event, SETTINGS, store=store, publisher=publisher) is IntakeOutcome.FAILED
    [failed] = publisher.bodies("dicom-failed")
    assert (failed["stage"], failed["name"], failed["generation"]) == ("intake", "a/IM1.dcm", "7")
    assert "HTTP 403" in failed["reason"]
    assert failure_notes(SETTINGS, store).read("incoming", "a/IM1.dcm", "7") is not None
    assert publisher.bodies("dicom-pending") == []


def test_intake_reports_a_deflate_bomb_as_not_dicom() -> None:
    from devstack.hostile import deflate_bomb

    bomb = deflate_bomb(64 << 20)
    settings = dataclasses.replace(SETTINGS, max_header_bytes=1 << 20)
    store, publisher = FakeStore({("incoming", "a/bomb.dcm"): bomb}), FakePublisher()
    event = ObjectEvent("incoming", "a/bomb.dcm", "7", len(bomb), None, "2026-11-28T10:00:00Z")
    assert handle_object_event(event, settings, store=store, publisher=publisher) is IntakeOutcome.FAILED
    [failed] = publisher.bodies("dicom-failed")
    assert "header too large" in failed["reason"]
