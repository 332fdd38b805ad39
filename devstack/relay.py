"""Pub/Sub push as the stack delivers it: pull a subscription, POST each message to a function as a push
envelope, acknowledge on 2xx, redeliver later otherwise (the retry policy's exponential backoff between a
minimum and a maximum, optional dead-letter topic).

The stack relays instead of letting the emulator push because the emulator cannot do what the deployment
does: it stores a subscription ``filter`` but ignores it (so every bucket's notifications would reach
intake), and its push retry backs off far beyond ``maximum_backoff`` under load.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from google.cloud import pubsub_v1

Accept = Callable[[Mapping[str, str]], bool]


def _everything(attributes: Mapping[str, str]) -> bool:
    return True


@dataclass(frozen=True)
class PushRoute:
    """One push subscription: where its messages go and how failures are retried."""

    project: str
    subscription: str
    url: str
    max_backoff_seconds: float
    accept: Accept = _everything  # the subscription's filter: other messages are acknowledged undelivered
    dead_letter_topic: str | None = None
    max_attempts: int | None = None  # with dead_letter_topic: attempts before a message is dead-lettered
    workers: int = 1  # concurrent deliveries
    timeout_seconds: float = 300.0
    min_backoff_seconds: float = 1.0

    def backoff(self, failed: int) -> float:
        """The delay before the next delivery of a message that failed ``failed`` times (1, 2, ...): exponential
        from ``min_backoff_seconds``, doubling per failure, capped at ``max_backoff_seconds``, as a subscription's
        retry policy (``minimum_backoff``..``maximum_backoff``; the doubling is our model: Pub/Sub documents
        the bounds and "exponential", best effort, not the factor)."""
        return float(min(self.min_backoff_seconds * 2 ** (failed - 1), self.max_backoff_seconds))


def relay(route: PushRoute, stop: threading.Event) -> None:
    """Deliver the subscription's messages until ``stop`` is set: each on its own worker, settled as soon as its
    delivery ends (a delivery held for minutes, such as a follow-up polling its operation, delays no other);
    only as many messages are pulled as there are idle workers, so none waits out its ack deadline unsent."""
    subscriber, publisher = pubsub_v1.SubscriberClient(), pubsub_v1.PublisherClient()
    path = subscriber.subscription_path(route.project, route.subscription)
    attempts: dict[str, int] = {}
    idle = threading.Semaphore(route.workers)

    def deliver(message: pubsub_v1.types.ReceivedMessage) -> None:
        try:
            ok = _post(route, _envelope(message.message, path))
            _settle(route, subscriber, publisher, path, message, ok, attempts)
        except Exception:  # the emulator went away: an unacknowledged message comes back after its deadline
            pass
        finally:
            idle.release()

    with ThreadPoolExecutor(route.workers, thread_name_prefix=route.subscription) as pool:
        while not stop.is_set():
            if not idle.acquire(timeout=0.5):
                continue
            free = 1
            while free < min(route.workers, 50) and idle.acquire(blocking=False):
                free += 1
            try:
                response = subscriber.pull(request={"subscription": path, "max_messages": free}, timeout=2, retry=None)
                received = list(response.received_messages)
            except Exception:  # the emulator restarting, or nothing to pull before the timeout
                received = []
                stop.wait(0.5)
            filtered = [m for m in received if not route.accept(dict(m.message.attributes))]
            wanted = [m for m in received if route.accept(dict(m.message.attributes))]
            for _ in range(free - len(wanted)):
                idle.release()
            if filtered:
                with contextlib.suppress(Exception):
                    subscriber.acknowledge(request={"subscription": path, "ack_ids": [m.ack_id for m in filtered]})
            for message in wanted:
                pool.submit(deliver, message)


def _envelope(message: pubsub_v1.types.PubsubMessage, subscription: str) -> bytes:
    return json.dumps({
        "message": {"data": base64.b64encode(message.data).decode(), "attributes": dict(message.attributes),
                    "messageId": message.message_id},
        "subscription": subscription,
    }).encode()  # fmt: skip


def _post(route: PushRoute, envelope: bytes) -> bool:
    request = urllib.request.Request(route.url, data=envelope, method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        urllib.request.urlopen(request, timeout=route.timeout_seconds).close()
    except (urllib.error.URLError, OSError):
        return False
    return True


def _settle(
    route: PushRoute,
    subscriber: pubsub_v1.SubscriberClient,
    publisher: pubsub_v1.PublisherClient,
    path: str,
    received: pubsub_v1.types.ReceivedMessage,
    delivered: bool,
    attempts: dict[str, int],
) -> None:
    """Acknowledge a delivered (or dead-lettered) message; otherwise make it come back after the backoff."""
    message = received.message
    count = attempts[message.message_id] = attempts.get(message.message_id, 0) + 1
    give_up = route.dead_letter_topic is not None and route.max_attempts is not None and count >= route.max_attempts
    if delivered or give_up:
        if not delivered and route.dead_letter_topic is not None:
            topic = publisher.topic_path(route.project, route.dead_letter_topic)
            publisher.publish(topic, message.data, **dict(message.attributes)).result(timeout=30)
        subscriber.acknowledge(request={"subscription": path, "ack_ids": [received.ack_id]})
        attempts.pop(message.message_id, None)
        return
    subscriber.modify_ack_deadline(
        request={"subscription": path, "ack_ids": [received.ack_id],
                 "ack_deadline_seconds": math.ceil(route.backoff(count))}
    )  # fmt: skip
