"""Publisher and Subscriber on google-cloud-pubsub: batched publishing, synchronous pull, ack-deadline changes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from dicomflow.adapters.errors import needs, translated
from dicomflow.errors import NotFoundError
from dicomflow.ports import Message, ReceivedMessage

T = TypeVar("T")
_PUBLISH_TIMEOUT = 60.0
# The first pull may wait for messages (PubSubSubscriber.pull's wait_seconds), later ones only drain what is
# there. Kept short: an empty pull is one idle pass of the flush loop, whose longest pass decides how early the
# loop must stop before its deadline.
_NEXT_PULL_TIMEOUT = 2.0
_MAX_PULL = 1000
_ACK_CHUNK = 1000
# One thread-safe PublisherClient serves every request thread of an instance: a publish waits up to
# _BATCH_LATENCY for company, so the records of concurrent requests go out in one call of up to _BATCH_MESSAGES
# (one caller at a time pays the window once per event; concurrent callers share it).
_BATCH_LATENCY = 0.01
_BATCH_MESSAGES = 500
_PUBLISH_HINT = needs("roles/pubsub.publisher on the topic")
_SUBSCRIBE_HINT = needs("roles/pubsub.subscriber on the subscription")


class PubSubPublisher:
    """One batching PublisherClient per process; topics are ids within ``project``."""

    def __init__(self, project: str, client: pubsub_v1.PublisherClient | None = None) -> None:
        self._project = project
        self._client = client or pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_messages=_BATCH_MESSAGES, max_latency=_BATCH_LATENCY)
        )

    def publish(self, topic: str, messages: Sequence[Message]) -> list[str]:
        path = self._client.topic_path(self._project, topic)

        def run() -> list[str]:
            futures = [self._client.publish(path, data, **dict(attributes)) for data, attributes in messages]
            return [str(future.result(timeout=_PUBLISH_TIMEOUT)) for future in futures]

        try:
            return translated(f"publishing to {topic}", run, hint=_PUBLISH_HINT)
        except NotFoundError as exc:
            raise NotFoundError(f"topic {topic} does not exist", exc.status) from exc


class PubSubSubscriber:
    """Synchronous pull on subscription ids within ``project``."""

    def __init__(
        self,
        project: str,
        client: pubsub_v1.SubscriberClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._project = project
        self._client = client or pubsub_v1.SubscriberClient()
        self._clock = clock

    def _path(self, subscription: str) -> str:
        return str(self._client.subscription_path(self._project, subscription))

    def _call(self, what: str, subscription: str, call: Callable[[], T]) -> T:
        try:
            return translated(f"{what} {subscription}", call, hint=_SUBSCRIBE_HINT)
        except NotFoundError as exc:
            raise NotFoundError(f"subscription {subscription} does not exist", exc.status) from exc

    def pull(
        self, subscription: str, max_messages: int, *, wait_seconds: float = 2.0, max_seconds: float | None = None
    ) -> list[ReceivedMessage]:
        """Repeated pulls until the subscription answers empty, ``max_messages`` arrived or ``max_seconds`` passed
        since the first message arrived. Without that bound a subscription that keeps receiving (uploads still
        being taken in) keeps the loop pulling past the ack deadline of what it pulled first: Pub/Sub delivers
        those messages again (into this loop, or to the next pull once the loop ends) while the caller, which
        leases them only after the loop, takes them for its own."""
        received: list[ReceivedMessage] = []
        first: float | None = None  # when the first message arrived
        while len(received) < max_messages:
            if first is not None and max_seconds is not None and self._clock() - first >= max_seconds:
                break
            request = {
                "subscription": self._path(subscription),
                "max_messages": min(_MAX_PULL, max_messages - len(received)),
            }
            timeout = _NEXT_PULL_TIMEOUT if received else wait_seconds

            def once(request: dict[str, object] = request, timeout: float = timeout) -> Any:
                try:
                    return self._client.pull(request=request, timeout=timeout)
                except gexc.DeadlineExceeded:  # nothing (more) arrived in time: what we have is the answer
                    return None

            response = self._call("pulling", subscription, once)
            if response is None or not response.received_messages:
                break
            if first is None:
                first = self._clock()
            received.extend(
                ReceivedMessage(m.ack_id, bytes(m.message.data), dict(m.message.attributes), m.message.message_id)
                for m in response.received_messages
            )
        return received

    def ack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        path = self._path(subscription)

        def run() -> None:
            for start in range(0, len(ack_ids), _ACK_CHUNK):
                chunk = list(ack_ids[start : start + _ACK_CHUNK])
                self._client.acknowledge(request={"subscription": path, "ack_ids": chunk})

        self._call("acknowledge on", subscription, run)

    def extend(self, subscription: str, ack_ids: Sequence[str], seconds: int) -> None:
        path = self._path(subscription)

        def run() -> None:
            for start in range(0, len(ack_ids), _ACK_CHUNK):
                chunk = list(ack_ids[start : start + _ACK_CHUNK])
                self._client.modify_ack_deadline(
                    request={"subscription": path, "ack_ids": chunk, "ack_deadline_seconds": seconds}
                )

        self._call("modify_ack_deadline on", subscription, run)

    def nack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        self.extend(subscription, ack_ids, 0)
