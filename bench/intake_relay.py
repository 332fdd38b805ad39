"""Eventarc-like delivery of finalize notifications for the benchmarks: the Pub/Sub emulator pushes at most two
requests at a time (measured: 400 pushes to a 50 ms endpoint took 10.7 s, never more than 2 in flight), which
caps local intake near 2 / latency whatever the function serves; Eventarc delivers as many at once as the
function's instances accept. This relay turns the stack's push subscription into a pull subscription and posts
each notification to ``on_object_finalized`` ``concurrency`` at a time (acked on 2xx, else redelivered)."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.cloud import pubsub_v1

from devstack.wiring import PROJECT

SUBSCRIPTION = "gcs-notifications-push"  # the stack's push subscription to on_object_finalized


class IntakeRelay:
    def __init__(self, function_url: str, concurrency: int) -> None:
        self.url, self.concurrency = function_url, concurrency
        self.subscriber = pubsub_v1.SubscriberClient()
        self.path = self.subscriber.subscription_path(PROJECT, SUBSCRIPTION)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="intake-relay", daemon=True)

    def __enter__(self) -> IntakeRelay:
        self.subscriber.modify_push_config(request={"subscription": self.path, "push_config": {}})  # now: pull
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _post(self, received: Any) -> tuple[str, bool]:
        message = received.message
        envelope = {"message": {"data": base64.b64encode(message.data).decode(),
                                "attributes": dict(message.attributes), "messageId": message.message_id},
                    "subscription": self.path}  # fmt: skip
        request = urllib.request.Request(self.url, data=json.dumps(envelope).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            urllib.request.urlopen(request, timeout=120).close()
        except (urllib.error.URLError, OSError):
            return received.ack_id, False
        return received.ack_id, True

    def _run(self) -> None:
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="intake-push") as pool:
            while not self._stop.is_set():
                try:
                    response = self.subscriber.pull(request={"subscription": self.path, "max_messages": 500},
                                                    timeout=2)  # fmt: skip
                except Exception:  # an empty pull times out (or the stack stops): try again
                    self._stop.wait(0.2)
                    continue
                outcomes = list(pool.map(self._post, response.received_messages))
                done = [ack for ack, ok in outcomes if ok]
                again = [ack for ack, ok in outcomes if not ok]
                if done:
                    self.subscriber.acknowledge(request={"subscription": self.path, "ack_ids": done})
                if again:
                    self.subscriber.modify_ack_deadline(
                        request={"subscription": self.path, "ack_ids": again, "ack_deadline_seconds": 1}
                    )
