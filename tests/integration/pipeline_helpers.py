"""Shared pieces of the pipeline integration tests: topics per test, functions-framework apps, deliveries."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from functions_framework import create_app
from google.api_core.exceptions import DeadlineExceeded
from google.cloud import pubsub_v1, storage

from devstack.synthetic import SyntheticInstance
from dicomflow.cli import app
from dicomflow.messages.records import WatchMessage
from handlers import runtime as runtime_module
from tests.integration.conftest import PROJECT, StoreRef, upload, wait_for_operation

MAIN = str(Path(__file__).resolve().parents[2] / "main.py")
TOPICS = ("pending", "operations", "failed", "results")


@dataclass
class Pipeline:
    bucket: storage.Bucket
    store: StoreRef
    names: dict[str, str]  # topic role -> topic id; "<role>-sub" -> subscription id
    services: Any
    subscriber: pubsub_v1.SubscriberClient

    def publish(self, role: str, messages: list[bytes]) -> None:
        publisher = pubsub_v1.PublisherClient()
        topic = publisher.topic_path(PROJECT, self.names[role])
        for data in messages:
            publisher.publish(topic, data).result(timeout=30)

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

    def pull_waiting(self, role: str, seconds: float = 2.0, until: int | None = None) -> list[Any]:
        """Every message that arrives within ``seconds`` (acknowledged), or as soon as ``until`` have: the check
        that nothing is there, since an immediate pull may answer empty while a message is on its way (Pub/Sub
        documents that), and the wait for messages that come back after a nack or a lease, without a sleep."""
        path = self.subscriber.subscription_path(PROJECT, self.names[f"{role}-sub"])
        messages: list[Any] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and (until is None or len(messages) < until):
            try:
                response = self.subscriber.pull(
                    request={"subscription": path, "max_messages": 1000}, timeout=left, retry=None
                )
            except DeadlineExceeded:
                break
            messages.extend(response.received_messages)
            if response.received_messages:
                self.subscriber.acknowledge(
                    request={"subscription": path, "ack_ids": [m.ack_id for m in response.received_messages]}
                )
        return messages

    @property
    def faults_url(self) -> str:
        return f"{self.services.healthcare_url}/emulator/faults"

    def inject_fault(self, rule: dict[str, Any]) -> None:
        """Add an emulator fault rule scoped to this test's store, so it never fires on another test's traffic
        (the fixture clears the rules at teardown, which also cancels requests they still hold)."""
        scoped = {"store": re.escape(self.store.name) + r"(?![\w-])", **rule}
        requests.post(self.faults_url, json=scoped, timeout=10).raise_for_status()

    def faults_fired(self) -> list[int]:
        return [int(rule["fired"]) for rule in requests.get(self.faults_url, timeout=10).json()["rules"]]


def pipeline_fixture(
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
        "MAX_WAIT_SECONDS": "0", "FLUSH_RUN_SECONDS": "0", "HEALTHCARE_API_ENDPOINT": services.healthcare_url,
        "LOGGING_API_ENDPOINT": services.healthcare_url,
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
    response = requests.get(url, timeout=30)
    if response.status_code == 204:  # QIDO-RS answers 204 No Content when nothing matches
        return []
    return [item["00080018"]["Value"][0] for item in response.json()]


def _wait_watched_operations(pipeline: Pipeline, api: Any) -> list[dict[str, Any]]:
    watches = [WatchMessage.from_json(m.message.data) for m in pipeline.pull("operations")]
    return [wait_for_operation(api, w.operation) for w in watches]


def _operation_client() -> Any:
    return create_app("on_operation", MAIN, "cloudevent").test_client()


def _push_envelope(data: bytes, attributes: dict[str, str]) -> tuple[dict[str, str], str]:
    """A Pub/Sub push request body, as a push subscription delivers it to the function."""
    envelope = {
        "message": {"data": base64.b64encode(data).decode(), "attributes": attributes,
                    "messageId": uuid.uuid4().hex, "publishTime": "2026-11-28T10:00:00Z"},
        "subscription": "projects/p/subscriptions/operations-push",
    }  # fmt: skip
    return {"Content-Type": "application/json"}, json.dumps(envelope)


@dataclass
class Delivery:
    watch: WatchMessage
    attempts: int


def drain_operations(pipeline: Pipeline, timeout: float = 60.0) -> list[Delivery]:
    """Play the push subscription on dicom-operations: deliver every watch until it is acknowledged (2xx),
    redelivering while the function answers 500 (operation not done), until no watch is left."""
    client = _operation_client()
    deliveries: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while True:
        messages = pipeline.pull("operations")
        if not messages:
            return deliveries
        for message in messages:
            attempts = 0
            while True:
                attempts += 1
                request = _push_envelope(message.message.data, dict(message.message.attributes))
                if _deliver(client, request) < 300:
                    break
                assert time.monotonic() < deadline, "a watch was never acknowledged"
                time.sleep(0.1)
            deliveries.append(Delivery(WatchMessage.from_json(message.message.data), attempts))


def flush_and_follow(pipeline: Pipeline, timeout: float = 60.0) -> list[Delivery]:
    """One flush tick (answered 200), then every operation it started followed to its end."""
    assert _flush().status_code == 200
    return drain_operations(pipeline, timeout)


def import_and_follow(pipeline: Pipeline, names: list[str], timeout: float = 60.0) -> list[Delivery]:
    """The pipeline's whole path for uploaded ``names``: intake, a flush tick, the follow-up of its operations."""
    _intake_all(pipeline, names)
    return flush_and_follow(pipeline, timeout)


def results(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [json.loads(m.message.data) | {"_attributes": dict(m.message.attributes)} for m in pipeline.pull("results")]


def export_operations(pipeline: Pipeline) -> list[dict[str, Any]]:
    url = f"{pipeline.services.healthcare_url}/v1/{pipeline.store.dataset_name}/operations?pageSize=1000"
    operations = requests.get(url, timeout=30).json().get("operations", [])
    return [o for o in operations if o["metadata"]["apiMethodName"].endswith("ExportDicomData")]


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    """Run ``dicomflow ARGV --json``; (exit status, parsed JSON output)."""
    capsys.readouterr()  # what the in-process functions logged before
    code = app.main([argv[0], "--json", *argv[1:]])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None
