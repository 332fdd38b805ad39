"""on_object_finalized and on_flush through functions-framework, against fake-gcs-server, the Pub/Sub
emulator and healthcare_emulator."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from functions_framework import create_app
from google.cloud import pubsub_v1, storage

from devstack.synthetic import SyntheticInstance, generate_dataset
from dicomflow.errors import RetryableError
from dicomflow.flush import run_flush
from dicomflow.records import PendingRecord, WatchMessage
from handlers import runtime as runtime_module
from tests.integration.conftest import PROJECT, StoreRef, upload, wait_for_operation

pytestmark = pytest.mark.integration

MAIN = str(Path(__file__).resolve().parents[2] / "main.py")
TOPICS = ("pending", "operations", "failed", "results")


@dataclass
class Pipeline:
    bucket: storage.Bucket
    store: StoreRef
    names: dict[str, str]  # topic role -> topic id; "<role>-sub" -> subscription id
    services: Any
    subscriber: pubsub_v1.SubscriberClient

    def pull(self, role: str, max_messages: int = 1000) -> list[Any]:
        path = self.subscriber.subscription_path(PROJECT, self.names[f"{role}-sub"])
        messages: list[Any] = []
        while True:
            response = self.subscriber.pull(
                request={"subscription": path, "max_messages": max_messages, "return_immediately": True}, timeout=10
            )
            if not response.received_messages:
                return messages
            messages.extend(response.received_messages)
            self.subscriber.acknowledge(
                request={"subscription": path, "ack_ids": [m.ack_id for m in response.received_messages]}
            )


@pytest.fixture
def pipeline(
    monkeypatch: pytest.MonkeyPatch, services: Any, pubsub_host: str, bucket: storage.Bucket, store: StoreRef
) -> Iterator[Pipeline]:
    suffix = uuid.uuid4().hex[:8]
    names = {role: f"dicom-{role}-{suffix}" for role in TOPICS}
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    for role in TOPICS:
        topic = publisher.topic_path(PROJECT, names[role])
        publisher.create_topic(request={"name": topic})
        names[f"{role}-sub"] = f"{names[role]}-sub"
        subscriber.create_subscription(
            request={
                "name": subscriber.subscription_path(PROJECT, names[f"{role}-sub"]),
                "topic": topic,
                "ack_deadline_seconds": 60,
            }
        )
    env = {
        "PROJECT_ID": PROJECT, "LOCATION": store.location, "DATASET": store.dataset, "DICOM_STORE": store.store,
        "SOURCE_BUCKETS": bucket.name, "STATE_BUCKET": bucket.name, "PENDING_TOPIC": names["pending"],
        "PENDING_SUBSCRIPTION": names["pending-sub"], "OPERATIONS_TOPIC": names["operations"],
        "FAILED_TOPIC": names["failed"], "RESULTS_TOPIC": names["results"], "SETTLE_SECONDS": "0",
        "MAX_WAIT_SECONDS": "0", "HEALTHCARE_API_ENDPOINT": services.healthcare_url,
        "STORAGE_EMULATOR_HOST": services.storage_host, "API_RETRY_ATTEMPTS": "5",
    }  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runtime_module.reset()
    yield Pipeline(bucket, store, names, services, subscriber)
    runtime_module.reset()
    requests.delete(f"{services.healthcare_url}/emulator/faults", timeout=10)


def _finalize_client() -> Any:
    return create_app("on_object_finalized", MAIN, "cloudevent").test_client()


def _flush_client() -> Any:
    return create_app("on_flush", MAIN, "cloudevent").test_client()


def _object_resource(bucket: storage.Bucket, name: str) -> dict[str, Any]:
    blob = bucket.get_blob(name)
    assert blob is not None
    return {
        "bucket": bucket.name, "name": name, "generation": str(blob.generation), "size": str(blob.size),
        "crc32c": blob.crc32c, "timeCreated": blob.time_created.isoformat() if blob.time_created else None,
    }  # fmt: skip


def _structured(resource: dict[str, Any]) -> tuple[dict[str, str], str]:
    event = {
        "specversion": "1.0", "type": "google.cloud.storage.object.v1.finalized", "id": uuid.uuid4().hex,
        "source": f"//storage.googleapis.com/projects/_/buckets/{resource['bucket']}", "time": "2026-11-28T10:00:00Z",
        "datacontenttype": "application/json", "data": resource,
    }  # fmt: skip
    return {"Content-Type": "application/cloudevents+json"}, json.dumps(event)


def _binary(resource: dict[str, Any]) -> tuple[dict[str, str], str]:
    headers = {
        "ce-specversion": "1.0", "ce-type": "google.cloud.storage.object.v1.finalized", "ce-id": uuid.uuid4().hex,
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{resource['bucket']}",
        "ce-time": "2026-11-28T10:00:00Z", "Content-Type": "application/json",
    }  # fmt: skip
    return headers, json.dumps(resource)


def _notification(resource: dict[str, Any]) -> tuple[dict[str, str], str]:
    """A GCS Pub/Sub notification pushed by a subscription (what the local stack sends)."""
    envelope = {
        "message": {
            "data": base64.b64encode(json.dumps(resource).encode()).decode(),
            "attributes": {"eventType": "OBJECT_FINALIZE", "bucketId": resource["bucket"],
                           "objectId": resource["name"], "objectGeneration": resource["generation"],
                           "payloadFormat": "JSON_API_V1"},
            "messageId": uuid.uuid4().hex, "publishTime": "2026-11-28T10:00:00Z",
        },
        "subscription": "projects/p/subscriptions/finalize-push",
    }  # fmt: skip
    return {"Content-Type": "application/json"}, json.dumps(envelope)


def _deliver(client: Any, request: tuple[dict[str, str], str]) -> int:
    headers, body = request
    return int(client.post("/", headers=headers, data=body).status_code)


def _intake_all(pipeline: Pipeline, names: list[str]) -> None:
    client = _finalize_client()
    for name in names:
        assert _deliver(client, _structured(_object_resource(pipeline.bucket, name))) == 200


def _flush() -> Any:
    response = _flush_client().post(
        "/",
        headers=_structured(
            {"bucket": "tick", "name": "tick", "generation": "1", "timeCreated": "2026-11-28T10:00:00Z"}
        )[0],
        data=json.dumps(
            {
                "specversion": "1.0",
                "type": "google.cloud.pubsub.topic.v1.messagePublished",
                "id": uuid.uuid4().hex,
                "source": "//pubsub.googleapis.com/tick",
                "data": {"message": {"data": "", "messageId": "1"}},
            }
        ),
    )
    return response


def _upload(pipeline: Pipeline, instances: list[SyntheticInstance], prefix: str) -> list[str]:
    names = [f"{prefix}/{i.relative_path}" for i in instances]
    upload(pipeline.bucket, dict(zip(names, (i.data for i in instances), strict=True)))
    return names


def _stored_sops(pipeline: Pipeline) -> list[str]:
    url = f"{pipeline.services.healthcare_url}/v1/{pipeline.store.name}/dicomWeb/instances"
    return [item["00080018"]["Value"][0] for item in requests.get(url, timeout=30).json()]


def _wait_watched_operations(pipeline: Pipeline, api: Any) -> list[dict[str, Any]]:
    watches = [WatchMessage.from_json(m.message.data) for m in pipeline.pull("operations")]
    return [wait_for_operation(api, w.operation) for w in watches]


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
    assert pipeline.pull("pending") == []


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
    assert pipeline.pull("pending") == []
    manifests = [b for b in pipeline.bucket.list_blobs(prefix="dicomflow/batches/")]
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].download_as_bytes())
    assert manifest["counts"] == {"files": 20, "imports": 1, "stow": 0, "failed": 0}
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
    assert pipeline.pull("pending") == []


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
    time.sleep(0.5)
    report = run_flush(rt.settings, subscriber=rt.subscriber, publisher=rt.publisher, store=rt.store,
                       healthcare=rt.healthcare)  # fmt: skip
    assert report.imported_files == len(names)
    operations = _wait_watched_operations(pipeline, api_v1)
    assert [o["metadata"]["counter"] for o in operations] == [{"success": str(len(names))}]  # duplicates = success
    assert sorted(_stored_sops(pipeline)) == sorted(i.sop_uid for i in instances)
    assert pipeline.pull("pending") == []


def test_flush_retries_429_and_503_from_the_healthcare_api(pipeline: Pipeline, api_v1: Any) -> None:
    instances = generate_dataset(1, 1, 2, seed=541)
    _intake_all(pipeline, _upload(pipeline, instances, "faults"))
    faults = f"{pipeline.services.healthcare_url}/emulator/faults"
    requests.post(faults, json={"method": "POST", "path": ":import$", "status": 503, "count": 2}, timeout=10)
    requests.post(faults, json={"method": "GET", "path": "/operations$", "status": 429, "count": 1}, timeout=10)
    assert _flush().status_code == 200
    assert [r["fired"] for r in requests.get(faults, timeout=10).json()["rules"]] == [2, 1]
    _wait_watched_operations(pipeline, api_v1)
    assert sorted(_stored_sops(pipeline)) == sorted(i.sop_uid for i in instances)


def test_flush_gives_records_back_when_the_api_stays_unavailable(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_RETRY_ATTEMPTS", "2")
    runtime_module.reset()
    instances = generate_dataset(1, 1, 2, seed=551)
    _intake_all(pipeline, _upload(pipeline, instances, "down"))
    faults = f"{pipeline.services.healthcare_url}/emulator/faults"
    requests.post(faults, json={"method": "POST", "path": ":import$", "status": 503, "count": 100}, timeout=10)
    assert _flush().status_code == 200  # nothing started: the records wait, the tick itself succeeded
    requests.delete(faults, timeout=10)
    time.sleep(0.5)
    assert len(pipeline.pull("pending")) == 2
    assert _stored_sops(pipeline) == []


def test_flush_waits_for_a_folder_to_settle(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETTLE_SECONDS", "3600")
    monkeypatch.setenv("MAX_WAIT_SECONDS", "7200")
    runtime_module.reset()
    instances = generate_dataset(1, 1, 2, seed=561)
    _intake_all(pipeline, _upload(pipeline, instances, "fresh"))
    # the object times are now; an hour of settling has not passed
    for blob in pipeline.bucket.list_blobs(prefix="fresh/"):
        assert blob.time_created is not None
    assert _flush().status_code == 200
    assert pipeline.pull("operations") == []
    time.sleep(0.5)
    assert len(pipeline.pull("pending")) == 2


def test_flush_sends_a_name_no_uri_can_address_with_stow(pipeline: Pipeline) -> None:
    instance = generate_dataset(1, 1, 1, seed=571)[0]
    upload(pipeline.bucket, {"odd/scan[1].dcm": instance.data, "odd/scan1.dcm": b"other"})
    _intake_all(pipeline, ["odd/scan[1].dcm"])
    assert _flush().status_code == 200
    assert _stored_sops(pipeline) == [instance.sop_uid]
    manifest = json.loads(next(iter(pipeline.bucket.list_blobs(prefix="dicomflow/batches/"))).download_as_bytes())
    assert [f["via"] for f in manifest["files"]] == ["stow"]
    assert pipeline.pull("pending") == []
