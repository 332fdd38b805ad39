"""Reasons of reported files from Cloud Logging: read only when a file is reported, bounded by the failure
count, read again while ingestion lags (up to FAILURE_LOG_WAIT_SECONDS), and a fallback when unreadable."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from dicomflow.errors import PermissionDeniedError, RetryableError
from dicomflow.ports import FileError
from dicomflow.stages.follow import Follower
from tests.fakes.services import FakeErrorLog
from tests.unit.test_follow import IMPORT_OP, NOW, PollClock, World, _file, _settings

SAMPLE = {"resource": "gs://src/up/1.1.1.3.dcm", "error": {"message": "sample says: bad file"}}
LOGGED = [FileError("gs://src/up/1.1.1.2.dcm", 3, "logged: missing SOP Instance UID"),
          FileError("gs://src/up/1.1.1.3.dcm", 3, "logged: not a DICOM file")]  # fmt: skip


def _world(failures: int = 2, attempt: int = 3, **settings: Any) -> tuple[World, FakeErrorLog, PollClock, Follower]:
    """Three files, the first stored, the other two failed by the import (at their last attempt)."""
    files = [_file("1.1.1.1"), _file("1.1.1.2", attempt=attempt), _file("1.1.1.3", attempt=attempt)]
    world = World(files, _settings(max_attempts=3, **settings))
    world.healthcare.stored = {("1.1", "1.1.1", "1.1.1.1")}
    error = {"code": 3, "message": "2 of 3 items failed", "details": [{"sampleErrors": [SAMPLE]}]}
    counter = {"success": "1", "failure": str(failures)}
    world.healthcare.operations[IMPORT_OP] = {"name": IMPORT_OP, "done": True, "error": error,
                                              "metadata": {"counter": counter}}  # fmt: skip
    errors, clock = FakeErrorLog({IMPORT_OP: list(LOGGED)}), PollClock()
    follower = Follower(world.settings, store=world.store, healthcare=world.healthcare, publisher=world.publisher,
                        now=lambda: NOW, clock=clock, sleep=clock.sleep, error_log=errors)  # fmt: skip
    return world, errors, clock, follower


def _reasons(world: World) -> dict[str, str]:
    return {f["name"]: f["reason"] for f in world.publisher.bodies("dicom-failed")}


def test_each_reported_file_carries_the_reason_logged_for_it_over_the_sample_error() -> None:
    world, errors, clock, follower = _world()
    follower.follow(world.watch())
    reasons = _reasons(world)
    assert reasons["up/1.1.1.2.dcm"].endswith("logged: missing SOP Instance UID")
    assert reasons["up/1.1.1.3.dcm"].endswith("logged: not a DICOM file")
    assert errors.reads == [(IMPORT_OP, 2)]  # one query, bounded by the operation's failure count
    assert clock.sleeps == []


def test_logs_are_not_read_when_no_file_is_reported() -> None:
    # GIVEN the two failed files still have attempts left: they are re-driven, not reported
    world, errors, _clock, follower = _world(attempt=1)
    result = follower.follow(world.watch())
    assert (result.redriven, result.failed) == (2, 0)
    assert errors.reads == []


def test_a_lagging_log_is_read_again_until_it_holds_every_failure() -> None:
    world, errors, clock, follower = _world()
    errors.lag_reads = 2
    follower.follow(world.watch())
    assert len(errors.reads) == 3 and clock.sleeps == [5.0, 5.0]
    assert _reasons(world)["up/1.1.1.2.dcm"].endswith("logged: missing SOP Instance UID")


def test_a_log_that_stops_growing_short_of_the_failures_is_not_waited_for_longer() -> None:
    # GIVEN a log that shows one entry, then still one (the API logs a limited number past a threshold)
    world, errors, clock, follower = _world()
    errors.shown = [1]
    follower.follow(world.watch())
    # THEN two reads, one interval apart, and the second file falls back to its sample error
    assert len(errors.reads) == 2 and clock.sleeps == [5.0]
    reasons = _reasons(world)
    assert reasons["up/1.1.1.2.dcm"].endswith("logged: missing SOP Instance UID")
    assert reasons["up/1.1.1.3.dcm"].endswith("sample says: bad file")


def test_a_log_still_growing_is_read_again() -> None:
    world, errors, clock, follower = _world()
    errors.shown = [0, 1, 2]
    follower.follow(world.watch())
    assert len(errors.reads) == 3 and clock.sleeps == [5.0, 5.0]


def test_after_the_wait_the_files_are_reported_with_the_fallback_reasons() -> None:
    # GIVEN a log that never shows the errors within FAILURE_LOG_WAIT_SECONDS (12 s)
    world, errors, clock, follower = _world(failure_log_wait_seconds=12)
    errors.lag_reads = 1000
    follower.follow(world.watch())
    # THEN it read at 0, 5, 10 and 12 s, then reported: the sample error, else the operation's summary
    assert clock.sleeps == [5.0, 5.0, 2.0] and len(errors.reads) == 4
    reasons = _reasons(world)
    assert reasons["up/1.1.1.3.dcm"].endswith("sample says: bad file")
    assert reasons["up/1.1.1.2.dcm"].endswith("2 of 3 items failed")


def test_a_refused_log_read_reports_with_the_fallback_and_one_error_naming_the_role(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world, errors, clock, follower = _world()
    errors.refuse = PermissionDeniedError("Cloud Logging entries.list: HTTP 403 (needs roles/logging.viewer)", 403)
    with caplog.at_level(logging.ERROR, logger="dicomflow.reconcile.logged_reasons"):
        follower.follow(world.watch())
    assert len(errors.reads) == 1 and clock.sleeps == []
    assert _reasons(world)["up/1.1.1.3.dcm"].endswith("sample says: bad file")
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "roles/logging.viewer" in record.getMessage()


def test_an_unavailable_log_is_not_waited_for() -> None:
    world, errors, clock, follower = _world()
    errors.refuse = RetryableError("Cloud Logging entries.list: HTTP 503")
    follower.follow(world.watch())
    assert len(errors.reads) == 1 and clock.sleeps == []
    assert len(_reasons(world)) == 2


def test_a_conflict_says_so_in_the_logged_words() -> None:
    # GIVEN both files' UIDs in the store, one with other content, and the import's log entry for it
    world, errors, _clock, follower = _world(failures=1)
    world.store.objects[("src", "up/1.1.1.2.dcm")] = b"new bytes"
    world.healthcare.stored |= {("1.1", "1.1.1", "1.1.1.2"), ("1.1", "1.1.1", "1.1.1.3")}
    world.healthcare.contents = {("1.1", "1.1.1", "1.1.1.2"): b"old bytes", ("1.1", "1.1.1", "1.1.1.3"): b"DICM"}
    errors.entries[IMPORT_OP] = [FileError("gs://src/up/1.1.1.2.dcm", 6, "logged: instance exists, other data")]
    follower.follow(world.watch())
    [conflict] = world.publisher.bodies("dicom-failed")
    assert conflict["stage"] == "conflict" and "logged: instance exists, other data" in conflict["reason"]
