"""Pub/Sub notifications of a DICOM store: one message per instance stored (STOW-RS) or imported.

Per the DicomStore reference and "Configure DICOM Pub/Sub notifications"
(https://cloud.google.com/healthcare-api/docs/dicom-pubsub):

- ``notificationConfig`` (NotificationConfig): message data is the instance's resource name
  ``projects/.../dicomStores/S/dicomWeb/studies/ST/series/SE/instances/I``, no attributes; imports notify only
  with ``sendForBulkImport: true``.
- ``notificationConfigs[]`` (DicomNotificationConfig): same data, with attributes ``action``
  (``StoreInstances``, ``ImportDicomData``), ``lastUpdatedTime``, ``storeName``, ``studyInstanceUID``,
  ``seriesInstanceUID``, ``sopInstanceUID``, ``modality`` (when present) and ``storageClass``.

Messages go only to the Pub/Sub emulator at ``PUBSUB_EMULATOR_HOST`` (google-cloud-pubsub, imported only when
a store has a topic); without it nothing is sent, never to real Pub/Sub. A failed publish is logged (as the
API logs it to Cloud Logging) and never fails the store or import; an identical duplicate is not stored
again and sends nothing.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from healthcare_emulator.repository import now_rfc3339

log = logging.getLogger(__name__)

_MODALITY = "00080060"


@dataclass(frozen=True)
class StoredInstance:
    """What a notification says about one newly stored instance."""

    store: str
    study: str
    series: str
    sop: str
    metadata: dict[str, Any]
    storage_class: str

    @property
    def resource_name(self) -> str:
        return f"{self.store}/dicomWeb/studies/{self.study}/series/{self.series}/instances/{self.sop}"


class Publisher(Protocol):
    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> None: ...

    def close(self) -> None: ...


def messages(store: dict[str, Any], instance: StoredInstance, action: str) -> list[tuple[str, bytes, dict[str, str]]]:
    """The (topic, data, attributes) to publish for ``instance`` under ``store``'s notification configs."""
    data = instance.resource_name.encode("utf-8")
    found: list[tuple[str, bytes, dict[str, str]]] = []
    legacy = store.get("notificationConfig")
    bulk_import = action == "ImportDicomData"
    if isinstance(legacy, dict) and legacy.get("pubsubTopic") and (not bulk_import or legacy.get("sendForBulkImport")):
        found.append((str(legacy["pubsubTopic"]), data, {}))
    for config in store.get("notificationConfigs") or []:
        if isinstance(config, dict) and config.get("pubsubTopic"):
            attributes = {
                "action": action,
                "lastUpdatedTime": now_rfc3339(),
                "storeName": instance.store,
                "studyInstanceUID": instance.study,
                "seriesInstanceUID": instance.series,
                "sopInstanceUID": instance.sop,
                "storageClass": instance.storage_class,
            }
            modality = (instance.metadata.get(_MODALITY) or {}).get("Value") or []
            if modality:
                attributes["modality"] = str(modality[0])
            found.append((str(config["pubsubTopic"]), data, attributes))
    return found


class Notifier:
    """Publishes store notifications; the Pub/Sub client is created on the first message."""

    def __init__(self, publisher: Publisher | None = None, *, pubsub_emulator_host: str | None = None) -> None:
        self._publisher = publisher
        self._host = pubsub_emulator_host
        self._failed = False
        self._lock = threading.Lock()

    def instance_stored(self, store: dict[str, Any] | None, instance: StoredInstance, action: str) -> None:
        if not store:
            return
        for topic, data, attributes in messages(store, instance, action):
            publisher = self._client()
            if publisher is None:
                return
            publisher.publish(topic, data, attributes)

    def close(self) -> None:
        with self._lock:
            if self._publisher is not None:
                self._publisher.close()

    def _client(self) -> Publisher | None:
        with self._lock:
            if self._publisher is None and not self._failed:
                self._failed = True  # tried once: a failure is logged once, not per instance
                if not self._host:
                    log.warning(
                        "store notifications are configured but not sent: start the emulator with "
                        "PUBSUB_EMULATOR_HOST set to the Pub/Sub emulator"
                    )
                    return None
                try:
                    self._publisher = PubsubPublisher()
                except Exception as exc:  # google-cloud-pubsub missing or unusable
                    log.warning("store notifications cannot be published: %s", type(exc).__name__)
            return self._publisher


class PubsubPublisher:
    """google-cloud-pubsub's publisher (it honours ``PUBSUB_EMULATOR_HOST``), imported lazily."""

    def __init__(self) -> None:
        from google.cloud import pubsub_v1  # noqa: PLC0415 - lazy: only stores with a topic need it

        self._client = pubsub_v1.PublisherClient()

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> None:
        future = self._client.publish(topic, data, **attributes)

        def done(result: Any) -> None:
            error = result.exception()
            if error is not None:
                log.warning("notification to %s was not published: %s", topic, type(error).__name__)

        future.add_done_callback(done)

    def close(self) -> None:
        self._client.stop()
