"""on_object_finalized and on_flush through functions-framework, against fake-gcs-server, the Pub/Sub
emulator and healthcare_emulator."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from devstack.synthetic import generate_dataset
from dicomflow.errors import RetryableError
from dicomflow.messages.records import PendingRecord
from dicomflow.stages.flush import run_flush
from handlers import runtime as runtime_module
from tests.integration.conftest import upload
from tests.integration.pipeline_helpers import (
    Pipeline,
    _binary,
    _deliver,
    _finalize_client,
    _flush,
    _intake_all,
    _notification,
    _object_resource,
    _stored_sops,
    _structured,
    _upload,
    _wait_watched_operations,
)

pytestmark = pytest.mark.integration


# ----- intake -----


@pytest.mark.parametrize("shape", [_structured, _binary, _notification])
def test_intake_queues_one_record_per_dicom_object_in_every_event_shape(pipeline: Pipeline, shape: Any) -> None:
    instance = generate_dataset(1, 1, 1, seed=501)[0]
    [name] = _upload(pipeline, [instance], "shape")
    assert _deliver(_finalize_client(), shape(_object_resource(pipeline.bucket, name))) == 200
    [message] = pipeline.pull("pending")
    record = PendingRecord.from_json(message.message.data)
    assert (record.bucket, record.name, record.sop_uid) == (pipeline.bucket.name, name, instance.sop_uid)
    assert (record.study_uid, record.series_uid, record.attempt) == (instance.study_uid, instance.series_uid, 1)


def test_intake_reports_bad_files_and_ignores_what_is_not_ours(pipeline: Pipeline) -> None:
    upload(pipeline.bucket, {"bad/text.dcm": b"not dicom at all", "bad/empty.dcm": b"", "bad/notes.txt": b"hi"})
    client = _finalize_client()
    for name in ("bad/text.dcm", "bad/empty.dcm", "bad/notes.txt"):
        assert _deliver(client, _structured(_object_resource(pipeline.bucket, name))) == 200
    foreign = {"bucket": "someone-elses-bucket", "name": "x.dcm", "generation": "1", "size": "10",
               "timeCreated": "2026-11-28T10:00:00Z"}  # fmt: skip
    assert _deliver(client, _structured(foreign)) == 200
    # a malformed event is acknowledged (200), never retried
    assert _deliver(client, ({"Content-Type": "application/cloudevents+json"}, json.dumps(
        {"specversion": "1.0", "type": "google.cloud.storage.object.v1.finalized", "id": "1", "source": "//x",
         "data": {"bucket": pipeline.bucket.name}}))) == 200  # fmt: skip
    failed = {json.loads(m.message.data)["name"]: json.loads(m.message.data)["reason"] for m in pipeline.pull("failed")}
    assert failed == {
        "bad/text.dcm": "not a DICOM Part 10 file: no 'DICM' prefix after the 128-byte preamble",
        "bad/empty.dcm": "empty object",
    }
    assert pipeline.pull_waiting("pending") == []


# ----- flush -----


def test_flush_imports_a_settled_upload_in_one_operation_and_acks(pipeline: Pipeline, api_v1: Any) -> None:
    # GIVEN 2 studies x 2 series x 5 instances uploaded under one folder and taken in by intake
    upload(pipeline.bucket, {"older/study/IM1.dcm": generate_dataset(1, 1, 1, seed=510)[0].data})
    instances = generate_dataset(2, 2, 5, seed=511)
    names = _upload(pipeline, instances, "upload-1")
    _intake_all(pipeline, names)
    # WHEN the flush runs
    assert _flush().status_code == 200
    # THEN one import covers all 20 files, and it brings every instance into the store
    operations = _wait_watched_operations(pipeline, api_v1)
    assert len(operations) == 1
    assert operations[0]["metadata"]["counter"] == {"success": "20"}
    assert sorted(_stored_sops(pipeline)) == sorted(i.sop_uid for i in instances)
    # AND the records were acknowledged and a manifest lists the batch
    assert pipeline.pull_waiting("pending") == []
    manifests = [b for b in pipeline.bucket.list_blobs(prefix="dicomflow/batches/")]
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].download_as_bytes())
    assert manifest["counts"] == {"files": 20, "imports": 1, "copies": 0, "failed": 0, "skipped": 0}
    assert manifest["imports"][0]["uri"] == f"gs://{pipeline.bucket.name}/upload-1/**.dcm"


def test_flush_dedupes_redelivered_events(pipeline: Pipeline, api_v1: Any) -> None:
    instances = generate_dataset(1, 1, 3, seed=521)
    names = _upload(pipeline, instances, "dupes")
    _intake_all(pipeline, names)
    _intake_all(pipeline, names)  # every finalize event delivered twice
    _flush()
    _wait_watched_operations(pipeline, api_v1)
    manifest = json.loads(next(iter(pipeline.bucket.list_blobs(prefix="dicomflow/batches/"))).download_as_bytes())
    assert sorted(f["name"] for f in manifest["files"]) == sorted(names)
    assert pipeline.pull_waiting("pending") == []


def test_flush_loses_nothing_when_it_crashes_between_import_start_and_ack(pipeline: Pipeline, api_v1: Any) -> None:
    instances = generate_dataset(1, 2, 3, seed=531)
    names = _upload(pipeline, instances, "crash")
    _intake_all(pipeline, names)
    rt = runtime_module.runtime("test")

    class DropWatches:
        """Accepts everything except the watch messages, as if the process died right after starting imports."""

        def publish(self, topic: str, messages: Any) -> list[str]:
            if topic == rt.settings.operations_topic:
                raise RetryableError("simulated crash before the watch was published")
            return rt.publisher.publish(topic, messages)

    # WHEN the first flush starts the import and then fails before acking
    with pytest.raises(RetryableError):
        run_flush(
            rt.settings, subscriber=rt.subscriber, publisher=DropWatches(), store=rt.store, healthcare=rt.healthcare
        )

    # THEN the records come back and the next flush imports again; the store holds each instance once
    def flush_again() -> Any:
        return run_flush(rt.settings, subscriber=rt.subscriber, publisher=rt.publisher, store=rt.store,
                         healthcare=rt.healthcare)  # fmt: skip

    deadline = time.monotonic() + 60  # the nacked records are redelivered: the next flush that pulls them imports
    while (report := flush_again()).imported_files == 0 and time.monotonic() < deadline:
        pass
    assert report.imported_files == len(names)
    operations = _wait_watched_operations(pipeline, api_v1)
    assert [o["metadata"]["counter"] for o in operations] == [{"success": str(len(names))}]  # duplicates = success
    assert sorted(_stored_sops(pipeline)) == sorted(i.sop_uid for i in instances)
    assert pipeline.pull_waiting("pending") == []


def test_flush_retries_429_and_503_from_the_healthcare_api(pipeline: Pipeline, api_v1: Any) -> None:
    instances = generate_dataset(1, 1, 2, seed=541)
    _intake_all(pipeline, _upload(pipeline, instances, "faults"))
    pipeline.inject_fault({"method": "POST", "path": ":import$", "status": 503, "count": 2})
    pipeline.inject_fault({"method": "POST", "path": ":import$", "status": 429, "count": 1})
    assert _flush().status_code == 200
    assert pipeline.faults_fired() == [2, 1]
    _wait_watched_operations(pipeline, api_v1)
    assert sorted(_stored_sops(pipeline)) == sorted(i.sop_uid for i in instances)


def test_flush_gives_records_back_when_the_api_stays_unavailable(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_RETRY_ATTEMPTS", "2")
    runtime_module.reset()
    instances = generate_dataset(1, 1, 2, seed=551)
    _intake_all(pipeline, _upload(pipeline, instances, "down"))
    pipeline.inject_fault({"method": "POST", "path": ":import$", "status": 503, "count": 100})
    assert _flush().status_code == 200  # nothing started: the records wait, the tick itself succeeded
    requests.delete(pipeline.faults_url, timeout=10)
    assert len(pipeline.pull_waiting("pending", seconds=60, until=2)) == 2
    assert _stored_sops(pipeline) == []


def test_flush_waits_for_a_folder_to_settle(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETTLE_SECONDS", "3600")
    monkeypatch.setenv("MAX_WAIT_SECONDS", "7200")
    runtime_module.reset()
    instances = generate_dataset(1, 1, 2, seed=561)
    _intake_all(pipeline, _upload(pipeline, instances, "fresh"))
    # the object times are now; an hour of settling has not passed
    assert _flush().status_code == 200
    assert pipeline.pull_waiting("operations") == []
    assert list(pipeline.bucket.list_blobs(prefix="dicomflow/batches/")) == []  # no batch was formed
    assert len(pipeline.pull_waiting("pending", seconds=60, until=2)) == 2


def test_unusual_object_names_are_imported(pipeline: Pipeline, api_v1: Any) -> None:
    # names with '#', spaces, unicode, a leading slash and 1,024 bytes
    long_name = "long/" + "x" * (1024 - len("long/") - len(".dcm")) + ".dcm"
    names = ["odd/hash#1.dcm", "odd/with space.dcm", "odd/ünïcødé-画像.dcm", "/leading-slash.dcm", long_name]
    instances = generate_dataset(1, 1, len(names), seed=581)
    upload(pipeline.bucket, {name: i.data for name, i in zip(names, instances, strict=True)})
    _intake_all(pipeline, names)
    assert _flush().status_code == 200
    _wait_watched_operations(pipeline, api_v1)
    assert sorted(_stored_sops(pipeline)) == sorted(i.sop_uid for i in instances)
    assert pipeline.pull_waiting("failed") == []
