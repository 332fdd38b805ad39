"""Store notifications published to Google's Pub/Sub emulator, read back through a real subscription.

The emulator under test is its own process, started with ``PUBSUB_EMULATOR_HOST`` set (the session's
emulator may have started before the Pub/Sub emulator).
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from google.cloud import pubsub_v1, storage

from devstack.processes import free_port, start_healthcare_emulator
from devstack.synthetic import generate_dataset
from tests.integration.conftest import LOCATION, PROJECT, healthcare_client, upload, wait_for_operation

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def notifying(pubsub_host: str, services: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An emulator process that sees PUBSUB_EMULATOR_HOST (and the session's fake-gcs-server): (URL, log)."""
    port = free_port()
    logs = tmp_path_factory.mktemp("notifying-emulator")
    process = start_healthcare_emulator(port, logs / "data", services.storage_host, log_path=logs / "emulator.log")
    try:
        yield f"http://127.0.0.1:{port}", logs / "emulator.log"
    finally:
        process.stop()


@pytest.fixture
def notifying_url(notifying: tuple[str, Path]) -> str:
    return notifying[0]


@dataclass(frozen=True)
class Topic:
    name: str
    subscription: str


@pytest.fixture
def topic(pubsub_host: str) -> Topic:
    suffix = uuid.uuid4().hex[:10]
    name = f"projects/{PROJECT}/topics/dicom-events-{suffix}"
    subscription = f"projects/{PROJECT}/subscriptions/dicom-events-{suffix}"
    pubsub_v1.PublisherClient().create_topic(request={"name": name})
    pubsub_v1.SubscriberClient().create_subscription(request={"name": subscription, "topic": name})
    return Topic(name, subscription)


def _pull(subscription: str, expected: int, timeout: float = 60.0) -> list[Any]:
    """Pull (and ack) until ``expected`` messages came, then once more to see that no others follow."""
    subscriber = pubsub_v1.SubscriberClient()
    received: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(received) < expected and time.monotonic() < deadline:
        response = subscriber.pull(request={"subscription": subscription, "max_messages": 100}, timeout=10)
        received += [item.message for item in response.received_messages]
        if response.received_messages:
            ack_ids = [item.ack_id for item in response.received_messages]
            subscriber.acknowledge(request={"subscription": subscription, "ack_ids": ack_ids})
    extra = subscriber.pull(request={"subscription": subscription, "max_messages": 100}, timeout=5)
    return received + [item.message for item in extra.received_messages]


def _store(url: str, body: dict[str, Any]) -> str:
    api = healthcare_client(url)
    datasets = api.projects().locations().datasets()
    dataset_id = f"ds-{uuid.uuid4().hex[:10]}"
    datasets.create(parent=f"projects/{PROJECT}/locations/{LOCATION}", datasetId=dataset_id, body={}).execute()
    dataset = f"projects/{PROJECT}/locations/{LOCATION}/datasets/{dataset_id}"
    datasets.dicomStores().create(parent=dataset, dicomStoreId="notifying", body=body).execute()
    return f"{dataset}/dicomStores/notifying"


def _path(store: str, instance: Any) -> str:
    return f"{store}/dicomWeb/studies/{instance.study_uid}/series/{instance.series_uid}/instances/{instance.sop_uid}"


def test_stow_publishes_one_message_per_new_instance(notifying_url: str, topic: Topic) -> None:
    # GIVEN a store with a notificationConfig (NotificationConfig: data only, no attributes)
    store = _store(notifying_url, {"notificationConfig": {"pubsubTopic": topic.name}})
    instances = generate_dataset(1, 1, 3, seed=1901)
    web = DICOMwebClient(url=f"{notifying_url}/v1/{store}/dicomWeb")
    # WHEN three instances are stored, then one of them again (an identical duplicate)
    web.store_instances([pydicom.dcmread(io.BytesIO(i.data)) for i in instances])
    web.store_instances([pydicom.dcmread(io.BytesIO(instances[0].data))])
    # THEN exactly three messages arrive, each naming one instance, without attributes
    messages = _pull(topic.subscription, 3)
    assert sorted(m.data.decode() for m in messages) == sorted(_path(store, i) for i in instances)
    assert all(dict(m.attributes) == {} for m in messages)
    assert len({m.message_id for m in messages}) == 3


def test_dicom_notification_configs_carry_the_documented_attributes(notifying_url: str, topic: Topic) -> None:
    store = _store(notifying_url, {"notificationConfigs": [{"pubsubTopic": topic.name}]})
    instance = generate_dataset(1, 1, 1, seed=1902)[0]
    DICOMwebClient(url=f"{notifying_url}/v1/{store}/dicomWeb").store_instances(
        [pydicom.dcmread(io.BytesIO(instance.data))]
    )
    [message] = _pull(topic.subscription, 1)
    assert message.data.decode() == _path(store, instance)
    attributes = dict(message.attributes)
    assert attributes.pop("lastUpdatedTime").endswith("Z")
    assert attributes == {
        "action": "StoreInstances",
        "storeName": store,
        "studyInstanceUID": instance.study_uid,
        "seriesInstanceUID": instance.series_uid,
        "sopInstanceUID": instance.sop_uid,
        "modality": "CT",
        "storageClass": "STANDARD",
    }


@pytest.mark.parametrize("send_for_bulk_import", [True, False])
def test_import_notifies_only_with_send_for_bulk_import(
    notifying_url: str, topic: Topic, bucket: storage.Bucket, send_for_bulk_import: bool
) -> None:
    config = {"pubsubTopic": topic.name, "sendForBulkImport": send_for_bulk_import}
    store = _store(notifying_url, {"notificationConfig": config})
    instances = generate_dataset(1, 2, 2, seed=1903)
    upload(bucket, {f"in/{i.relative_path}": i.data for i in instances})
    api = healthcare_client(notifying_url)
    operation = (
        api.projects()
        .locations()
        .datasets()
        .dicomStores()
        .import_(name=store, body={"gcsSource": {"uri": f"gs://{bucket.name}/in/**.dcm"}})
        .execute()
    )
    assert wait_for_operation(api, operation["name"])["metadata"]["counter"] == {"success": "4"}
    messages = _pull(topic.subscription, 4 if send_for_bulk_import else 0, timeout=60 if send_for_bulk_import else 5)
    expected = sorted(_path(store, i) for i in instances) if send_for_bulk_import else []
    assert sorted(m.data.decode() for m in messages) == expected


def test_a_missing_topic_does_not_fail_the_store_and_is_logged(notifying: tuple[str, Path]) -> None:
    url, log_path = notifying
    absent = f"projects/{PROJECT}/topics/absent-{uuid.uuid4().hex[:8]}"
    store = _store(url, {"notificationConfig": {"pubsubTopic": absent}})
    instance = generate_dataset(1, 1, 1, seed=1904)[0]
    web = DICOMwebClient(url=f"{url}/v1/{store}/dicomWeb")
    # WHEN an instance is stored into a store whose topic does not exist
    stored = web.store_instances([pydicom.dcmread(io.BytesIO(instance.data))])
    # THEN it is stored, and the failed publish is logged (as the API logs it to Cloud Logging)
    assert stored.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == instance.sop_uid
    deadline = time.monotonic() + 60
    while f"notification to {absent} was not published" not in log_path.read_text():
        assert time.monotonic() < deadline, "the failed publish was not logged"
        time.sleep(0.2)
    assert "SYNTH" not in log_path.read_text()  # no patient data in the log
