"""Pub/Sub through google-cloud-pubsub: batched publishing and synchronous pull with lease extension."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from dicomflow.errors import PermanentError, RetryableError
from dicomflow.logs import fields

log = logging.getLogger(__name__)

_PUBLISH_TIMEOUT = 60.0
_FIRST_PULL_TIMEOUT = 10.0  # the first pull may wait for messages; later ones only drain what is there
_NEXT_PULL_TIMEOUT = 2.0
_MAX_PULL = 1000
_ACK_CHUNK = 1000
_BATCH_LATENCY = 0.01  # seconds a publish may wait for company; concurrent invocations share a batch
_TRANSIENT = (
    gexc.TooManyRequests, gexc.InternalServerError, gexc.ServiceUnavailable, gexc.DeadlineExceeded,
    gexc.RetryError, gexc.Aborted, gexc.Unknown, TimeoutError, ConnectionError,
)  # fmt: skip


@dataclass(frozen=True)
class ReceivedMessage:
    ack_id: str
    data: bytes
    attributes: Mapping[str, str]
    message_id: str


class Publisher(Protocol):
    def publish(self, topic: str, messages: Sequence[tuple[bytes, Mapping[str, str]]]) -> list[str]:
        """Publish and wait until every message is accepted; return the message ids."""


class Subscriber(Protocol):
    def pull(self, subscription: str, max_messages: int) -> list[ReceivedMessage]:
        """Up to ``max_messages`` messages (fewer when the subscription runs dry)."""

    def ack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        """Acknowledge: the messages are done."""

    def nack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        """Give the messages back for redelivery now."""

    def extend(self, subscription: str, ack_ids: Sequence[str], seconds: int) -> None:
        """Set the ack deadline of held messages to ``seconds`` from now."""


class PubSubPublisher:
    """One batching PublisherClient per process; topics are ids within ``project``."""

    def __init__(self, project: str, client: pubsub_v1.PublisherClient | None = None) -> None:
        self._project = project
        self._client = client or pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_messages=500, max_latency=_BATCH_LATENCY)
        )

    def publish(self, topic: str, messages: Sequence[tuple[bytes, Mapping[str, str]]]) -> list[str]:
        path = self._client.topic_path(self._project, topic)
        try:
            futures = [self._client.publish(path, data, **dict(attributes)) for data, attributes in messages]
            return [str(future.result(timeout=_PUBLISH_TIMEOUT)) for future in futures]
        except gexc.NotFound as exc:
            raise PermanentError(f"topic {topic} does not exist") from exc
        except (*_TRANSIENT, gexc.GoogleAPICallError) as exc:
            raise RetryableError(f"publishing to {topic} failed: {type(exc).__name__}") from exc


class PubSubSubscriber:
    """Synchronous pull on subscription ids within ``project``."""

    def __init__(self, project: str, client: pubsub_v1.SubscriberClient | None = None) -> None:
        self._project = project
        self._client = client or pubsub_v1.SubscriberClient()

    def _path(self, subscription: str) -> str:
        return str(self._client.subscription_path(self._project, subscription))

    def pull(self, subscription: str, max_messages: int) -> list[ReceivedMessage]:
        """Repeated pulls until the subscription answers empty or ``max_messages`` arrived."""
        received: list[ReceivedMessage] = []
        while len(received) < max_messages:
            request = {
                "subscription": self._path(subscription),
                "max_messages": min(_MAX_PULL, max_messages - len(received)),
            }
            try:
                timeout = _NEXT_PULL_TIMEOUT if received else _FIRST_PULL_TIMEOUT
                response = self._client.pull(request=request, timeout=timeout)
            except gexc.DeadlineExceeded:
                break
            except gexc.NotFound as exc:
                raise PermanentError(f"subscription {subscription} does not exist") from exc
            except (*_TRANSIENT, gexc.GoogleAPICallError) as exc:
                raise RetryableError(f"pulling {subscription} failed: {type(exc).__name__}") from exc
            if not response.received_messages:
                break
            received.extend(
                ReceivedMessage(m.ack_id, bytes(m.message.data), dict(m.message.attributes), m.message.message_id)
                for m in response.received_messages
            )
        return received

    def ack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        path = self._path(subscription)
        try:
            for start in range(0, len(ack_ids), _ACK_CHUNK):
                self._client.acknowledge(
                    request={"subscription": path, "ack_ids": list(ack_ids[start : start + _ACK_CHUNK])}
                )
        except (*_TRANSIENT, gexc.GoogleAPICallError) as exc:
            raise RetryableError(f"acknowledge on {subscription} failed: {type(exc).__name__}") from exc

    def extend(self, subscription: str, ack_ids: Sequence[str], seconds: int) -> None:
        path = self._path(subscription)
        try:
            for start in range(0, len(ack_ids), _ACK_CHUNK):
                chunk = list(ack_ids[start : start + _ACK_CHUNK])
                self._client.modify_ack_deadline(
                    request={"subscription": path, "ack_ids": chunk, "ack_deadline_seconds": seconds}
                )
        except (*_TRANSIENT, gexc.GoogleAPICallError) as exc:
            raise RetryableError(f"modify_ack_deadline on {subscription} failed: {type(exc).__name__}") from exc

    def nack(self, subscription: str, ack_ids: Sequence[str]) -> None:
        self.extend(subscription, ack_ids, 0)


@contextmanager
def leased(subscriber: Subscriber, subscription: str, ack_ids: Sequence[str], seconds: int) -> Iterator[None]:
    """Keep extending the ack deadline of ``ack_ids`` while the block runs (every third of ``seconds``)."""
    stop = threading.Event()

    def keep_alive() -> None:
        while not stop.wait(seconds / 3):
            try:
                subscriber.extend(subscription, ack_ids, seconds)
            except RetryableError as exc:
                log.warning("lease extension failed", extra=fields(error=str(exc), messages=len(ack_ids)))

    if ack_ids:
        subscriber.extend(subscription, ack_ids, seconds)
    thread = threading.Thread(target=keep_alive, name="lease-extender", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
