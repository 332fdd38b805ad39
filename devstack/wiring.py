"""Create the stack's topics, subscriptions, buckets, dataset and store (idempotent)."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from devstack.processes import StackError

PROJECT = "local-project"
LOCATION = "us-central1"
DATASET = "local-dataset"
STORE = "local-store"
RESEARCH_DATASET = "research-dataset"  # the de-identified copies (a `deidentify` export target), same location
RESEARCH_STORE = "research-store"
OPERATIONS_RELAY = "dicom-operations-relay"
NOTIFICATIONS_RELAY = "gcs-notifications-relay"


def _publisher() -> pubsub_v1.PublisherClient:
    return pubsub_v1.PublisherClient()


def _subscriber() -> pubsub_v1.SubscriberClient:
    return pubsub_v1.SubscriberClient()


def create_topics(topics: Iterable[str]) -> None:
    publisher = _publisher()
    for topic in topics:
        with contextlib.suppress(gexc.AlreadyExists):
            publisher.create_topic(request={"name": publisher.topic_path(PROJECT, topic)})


def _subscription(subscriber: pubsub_v1.SubscriberClient, name: str, request: dict[str, Any]) -> None:
    with contextlib.suppress(gexc.AlreadyExists):
        subscriber.create_subscription(request={"name": subscriber.subscription_path(PROJECT, name), **request})


def create_subscriptions() -> None:
    """As deployed, with the stack's relays (devstack.relay) doing the push: finalize notifications go to
    on_object_finalized (source buckets only), watches to on_operation (retry backoff, dead-letter topic);
    pending records are pulled by the flush; results and failures are journaled."""
    publisher, subscriber = _publisher(), _subscriber()

    def topic(name: str) -> str:
        return str(publisher.topic_path(PROJECT, name))

    _subscription(subscriber, NOTIFICATIONS_RELAY, {"topic": topic("gcs-notifications"), "ack_deadline_seconds": 60})
    _subscription(subscriber, "dicom-pending-flush", {"topic": topic("dicom-pending"), "ack_deadline_seconds": 30})
    # 600 s as deployed: a follow-up holds its watch while it polls the operation (FOLLOW_POLL_SECONDS)
    _subscription(subscriber, OPERATIONS_RELAY, {"topic": topic("dicom-operations"), "ack_deadline_seconds": 600})
    # what flush dead-letters itself (poison it can never process), kept for people to read
    _subscription(subscriber, "dicom-pending-dead-letter-sub", {"topic": topic("dicom-pending-dead-letter")})
    for name in ("results", "failed"):
        _subscription(subscriber, f"devstack-{name}", {"topic": topic(f"dicom-{name}")})
        _subscription(subscriber, f"dicom-{name}-sub", {"topic": topic(f"dicom-{name}")})  # for users and tests


def drain(subscription: str) -> list[dict[str, Any]]:
    """Pull and acknowledge whatever is waiting (JSON bodies plus attributes)."""
    subscriber = _subscriber()
    path = subscriber.subscription_path(PROJECT, subscription)
    try:
        response = subscriber.pull(request={"subscription": path, "max_messages": 1000}, timeout=2, retry=None)
    except (gexc.DeadlineExceeded, gexc.GoogleAPICallError):
        return []
    if not response.received_messages:
        return []
    subscriber.acknowledge(request={"subscription": path, "ack_ids": [m.ack_id for m in response.received_messages]})
    out = []
    for message in response.received_messages:
        try:
            body = json.loads(message.message.data)
        except ValueError:
            body = {"raw": message.message.data.decode(errors="replace")}
        out.append({**body, "_attributes": dict(message.message.attributes)})
    return out


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        urllib.request.urlopen(request, timeout=30).close()
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise StackError(f"POST {url} failed with HTTP {exc.code}") from exc


def create_buckets(storage_host: str, buckets: Iterable[str]) -> None:
    for bucket in buckets:
        _post(f"{storage_host}/storage/v1/b?project={PROJECT}", {"name": bucket})


def create_store(healthcare_url: str) -> None:
    """The store the pipeline imports into, and the research store its de-identified copies go to (the
    API's dicomStores.deidentify writes only into a store that exists)."""
    base = f"{healthcare_url}/v1/projects/{PROJECT}/locations/{LOCATION}"
    for dataset, store in ((DATASET, STORE), (RESEARCH_DATASET, RESEARCH_STORE)):
        _post(f"{base}/datasets?datasetId={dataset}", {})
        _post(f"{base}/datasets/{dataset}/dicomStores?dicomStoreId={store}", {})
