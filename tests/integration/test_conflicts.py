"""Content conflicts through the real functions and the emulator: a re-upload with the same UIDs and other
bytes ends on dicom-failed (stage conflict) within its batch and the result counts it; an identical
re-upload is harmless. With CONFLICT_POLICY=replace the stored instance is deleted and the new file imported by
the next batch, once: a file that conflicts again is reported, nothing loops."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import requests

from devstack.synthetic import make_instance
from dicomflow.adapters.factory import healthcare_stores
from dicomflow.adapters.pubsub import PubSubPublisher
from dicomflow.config.settings import Settings
from dicomflow.dicom.content import same_content
from dicomflow.errors import RetryableError
from handlers import runtime as runtime_module
from tests.integration.conftest import upload
from tests.integration.pipeline_helpers import (
    Pipeline,
    _intake_all,
    flush_and_follow,
    import_and_follow,
    results,
)

pytestmark = pytest.mark.integration


def _instance(patient_name: str) -> bytes:
    return make_instance(study_uid="2.25.8001", series_uid="2.25.8002", sop_uid="2.25.8003", patient_name=patient_name)


def test_a_conflicting_reupload_is_reported_and_an_identical_one_is_not(pipeline: Pipeline) -> None:
    # GIVEN an instance in the store
    first = _instance("SYNTH^FIRST")
    upload(pipeline.bucket, {"day1/a.dcm": first})
    import_and_follow(pipeline, ["day1/a.dcm"])
    results(pipeline)
    # WHEN the same UIDs arrive again with other content, and once more with the same content
    upload(pipeline.bucket, {"day2/a.dcm": _instance("SYNTH^CHANGED"), "day3/a.dcm": first})
    import_and_follow(pipeline, ["day2/a.dcm", "day3/a.dcm"])
    # THEN the changed file is on dicom-failed as a conflict, on its first attempt; the identical one is not
    failed = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert [(f["name"], f["stage"], f["attempt"]) for f in failed] == [("day2/a.dcm", "conflict", 1)]
    assert "other content" in failed[0]["reason"]
    [result] = results(pipeline)
    assert (result["files"], result["imported"], result["failed"], result["redriven"]) == (2, 1, 1, 0)
    assert pipeline.pull_waiting("pending") == []  # not re-driven


UIDS = "studies/2.25.8001/series/2.25.8002/instances/2.25.8003"


def _replace_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFLICT_POLICY", "replace")
    runtime_module.reset()


def _batch(pipeline: Pipeline, files: dict[str, bytes]) -> list[dict[str, Any]]:
    """Upload, intake, one flush, follow every operation up: the results published."""
    upload(pipeline.bucket, files)
    _intake_all(pipeline, list(files))
    return _flush_and_follow(pipeline)


def _flush_and_follow(pipeline: Pipeline) -> list[dict[str, Any]]:
    flush_and_follow(pipeline)
    return results(pipeline)


def _stored(pipeline: Pipeline) -> bytes:
    url = f"{pipeline.services.healthcare_url}/v1/{pipeline.store.name}/dicomWeb/{UIDS}"
    response = requests.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"}, timeout=30)
    assert response.status_code == 200
    return bytes(response.content)


def _counts(result: dict[str, Any]) -> tuple[int, int, int, int]:
    assert result["files"] == result["imported"] + result["duplicates"] + result["failed"] + result["redriven"]
    return (result["files"], result["imported"], result["failed"], result["redriven"])


def test_replace_stores_the_new_content_and_an_identical_reupload_stays_a_duplicate(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN CONFLICT_POLICY=replace and an instance in the store
    _replace_policy(monkeypatch)
    first, changed = _instance("SYNTH^FIRST"), _instance("SYNTH^CHANGED")
    [result] = _batch(pipeline, {"day1/a.dcm": first})
    assert _counts(result) == (1, 1, 0, 0)
    # WHEN the same UIDs arrive with other content
    [result] = _batch(pipeline, {"day2/a.dcm": changed})
    # THEN its batch re-drives it after deleting the stored instance (counted re-driven, not failed)
    assert _counts(result) == (1, 0, 0, 1)
    # AND one JSON log line names the replaced instance by its UIDs and the file, never a tag value
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    [replaced] = [line for line in lines if line["message"].startswith("conflicting instance deleted to replace")]
    assert (replaced["study_uid"], replaced["series_uid"], replaced["sop_uid"]) == (
        "2.25.8001",
        "2.25.8002",
        "2.25.8003",
    )
    assert replaced["object"] == "day2/a.dcm" and not any("SYNTH^" in json.dumps(line) for line in lines)
    # AND the next batch imports it: the store holds the NEW content, nothing went to dicom-failed
    [result] = _flush_and_follow(pipeline)
    assert _counts(result) == (1, 1, 0, 0)
    stored = _stored(pipeline)
    assert same_content(stored, changed) and not same_content(stored, first)
    assert pipeline.pull_waiting("failed") == [] and pipeline.pull_waiting("pending") == []
    # WHEN the new content is uploaded once more THEN it is a harmless duplicate: imported, nothing deleted
    [result] = _batch(pipeline, {"day3/a.dcm": changed})
    assert _counts(result) == (1, 1, 0, 0)
    assert same_content(_stored(pipeline), changed)
    assert pipeline.pull_waiting("failed") == [] and pipeline.pull_waiting("pending") == []


def test_a_replaced_file_that_conflicts_again_is_reported_not_replaced_again(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN replace, an instance in the store, and a changed file re-driven after its stored instance was deleted
    _replace_policy(monkeypatch)
    _batch(pipeline, {"day1/a.dcm": _instance("SYNTH^FIRST")})
    [result] = _batch(pipeline, {"day2/a.dcm": _instance("SYNTH^SECOND")})
    assert _counts(result) == (1, 0, 0, 1)
    # WHEN another writer stores the same UIDs with a third content (STOW-RS) before the re-driven file's import
    # THEN the re-driven file conflicts again and is reported, not replaced again: the third content stays
    failed = _third_content_stored_then_reported(pipeline)
    assert (failed["name"], failed["stage"], failed["attempt"]) == ("day2/a.dcm", "conflict", 2)
    assert pipeline.pull_waiting("pending") == [] and _flush_and_follow(pipeline) == []


def _third_content_stored_then_reported(pipeline: Pipeline) -> dict[str, Any]:
    """Another writer stores the UIDs with a third content; the next batch must report the re-driven file (it
    was replaced once already) and keep that content. Returns the failure."""
    third = _instance("SYNTH^THIRD")
    stow = f"{pipeline.services.healthcare_url}/v1/{pipeline.store.name}/dicomWeb/studies"
    assert requests.post(stow, data=third, headers={"Content-Type": "application/dicom"}, timeout=30).status_code == 200
    [result] = _flush_and_follow(pipeline)
    assert _counts(result) == (1, 0, 1, 0)
    [failed] = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert "not replaced: it conflicted again" in failed["reason"] and same_content(_stored(pipeline), third)
    return dict(failed)


def test_a_follow_up_that_dies_after_the_delete_still_redrives_the_file_as_replaced(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN replace, an instance in the store, and a changed file whose follow-up fails once right after the
    # DELETE, while publishing the re-drive (the watch is answered 500 and delivered again)
    _replace_policy(monkeypatch)
    _batch(pipeline, {"day1/a.dcm": _instance("SYNTH^FIRST")})
    real_publish = PubSubPublisher.publish
    failed_once: list[str] = []

    def publish_failing_the_first_redrive(self: PubSubPublisher, topic: str, messages: Any) -> list[str]:
        if not failed_once and any(attributes.get("redrive") for _data, attributes in messages):
            failed_once.append(topic)
            raise RetryableError(f"publishing to {topic}: connection reset (injected)")
        return real_publish(self, topic, messages)

    monkeypatch.setattr(PubSubPublisher, "publish", publish_failing_the_first_redrive)
    [result] = _batch(pipeline, {"day2/a.dcm": _instance("SYNTH^SECOND")})
    # THEN the redelivered watch finds the file missing (its stored instance is gone) and re-drives it, still
    # marked replaced
    assert failed_once and _counts(result) == (1, 0, 0, 1)
    [redriven] = [json.loads(m.message.data) for m in pipeline.pull("pending")]
    assert (redriven["name"], redriven["replaced"]) == ("day2/a.dcm", True)
    pipeline.publish("pending", [json.dumps(redriven).encode()])
    # AND so, when a third content got stored meanwhile, it is reported rather than replaced a second time
    assert _third_content_stored_then_reported(pipeline)["name"] == "day2/a.dcm"


def test_two_contents_in_flight_end_with_one_stored_and_one_reported(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN replace, an instance in the store, and a changed file re-driven after its stored instance was deleted
    _replace_policy(monkeypatch)
    _batch(pipeline, {"day1/a.dcm": _instance("SYNTH^FIRST")})
    [result] = _batch(pipeline, {"day2/a.dcm": _instance("SYNTH^SECOND")})
    assert _counts(result) == (1, 0, 0, 1)
    # WHEN a third content with the same UIDs arrives before the re-driven file is imported (both in one batch)
    third = _instance("SYNTH^THIRD")
    upload(pipeline.bucket, {"day3/a.dcm": third})
    _intake_all(pipeline, ["day3/a.dcm"])
    [result] = _flush_and_follow(pipeline)
    # THEN the import keeps one of them and the other is reported as a conflict, not replaced again
    assert _counts(result) == (2, 1, 1, 0)
    [failed] = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert failed["stage"] == "conflict" and "not replaced" in failed["reason"]
    kept = {"day2/a.dcm": _instance("SYNTH^SECOND"), "day3/a.dcm": third}
    assert failed["name"] in kept
    [winner] = [data for name, data in kept.items() if name != failed["name"]]
    assert same_content(_stored(pipeline), winner)
    # AND nothing is left to loop: no re-drive pending, the next flush has nothing to do
    assert pipeline.pull_waiting("pending") == []
    assert _flush_and_follow(pipeline) == []


def test_the_adapter_deletes_an_instance_retrying_a_transient_refusal(pipeline: Pipeline) -> None:
    # GIVEN the pipeline's Healthcare API adapter and an instance in the store
    _batch(pipeline, {"day1/a.dcm": _instance("SYNTH^FIRST")})
    settings = Settings.from_env(os.environ)
    api = healthcare_stores(settings)(settings.store_name)
    # WHEN the first DELETE is answered 503 THEN the adapter retries it and the instance is deleted (True)
    pipeline.inject_fault({"method": "DELETE", "path": "/instances/", "status": 503, "count": 1})
    assert api.delete_instance("2.25.8001", "2.25.8002", "2.25.8003") is True
    assert pipeline.faults_fired() == [1]
    assert "2.25.8003" not in api.series_instances("2.25.8001", "2.25.8002")
    # AND a second delete finds nothing there (404 -> False, not an error)
    assert api.delete_instance("2.25.8001", "2.25.8002", "2.25.8003") is False
