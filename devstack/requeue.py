"""`python -m devstack requeue`: take every file on dicom-failed back through intake (after fixing it).

Each failed file is re-announced as a finalize notification of its current generation, so it is sniffed,
queued and imported like a new upload; a file that is still bad goes back to dicom-failed with its reason.
"""

from __future__ import annotations

import json

from google.cloud import pubsub_v1, storage

from devstack.stack import NOTIFICATIONS_TOPIC
from devstack.wiring import PROJECT, drain


def requeue_failed(client: storage.Client, subscription: str = "dicom-failed-sub") -> tuple[list[str], list[str]]:
    """(requeued object names, skipped entries) — skipped: stuck-operation reports and deleted objects."""
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(PROJECT, NOTIFICATIONS_TOPIC)
    requeued: list[str] = []
    skipped: list[str] = []
    for failure in drain(subscription):
        bucket, name = failure.get("bucket"), failure.get("name")
        if failure.get("stage") == "operation" or not bucket or not name:
            skipped.append(str(name or failure.get("batch_id")))
            continue
        blob = client.bucket(bucket).get_blob(name)
        if blob is None:
            skipped.append(f"{name} (deleted)")
            continue
        resource = {"bucket": bucket, "name": name, "generation": str(blob.generation), "size": str(blob.size)}
        publisher.publish(
            topic, json.dumps(resource).encode(), eventType="OBJECT_FINALIZE", bucketId=bucket, objectId=name,
            objectGeneration=str(blob.generation), payloadFormat="JSON_API_V1",
        ).result(timeout=30)  # fmt: skip
        requeued.append(name)
    return requeued, skipped
