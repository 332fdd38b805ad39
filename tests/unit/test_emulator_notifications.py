"""Which Pub/Sub messages a stored instance produces, per notification config (no Pub/Sub needed)."""

from __future__ import annotations

from typing import Any

from healthcare_emulator.notifications import Notifier, StoredInstance, messages

STORE = "projects/p/locations/l/datasets/d/dicomStores/s"
INSTANCE = StoredInstance(STORE, "1.2", "1.2.3", "1.2.3.4", {"00080060": {"vr": "CS", "Value": ["MR"]}}, "STANDARD")
PATH = f"{STORE}/dicomWeb/studies/1.2/series/1.2.3/instances/1.2.3.4"


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []
        self.closed = False

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> None:
        self.published.append((topic, data, attributes))

    def close(self) -> None:
        self.closed = True


def test_notification_config_sends_the_instance_name_without_attributes() -> None:
    store = {"notificationConfig": {"pubsubTopic": "projects/p/topics/t"}}
    assert messages(store, INSTANCE, "StoreInstances") == [("projects/p/topics/t", PATH.encode(), {})]


def test_imports_notify_through_notification_config_only_with_send_for_bulk_import() -> None:
    assert messages({"notificationConfig": {"pubsubTopic": "t"}}, INSTANCE, "ImportDicomData") == []
    bulk = {"notificationConfig": {"pubsubTopic": "t", "sendForBulkImport": True}}
    assert [topic for topic, _, _ in messages(bulk, INSTANCE, "ImportDicomData")] == ["t"]


def test_notification_configs_carry_attributes_for_stores_and_imports() -> None:
    store: dict[str, Any] = {"notificationConfigs": [{"pubsubTopic": "a"}, {"pubsubTopic": "b"}, {}]}
    found = messages(store, INSTANCE, "ImportDicomData")
    assert [topic for topic, _, _ in found] == ["a", "b"]
    attributes = dict(found[0][2])
    assert attributes.pop("lastUpdatedTime")
    assert attributes == {
        "action": "ImportDicomData",
        "storeName": STORE,
        "studyInstanceUID": "1.2",
        "seriesInstanceUID": "1.2.3",
        "sopInstanceUID": "1.2.3.4",
        "modality": "MR",
        "storageClass": "STANDARD",
    }


def test_a_store_without_topic_publishes_nothing() -> None:
    publisher = RecordingPublisher()
    notifier = Notifier(publisher)
    notifier.instance_stored({"notificationConfig": {"pubsubTopic": ""}}, INSTANCE, "StoreInstances")
    notifier.instance_stored(None, INSTANCE, "StoreInstances")
    assert publisher.published == []
    notifier.instance_stored({"notificationConfig": {"pubsubTopic": "t"}}, INSTANCE, "StoreInstances")
    assert publisher.published == [("t", PATH.encode(), {})]
    notifier.close()
    assert publisher.closed
