"""CONFLICT_POLICY with fakes: report (the default) reports a conflict; replace deletes the stored instance and
re-drives the file once, reports a second conflict, a refused delete, and an instance the same batch stored."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest

from dicomflow.batching.held import Held
from dicomflow.config.settings import Settings
from dicomflow.errors import ConfigurationError, PermissionDeniedError, RetryableError
from dicomflow.ledger.manifest import ManifestFile
from dicomflow.ports import ReceivedMessage
from tests.fakes.services import FakeHealthcare
from tests.unit.test_follow import IMPORT_OP, URI, World, _file, _settings
from tests.unit.test_settings import REQUIRED

KEY = ("1.1", "1.1.1", "1.1.1.2")  # the UIDs of up/1.1.1.2.dcm, which the store holds with other content


def _conflicting_world(policy: str, files: list[ManifestFile] | None = None, failures: int = 1) -> World:
    """An import of up/1.1.1.1.dcm (stored, same bytes) and up/1.1.1.2.dcm (refused: the store holds other bytes)."""
    files = files or [_file("1.1.1.1"), _file("1.1.1.2")]
    world = World(files, _settings(max_attempts=3, conflict_policy=policy))
    world.store.objects[("src", "up/1.1.1.1.dcm")] = b"same bytes"
    world.store.objects[("src", "up/1.1.1.2.dcm")] = b"new bytes"
    world.healthcare.stored = {("1.1", "1.1.1", "1.1.1.1"), KEY}
    world.healthcare.contents = {("1.1", "1.1.1", "1.1.1.1"): b"same bytes", KEY: b"old bytes"}
    counter = {"success": str(len(files) - failures), "failure": str(failures)}
    world.healthcare.operations[IMPORT_OP] = {"done": True, "metadata": {"counter": counter},
                                              "error": {"code": 3, "message": "some failed"}}  # fmt: skip
    return world


def _adds_up(summary: dict[str, Any]) -> bool:
    counted = summary["imported"] + summary["duplicates"] + summary["failed"] + summary["redriven"]
    return bool(summary["files"] == counted)


def test_report_is_the_default_and_leaves_the_stored_instance() -> None:
    # GIVEN the default policy WHEN a conflict is followed up
    world = _conflicting_world("report")
    assert _settings().conflict_policy == "report"
    result = world.follow(world.watch())
    # THEN it is reported, nothing is deleted or re-driven, the stored content stays
    assert (result.redriven, result.failed) == (0, 1)
    [failed] = world.publisher.bodies("dicom-failed")
    assert (failed["name"], failed["stage"], failed["attempt"]) == ("up/1.1.1.2.dcm", "conflict", 1)
    assert "not replaced" not in failed["reason"]
    assert world.healthcare.delete_calls == [] and world.healthcare.contents[KEY] == b"old bytes"
    assert world.publisher.bodies("dicom-pending") == []


def test_replace_deletes_the_stored_instance_and_redrives_the_file(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN CONFLICT_POLICY=replace WHEN a conflict is followed up
    world = _conflicting_world("replace")
    with caplog.at_level(logging.INFO, logger="dicomflow.reconcile.conflicts"):
        result = world.follow(world.watch())
    # THEN the stored instance is deleted once and the file re-driven (attempt 2, marked replaced), not reported
    assert world.healthcare.delete_calls == [KEY]
    assert (result.redriven, result.failed) == (1, 0)
    [redriven] = world.publisher.bodies("dicom-pending")
    assert (redriven["name"], redriven["attempt"], redriven["replaced"]) == ("up/1.1.1.2.dcm", 2, True)
    assert world.publisher.bodies("dicom-failed") == []
    # AND the batch counts it re-driven: the counts add up
    [summary] = world.publisher.bodies("dicom-results")
    assert (summary["files"], summary["imported"], summary["redriven"], summary["failed"]) == (2, 1, 1, 0)
    assert _adds_up(summary)
    # AND one log line names the instance by its UIDs and the source object (no tag value: none is known here)
    [line] = [r for r in caplog.records if "deleted to replace" in r.getMessage()]
    logged = line.fields  # type: ignore[attr-defined]
    assert (logged["study_uid"], logged["series_uid"], logged["sop_uid"]) == KEY
    assert (logged["object"], logged["already_gone"]) == ("up/1.1.1.2.dcm", False)
    # AND a redelivered watch neither deletes nor re-drives again
    world.follow(world.watch())
    assert world.healthcare.delete_calls == [KEY] and len(world.publisher.bodies("dicom-pending")) == 1


def test_a_replaced_file_that_conflicts_again_is_reported_not_replaced_again() -> None:
    # GIVEN a file re-driven after replacing, whose UIDs another file took first (the store holds other bytes again)
    again = ManifestFile(replace(_file("1.1.1.2").record, attempt=2, replaced=True), URI, None)
    world = _conflicting_world("replace", [_file("1.1.1.1"), again])
    # WHEN followed up
    result = world.follow(world.watch())
    # THEN it is reported as a conflict, and the stored instance stays
    assert (result.redriven, result.failed) == (0, 1)
    [failed] = world.publisher.bodies("dicom-failed")
    assert (failed["name"], failed["stage"], failed["attempt"]) == ("up/1.1.1.2.dcm", "conflict", 2)
    assert "not replaced: it conflicted again after the stored instance was replaced" in failed["reason"]
    assert world.healthcare.delete_calls == [] and world.healthcare.contents[KEY] == b"old bytes"
    assert world.publisher.bodies("dicom-pending") == []


def test_a_delete_refused_for_good_is_reported_with_its_reason() -> None:
    # GIVEN replace, and a store that refuses the delete (a missing dicomWebDelete permission)
    world = _conflicting_world("replace")
    world.healthcare.refuse_deletes = PermissionDeniedError("DICOMweb DELETE: HTTP 403 (grant ...dicomEditor)", 403)
    # WHEN followed up THEN the file is reported with the refusal, not re-driven; the stored instance stays
    result = world.follow(world.watch())
    assert (result.redriven, result.failed) == (0, 1)
    [failed] = world.publisher.bodies("dicom-failed")
    assert failed["stage"] == "conflict"
    assert "not replaced: deleting the stored instance failed: DICOMweb DELETE: HTTP 403" in failed["reason"]
    assert world.healthcare.contents[KEY] == b"old bytes" and world.publisher.bodies("dicom-pending") == []
    [summary] = world.publisher.bodies("dicom-results")
    assert summary["failed"] == 1 and _adds_up(summary)


def test_a_transient_delete_failure_redelivers_the_watch_and_publishes_nothing_yet() -> None:
    # GIVEN replace and a delete answered 503 WHEN followed up THEN the watch fails (Pub/Sub redelivers it)
    world = _conflicting_world("replace")
    world.healthcare.refuse_deletes = RetryableError("DICOMweb DELETE: HTTP 503")
    with pytest.raises(RetryableError):
        world.follow(world.watch())
    assert world.publisher.published == []
    # WHEN redelivered once the API answers THEN the instance is replaced
    world.healthcare.refuse_deletes = None
    assert world.follow(world.watch()).redriven == 1
    assert world.healthcare.delete_calls == [KEY, KEY]  # refused once, then deleted


class _AlreadyGone(FakeHealthcare):
    def delete_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bool:
        return False  # answered 404: someone deleted it between the comparison and the delete


def test_an_instance_already_gone_at_the_delete_still_redrives_the_file() -> None:
    world = _conflicting_world("replace")
    gone = _AlreadyGone(stored=world.healthcare.stored, contents=world.healthcare.contents,
                        operations=world.healthcare.operations)  # fmt: skip
    world.healthcare = gone
    result = world.follow(world.watch())
    assert (result.redriven, result.failed) == (1, 0)
    assert world.publisher.bodies("dicom-failed") == []


def test_two_files_of_a_batch_conflicting_with_one_instance_delete_it_once_and_both_are_redriven() -> None:
    # GIVEN two new files (different objects) with the same UIDs, both refused: the store holds a third content
    twin = ManifestFile(replace(_file("1.1.1.2").record, name="up/twin.dcm"), URI, None)
    world = _conflicting_world("replace", [_file("1.1.1.1"), _file("1.1.1.2"), twin], failures=2)
    world.store.objects[("src", "up/twin.dcm")] = b"twin bytes"
    # WHEN followed up THEN the instance is deleted once and both are re-driven (the next import keeps one; the
    # other then conflicts as a replaced file and is reported)
    result = world.follow(world.watch())
    assert world.healthcare.delete_calls == [KEY]
    assert (result.redriven, result.failed) == (2, 0)
    assert sorted(r["name"] for r in world.publisher.bodies("dicom-pending")) == ["up/1.1.1.2.dcm", "up/twin.dcm"]


def test_an_instance_stored_from_the_same_batch_is_not_replaced() -> None:
    # GIVEN two files of one batch with the same UIDs: the import stored the twin, refused up/1.1.1.2.dcm
    twin = ManifestFile(replace(_file("1.1.1.2").record, name="up/twin.dcm"), URI, None)
    world = _conflicting_world("replace", [_file("1.1.1.1"), _file("1.1.1.2"), twin])
    world.store.objects[("src", "up/twin.dcm")] = b"old bytes"  # the stored content is the twin's
    # WHEN followed up THEN the refused file is reported and the twin stays in the store, counted imported
    result = world.follow(world.watch())
    assert (result.redriven, result.failed) == (0, 1)
    [failed] = world.publisher.bodies("dicom-failed")
    assert failed["name"] == "up/1.1.1.2.dcm"
    assert "not replaced: the stored instance is another file of the same batch" in failed["reason"]
    assert world.healthcare.delete_calls == []
    [summary] = world.publisher.bodies("dicom-results")
    assert (summary["imported"], summary["failed"]) == (2, 1) and _adds_up(summary)


def test_a_flush_keeps_the_replaced_copy_of_a_record_delivered_twice() -> None:
    # GIVEN the same file (bucket, name, generation) pulled twice: once plain, once re-driven after a replace
    plain = _file("1.1.1.2").record
    redriven = replace(plain, attempt=2, replaced=True)
    messages = [ReceivedMessage(f"ack-{i}", r.to_json(), {}, f"m{i}") for i, r in enumerate((plain, redriven))]
    # WHEN the flush dedupes them THEN it keeps the loop guard
    held = Held.from_messages(messages)
    assert held.records[plain.key].replaced is True
    assert held.redelivered == 1 and held.ack_ids[plain.key] == ["ack-0", "ack-1"]


def test_conflict_policy_accepts_report_and_replace_only() -> None:
    assert Settings.from_env({**REQUIRED, "CONFLICT_POLICY": "Replace"}).conflict_policy == "replace"
    with pytest.raises(ConfigurationError, match=r"CONFLICT_POLICY='overwrite': expected one of report, replace"):
        Settings.from_env({**REQUIRED, "CONFLICT_POLICY": "overwrite"})


def test_a_crash_after_the_delete_still_redrives_the_file_as_replaced() -> None:
    # GIVEN replace, and a follow-up that dies after deleting the stored instance, before its re-drive went out
    world = _conflicting_world("replace")
    world.publisher.fail_topics = {"dicom-pending"}
    with pytest.raises(RetryableError):
        world.follow(world.watch())
    assert world.healthcare.delete_calls == [KEY] and KEY not in world.healthcare.stored
    # WHEN the watch is redelivered: the file is now simply missing from the store
    world.publisher.fail_topics = set()
    result = world.follow(world.watch())
    # THEN it is re-driven once, still marked replaced (so a second conflict is reported, not replaced again)
    assert (result.redriven, result.failed) == (1, 0)
    [redriven] = world.publisher.bodies("dicom-pending")
    assert (redriven["name"], redriven["attempt"], redriven["replaced"]) == ("up/1.1.1.2.dcm", 2, True)
    assert world.healthcare.delete_calls == [KEY]
