"""Hostile input through the real local services: poison beside good records, unparseable watches, a deflate
bomb, permanent Cloud Storage refusals (a proxy answering 403 in front of fake-gcs-server)."""

from __future__ import annotations

import json
import re
import threading
import time
import tracemalloc
from urllib.parse import quote

import pytest
from google.cloud import pubsub_v1

from devstack.hostile import deflate_bomb, poison_pending_messages
from devstack.synthetic import generate_dataset
from dicomflow.messages.records import WatchMessage
from handlers import runtime as runtime_module
from tests.integration.conftest import PROJECT, upload, wait_for_operation
from tests.integration.gcs_faults import storage_faults
from tests.integration.pipeline_helpers import (
    Pipeline,
    _deliver,
    _finalize_client,
    _flush,
    _intake_all,
    _object_resource,
    _operation_client,
    _push_envelope,
    _stored_sops,
    _structured,
    _upload,
    drain_operations,
    flush_and_follow,
    results,
)

pytestmark = pytest.mark.integration


def _dead_letter_subscription(pipeline: Pipeline) -> str:
    """The pending topic's dead-letter topic ({PENDING_TOPIC}-dead-letter) with a subscription to read it."""
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(PROJECT, f"{pipeline.names['pending']}-dead-letter")
    publisher.create_topic(request={"name": topic})
    pipeline.names["dead-letter-sub"] = f"{pipeline.names['pending']}-dead-letter-sub"
    subscriber.create_subscription(request={"name": subscriber.subscription_path(PROJECT, pipeline.names[
        "dead-letter-sub"]), "topic": topic, "ack_deadline_seconds": 60})  # fmt: skip
    return pipeline.names["dead-letter-sub"]


def test_poison_on_pending_is_dead_lettered_and_the_good_files_beside_it_are_imported(pipeline: Pipeline) -> None:
    # GIVEN good records on dicom-pending with poison of many kinds published between them
    _dead_letter_subscription(pipeline)
    instances = generate_dataset(1, 1, 4, seed=2901)
    names = _upload(pipeline, instances, "good")
    _intake_all(pipeline, names[:2])
    queued = [m.message.data for m in pipeline.pull("pending")]
    assert len(queued) == 2
    good = queued[0]
    pipeline.publish("pending", queued)  # put them back
    poison = poison_pending_messages(good)
    pipeline.publish("pending", list(poison.values()))
    _intake_all(pipeline, names[2:])
    # WHEN the pipeline flushes and follows up
    flush_and_follow(pipeline)
    # THEN every good file is imported and reported in the batch result
    assert sorted(_stored_sops(pipeline)) == sorted(i.sop_uid for i in instances)
    assert sum(r["files"] for r in results(pipeline)) == 4
    # AND every poison message is on the dead-letter topic with a reason, nothing is left to redeliver
    dead = pipeline.pull("dead-letter")
    assert sorted(m.message.data for m in dead) == sorted(poison.values())
    reasons = [m.message.attributes["dead_letter_reason"] for m in dead]
    assert all(reason and len(reason) < 300 for reason in reasons)
    assert any("SOURCE_BUCKETS" in r for r in reasons)  # the forged bucket
    assert _flush().status_code == 200
    assert pipeline.pull_waiting("pending") == [] and pipeline.pull_waiting("dead-letter") == []
    assert pipeline.pull_waiting("failed") == []


def test_unparseable_watches_are_acknowledged_and_reported_once(pipeline: Pipeline) -> None:
    client = _operation_client()
    watches = [b"{not json", b"[" * 200_000, b"\xff\x00\x01",
               json.dumps({"version": 1, "operation": "operations/1", "batch_id": "b", "kind": "import",
                           "manifest_uri": "gs://b-1/x"}).encode(),
               json.dumps({"version": 1, "operation": {"a": 1}, "batch_id": 1e308,
                           "kind": "import"}).encode()]  # fmt: skip
    for data in watches:
        assert _deliver(client, _push_envelope(data, {})) == 200  # acknowledged, never HTTP 500 for ever
    failed = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert len(failed) == len(watches)
    assert all(f["stage"] == "message" and f["name"].startswith("pubsub:on_operation/") for f in failed)


def test_a_deflate_bomb_upload_is_reported_without_inflating_it(pipeline: Pipeline) -> None:
    # GIVEN a 1 MiB upload whose deflated data set inflates to 1 GiB
    bomb = deflate_bomb(1 << 30)
    upload(pipeline.bucket, {"bomb/IM1.dcm": bomb})
    # WHEN intake handles it
    tracemalloc.start()
    try:
        assert _deliver(_finalize_client(), _structured(_object_resource(pipeline.bucket, "bomb/IM1.dcm"))) == 200
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # THEN it is reported as not DICOM, and intake held no more than the header limit's worth of it
    [failed] = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert failed["name"] == "bomb/IM1.dcm" and "header too large" in failed["reason"]
    assert peak < 200 << 20, f"peak {peak >> 20} MiB"
    assert pipeline.pull_waiting("pending") == []


def test_a_read_refused_for_good_at_intake_is_reported_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    [instance] = generate_dataset(1, 1, 1, seed=2902)
    [name] = _upload(pipeline, [instance], "denied")
    with storage_faults(pipeline.services.storage_host) as faults:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", faults.url)
        runtime_module.reset()
        rule = faults.deny("GET", re.escape(quote(name, safe="")) + ".*alt=media")
        assert _deliver(_finalize_client(), _structured(_object_resource(pipeline.bucket, name))) == 200
        assert rule.fired >= 1
    [failed] = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert (failed["name"], failed["stage"]) == (name, "intake") and "403" in failed["reason"]
    assert pipeline.pull_waiting("pending") == []


def test_a_file_intake_cannot_queue_for_good_is_reported_for_requeue(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN intake configured with a pending topic that does not exist (the Pub/Sub emulator answers 404)
    [instance] = generate_dataset(1, 1, 1, seed=2904)
    [name] = _upload(pipeline, [instance], "unqueued")
    monkeypatch.setenv("PENDING_TOPIC", "no-such-topic-2904")
    runtime_module.reset()
    # WHEN intake handles the upload
    assert _deliver(_finalize_client(), _structured(_object_resource(pipeline.bucket, name))) == 200
    # THEN the file is on dicom-failed (stage intake) with the API's refusal, for requeue once the topic is fixed
    [failed] = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert (failed["name"], failed["stage"]) == (name, "intake")
    assert failed["reason"] == "queueing it for import was refused for good: topic no-such-topic-2904 does not exist"


def test_a_staging_copy_refused_for_good_is_reported_exactly_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two staged files, the copy of one refused for good (403) by Cloud Storage
    monkeypatch.setenv("STAGING", "always")
    monkeypatch.setenv("MAX_ATTEMPTS", "2")
    instances = generate_dataset(1, 1, 2, seed=2903)
    names = _upload(pipeline, instances, "refused")
    _intake_all(pipeline, names)
    with storage_faults(pipeline.services.storage_host) as faults:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", faults.url)
        runtime_module.reset()
        rule = faults.deny("POST", "/o/" + re.escape(quote(names[0], safe="")) + "/rewriteTo/")
        # WHEN flushes keep running (more than MAX_ATTEMPTS)
        for _ in range(4):
            assert _flush().status_code == 200
        assert rule.fired == 2
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", pipeline.services.storage_host)
    runtime_module.reset()  # the functions built from here on talk to fake-gcs-server directly
    drain_operations(pipeline)
    # THEN the refused file is reported once with the reason; the other is imported; nothing comes back
    [failed] = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert (failed["name"], failed["stage"]) == (names[0], "staging")
    assert "refused 2 times" in failed["reason"] and "403" in failed["reason"]
    assert _stored_sops(pipeline) == [instances[1].sop_uid]
    assert pipeline.pull_waiting("pending") == []


def test_concurrent_duplicate_deliveries_of_one_watch_redrive_and_report_once(
    pipeline: Pipeline, api_v1: object
) -> None:
    # GIVEN an import that fails two files: one whose source is still there (re-driven), one deleted since
    instances = generate_dataset(1, 1, 3, seed=2904)
    names = _upload(pipeline, instances, "dup")
    pipeline.inject_fault({"kind": "import-file", "object": re.escape(names[0]) + "|" + re.escape(names[1]),
                           "count": 2})  # fmt: skip
    _intake_all(pipeline, names)
    assert _flush().status_code == 200
    [watch] = pipeline.pull("operations")
    wait_for_operation(api_v1, WatchMessage.from_json(watch.message.data).operation)
    pipeline.bucket.blob(names[1]).delete()
    pipeline.inject_fault({"method": "GET", "path": "dicomWeb", "seconds": 0.5})  # deliveries overlap
    # WHEN four deliveries of that one watch arrive at once, each redelivered until acknowledged
    statuses: list[int] = []

    def deliver() -> None:
        client = _operation_client()
        for _ in range(200):
            status = _deliver(client, _push_envelope(watch.message.data, dict(watch.message.attributes)))
            statuses.append(status)
            if status < 300:
                return
            time.sleep(0.2)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    # THEN there is one re-drive, one report, one result
    assert sum(1 for s in statuses if s < 300) == 4
    redriven = [json.loads(m.message.data) for m in pipeline.pull("pending")]
    failed = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert [r["name"] for r in redriven] == [names[0]]
    assert [(f["name"], f["stage"]) for f in failed] == [(names[1], "deleted")]
    assert len(results(pipeline)) == 1
