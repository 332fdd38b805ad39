"""The timing profile applied through the real local services: healthcare_emulator's operation durations and
request latencies, the Cloud Storage latency proxy in front of fake-gcs-server, the relay's retry policy on the
Pub/Sub emulator, and ``devstack`` with ``--timing cloud``.

Durations are checked from below only (the profile's clocks are a floor; a loaded machine only adds to them)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import pubsub_v1, storage

from devstack.latency_proxy import LatencyProxy
from devstack.relay import PushRoute, relay
from devstack.stack import LocalStack, StackConfig
from devstack.synthetic import generate_dataset
from devstack.timing import CLOUD, Percentiles
from tests.integration.conftest import PROJECT, LocalServices, StoreRef, upload, wait_for_operation

pytestmark = pytest.mark.integration


@pytest.fixture
def timing(services: LocalServices) -> Iterator[str]:
    """The emulator's timing endpoint; the profile is turned off again after the test."""
    url = f"{services.healthcare_url}/emulator/timing"
    yield url
    requests.delete(url, timeout=10).raise_for_status()


def _seconds(operation: dict[str, Any]) -> float:
    metadata = operation["metadata"]
    start, end = (datetime.fromisoformat(metadata[k].replace("Z", "+00:00")) for k in ("createTime", "endTime"))
    return (end - start).total_seconds()


def test_an_import_lasts_what_the_timing_profile_says(
    api_v1: Any, bucket: storage.Bucket, store: StoreRef, timing: str
) -> None:
    # GIVEN a profile where an import lasts 2 s plus 0.5 s a file, and 4 files
    profile = {"import": {"fixed_seconds": 2, "per_file_seconds": 0.5, "per_mb_seconds": 0}}
    requests.post(timing, json=profile, timeout=10).raise_for_status()
    assert requests.get(timing, timeout=10).json()["timing"]["import"]["per_file_seconds"] == 0.5
    instances = generate_dataset(1, 1, 4, seed=2401)
    upload(bucket, {f"t/{i.sop_uid}.dcm": i.data for i in instances})
    # WHEN they are imported
    stores = api_v1.projects().locations().datasets().dicomStores()
    started = stores.import_(name=store.name, body={"gcsSource": {"uri": f"gs://{bucket.name}/t/**.dcm"}}).execute()
    done = wait_for_operation(api_v1, started["name"])
    # THEN the operation stayed running for at least 2 + 4 x 0.5 s, and imported every file
    assert done["metadata"]["counter"]["success"] == "4"
    assert _seconds(done) >= 4.0


def test_operations_get_waits_the_profiles_latency(api_v1: Any, bucket: storage.Bucket, store: StoreRef,
                                                   timing: str) -> None:  # fmt: skip
    # GIVEN a profile whose operations.get takes 300 ms (p50 = p99) and QIDO-RS nothing extra
    profile = {"latency": {"operations.get": {"p50_ms": 300, "p99_ms": 300}}}
    requests.post(timing, json=profile, timeout=10).raise_for_status()
    stores = api_v1.projects().locations().datasets().dicomStores()
    operation = stores.import_(name=store.name, body={"gcsSource": {"uri": f"gs://{bucket.name}/none/**"}}).execute()
    operations = api_v1.projects().locations().datasets().operations()
    # WHEN the operation is read 3 times THEN that took at least 3 x 300 ms
    started = time.monotonic()
    for _ in range(3):
        operations.get(name=operation["name"]).execute()
    assert time.monotonic() - started >= 0.9


def test_the_latency_proxy_delays_and_counts_the_pipelines_cloud_storage_calls(
    services: LocalServices, bucket: storage.Bucket
) -> None:
    # GIVEN the proxy in front of fake-gcs-server: 200 ms a rewrite, 50 ms any other call
    latency = {"rewrite": Percentiles(200, 200), "other": Percentiles(50, 50)}
    proxy = LatencyProxy(("127.0.0.1", 0), services.storage_host, latency, seed=1).start()
    try:
        client = storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                                client_options=ClientOptions(api_endpoint=proxy.url))  # fmt: skip
        through = client.bucket(bucket.name)
        # WHEN an object is written, rewritten and read back through it
        through.blob("a.dcm").upload_from_string(b"DICM bytes")
        token, _, _ = through.blob("b.dcm").rewrite(through.blob("a.dcm"))
        assert token is None
        data = through.blob("b.dcm").download_as_bytes()
    finally:
        proxy.stop()
    # THEN the calls reached fake-gcs-server, each counted by kind with its latency
    assert data == b"DICM bytes" and bucket.blob("b.dcm").download_as_bytes() == b"DICM bytes"
    assert proxy.calls["rewrite"] == 1 and proxy.calls["other"] >= 2
    assert proxy.waited["rewrite"] == pytest.approx(0.2)
    assert proxy.waited["other"] == pytest.approx(0.05 * proxy.calls["other"])


class _Flaky(BaseHTTPRequestHandler):
    """A push endpoint that answers 500 to the first ``failures`` pushes, then 204; records when each came."""

    failures = 3
    arrivals: list[float] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).arrivals.append(time.monotonic())
        self.send_response(500 if len(self.arrivals) <= self.failures else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


def test_a_failed_push_is_redelivered_after_the_retry_policys_backoff(pubsub_host: str) -> None:
    # GIVEN a subscription relayed with a retry policy of 1 s doubling up to 2 s, to an endpoint failing 3 times
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    suffix = uuid.uuid4().hex[:8]
    topic = publisher.topic_path(PROJECT, f"retry-{suffix}")
    publisher.create_topic(request={"name": topic})
    subscription = f"retry-{suffix}-sub"
    subscriber.create_subscription(request={"name": subscriber.subscription_path(PROJECT, subscription),
                                            "topic": topic, "ack_deadline_seconds": 60})  # fmt: skip
    _Flaky.arrivals = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    route = PushRoute(PROJECT, subscription, f"http://127.0.0.1:{server.server_address[1]}",
                      min_backoff_seconds=1, max_backoff_seconds=2)  # fmt: skip
    stop = threading.Event()
    relaying = threading.Thread(target=relay, args=(route, stop), daemon=True)
    relaying.start()
    try:
        # WHEN one message is published
        publisher.publish(topic, b"watch").result(timeout=30)
        deadline = time.monotonic() + 120
        while len(_Flaky.arrivals) < 4:
            assert time.monotonic() < deadline, f"only {len(_Flaky.arrivals)} deliveries"
            time.sleep(0.1)
    finally:
        stop.set()
        relaying.join(timeout=30)
        server.shutdown()
        server.server_close()
    # THEN each redelivery came at least the policy's backoff after the failed one: 1 s, 2 s, 2 s
    gaps = [later - earlier for earlier, later in zip(_Flaky.arrivals, _Flaky.arrivals[1:], strict=False)]
    assert len(gaps) == 3
    for gap, backoff in zip(gaps, (1, 2, 2), strict=True):
        assert gap >= backoff - 0.2, gaps


def test_devstack_with_the_cloud_timing_profile_applies_it_to_every_stand_in(tmp_path: Any) -> None:
    # GIVEN the stack started with --timing cloud
    stack = LocalStack(StackConfig.on_free_ports(data_dir=tmp_path / "stack", timing="cloud"))
    endpoints = stack.start()
    try:
        # THEN the emulator runs the cloud profile, the functions reach Cloud Storage through the latency proxy,
        # and the operations relay backs off as the deployed retry policy does
        with urllib.request.urlopen(f"{endpoints.healthcare_url}/emulator/timing", timeout=10) as answer:
            applied = json.loads(answer.read())["timing"]
        assert applied["import"] == {"fixed_seconds": 20.0, "per_file_seconds": 0.03, "per_mb_seconds": 0.05}
        assert applied["latency"]["qido"] == {"p50_ms": 100, "p99_ms": 400}
        assert stack.gcs_proxy is not None
        env = json.loads((endpoints.data_dir / "logs" / "timing.json").read_text())
        assert env == CLOUD.emulator_json()
        assert stack._env["STORAGE_EMULATOR_HOST"] == stack.gcs_proxy.url != endpoints.storage_host
        [operations] = [r for r in stack._routes(endpoints.functions) if r.subscription.startswith("dicom-operations")]
        assert (operations.min_backoff_seconds, operations.max_backoff_seconds) == (10, 10)
    finally:
        stack.stop()
