"""on_operation through functions-framework: reconciliation, exports, results, redelivery, stuck operations."""

from __future__ import annotations

import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from google.cloud import storage

from devstack.synthetic import generate_dataset
from dicomflow.cli import app
from dicomflow.ledger.store import BatchLedger
from handlers import runtime as runtime_module
from tests.integration.conftest import upload
from tests.integration.pipeline_helpers import (
    Pipeline,
    _deliver,
    _flush,
    _intake_all,
    _operation_client,
    _push_envelope,
    _stored_sops,
    _upload,
    drain_operations,
    export_operations,
    results,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def exports(gcs: storage.Client) -> storage.Bucket:
    return gcs.create_bucket(f"exports-{uuid.uuid4().hex[:10]}")


def _targets(monkeypatch: pytest.MonkeyPatch, *targets: dict[str, Any], **env: str) -> None:
    monkeypatch.setenv("EXPORT_TARGETS", json.dumps(list(targets)))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runtime_module.reset()


def test_a_batch_is_imported_reconciled_exported_and_reported_once(
    pipeline: Pipeline, exports: storage.Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    _targets(
        monkeypatch,
        {"name": "dicom", "gcs": f"gs://{exports.name}/dicom"},
        {"name": "png", "gcs": f"gs://{exports.name}/png", "mime_type": "image/png"},
    )
    # GIVEN an instance already in the store from an older upload, and a new upload of 2 x 1 x 3
    old = generate_dataset(1, 1, 1, seed=601)
    _intake_all(pipeline, _upload(pipeline, old, "older"))
    _flush()
    drain_operations(pipeline)
    results(pipeline)
    for blob in exports.list_blobs():
        blob.delete()
    instances = generate_dataset(2, 1, 3, seed=602)
    _intake_all(pipeline, _upload(pipeline, instances, "new"))
    # WHEN the flush runs and the watches are followed up
    _flush()
    deliveries = drain_operations(pipeline)
    # THEN the import and both exports were watched, and exactly the batch's instances were exported
    assert sorted(d.watch.kind for d in deliveries) == ["export", "export", "import"]
    exported = {b.name for b in exports.list_blobs(prefix="dicom/")}
    assert exported == {f"dicom/{i.study_uid}/{i.series_uid}/{i.sop_uid}.dcm" for i in instances}
    assert len(list(exports.list_blobs(prefix="png/"))) == len(instances)
    # AND one result reports the batch
    [result] = results(pipeline)
    assert result["outcome"] == "success"
    assert (result["files"], result["imported"], result["failed"], result["redriven"]) == (6, 6, 0, 0)
    assert sorted((e["target"], e["outcome"]) for e in result["exports"]) == [
        ("dicom", "succeeded"),
        ("png", "succeeded"),
    ]
    assert result["_attributes"]["outcome"] == "success"
    assert result["timings"]["seconds_upload_to_finished"] >= 0


def test_a_file_the_import_fails_is_redriven_then_reported_with_the_apis_reason(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _targets(monkeypatch, MAX_ATTEMPTS="2")
    instances = generate_dataset(1, 1, 3, seed=611)
    names = _upload(pipeline, instances, "partly")
    bad = names[1]
    # the fault matches the file by name, in place or as its staged copy (a re-drive is staged: its folder
    # already holds the imported files)
    pattern = re.escape(bad) + "|/staging/"
    pipeline.inject_fault({"kind": "import-file", "object": pattern, "count": 10})
    _intake_all(pipeline, names)
    # WHEN the first import fails one file
    _flush()
    drain_operations(pipeline)
    [first] = results(pipeline)
    assert (first["outcome"], first["imported"], first["redriven"]) == ("partial", 2, 1)
    # THEN the file is re-driven once (attempt 2), fails again, and lands on dicom-failed with the API's reason
    _flush()
    drain_operations(pipeline)
    [second] = results(pipeline)
    assert (second["files"], second["failed"]) == (1, 1)
    failed = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert [(f["name"], f["attempt"], f["stage"]) for f in failed] == [(bad, 2, "reconcile")]
    assert "injected import failure" in failed[0]["reason"]
    assert sorted(_stored_sops(pipeline)) == sorted(i.sop_uid for j, i in enumerate(instances) if j != 1)
    # AND verify finds the reason in the file's failure note, without reading every batch of the ledger
    monkeypatch.setattr(BatchLedger, "failures", lambda _self: pytest.fail("verify read the whole ledger"))
    capsys.readouterr()
    assert app.main(["verify", "--json", f"gs://{pipeline.bucket.name}/partly/"]) == 0
    objects = {o["name"]: o for o in json.loads(capsys.readouterr().out)["objects"]}
    assert objects[bad]["state"] == "reported failed"
    assert objects[bad]["reason"].startswith("reconcile: ") and "injected import failure" in objects[bad]["reason"]
    # AND once the sender rewrites it, verify says the report was for an older generation
    upload(pipeline.bucket, {bad: instances[1].data})
    assert app.main(["verify", "--json", f"gs://{pipeline.bucket.name}/partly/"]) == 0
    objects = {o["name"]: o for o in json.loads(capsys.readouterr().out)["objects"]}
    assert objects[bad]["reason"].endswith("the object is at a newer one)")


def test_an_export_to_a_missing_bucket_is_reported_in_the_result(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = f"gone-{uuid.uuid4().hex[:10]}"
    _targets(monkeypatch, {"name": "nowhere", "gcs": f"gs://{missing}/x"})
    _intake_all(pipeline, _upload(pipeline, generate_dataset(1, 1, 2, seed=621), "lost"))
    _flush()
    drain_operations(pipeline)
    [result] = results(pipeline)
    assert result["outcome"] == "partial"
    [export] = result["exports"]
    assert export["outcome"] == "failed"
    assert f"gs://{missing}" in export["reason"]


def test_a_redelivered_watch_never_starts_a_second_export_or_result(
    pipeline: Pipeline, exports: storage.Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    _targets(monkeypatch, {"name": "dicom", "gcs": f"gs://{exports.name}/dicom"})
    _intake_all(pipeline, _upload(pipeline, generate_dataset(1, 1, 2, seed=631), "again"))
    _flush()
    deliveries = drain_operations(pipeline)
    assert len(results(pipeline)) == 1
    # WHEN every watch message is delivered again (Pub/Sub at-least-once)
    client = _operation_client()
    for delivery in deliveries:
        assert _deliver(client, _push_envelope(delivery.watch.to_json(), {})) == 200
    drain_operations(pipeline)
    # THEN there is still one export and one result
    assert len(export_operations(pipeline)) == 1
    assert results(pipeline) == []


def test_an_operation_is_waited_for_then_reported_stuck_after_the_maximum_age(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a follow-up that does not poll (redelivery only), and an import held by the emulator until the test
    # lets it go (no race with a delay on a loaded machine)
    _targets(monkeypatch, FOLLOW_POLL_SECONDS="0")
    pipeline.inject_fault({"kind": "operation-delay", "seconds": 900, "count": 1})
    _intake_all(pipeline, _upload(pipeline, generate_dataset(1, 1, 1, seed=641), "slow"))
    _flush()
    # THEN with a generous maximum age, the watch is handed back (500) while the import runs ...
    [watch] = pipeline.pull("operations")
    assert _deliver(_operation_client(), _push_envelope(watch.message.data, dict(watch.message.attributes))) == 500
    assert pipeline.pull_waiting("results") == []
    # ... and acknowledged once it is done, with the batch's result
    requests.delete(pipeline.faults_url, timeout=10).raise_for_status()  # the held import starts working
    pipeline.publish("operations", [watch.message.data])  # Pub/Sub's redelivery of the handed-back watch
    drain_operations(pipeline)
    assert results(pipeline)[0]["outcome"] == "success"
    # AND with a maximum age of 0 a slow operation is reported stuck and acknowledged at once
    _targets(monkeypatch, OPERATION_MAX_AGE_SECONDS="0")
    # (held until the fixture's teardown clears the rules: still running at its first follow-up, however late)
    pipeline.inject_fault({"kind": "operation-delay", "seconds": 900, "count": 1})
    _intake_all(pipeline, _upload(pipeline, generate_dataset(1, 1, 1, seed=642), "stuck"))
    _flush()
    [delivery] = drain_operations(pipeline)
    assert delivery.attempts == 1
    [stuck] = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert stuck["stage"] == "operation"
    assert "still not done" in stuck["reason"]


def _operation_gets(pipeline: Pipeline) -> int:
    rules = requests.get(pipeline.faults_url, timeout=10).json()["rules"]
    return sum(int(r["fired"]) for r in rules if r.get("path") == _GET_OPERATION)


_GET_OPERATION = r"/operations/[^/:]+$"


def test_the_follow_up_notices_an_operations_end_while_it_holds_the_watch(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a follow-up that polls inside one delivery, an import the emulator keeps running until released, and a
    # no-op latency rule that counts the operations.get calls (operations live on the dataset: not store-scoped)
    _targets(monkeypatch, FOLLOW_POLL_SECONDS="240", FOLLOW_INTERVAL_SECONDS="0.2")
    pipeline.inject_fault({"kind": "operation-delay", "seconds": 600, "count": 1, "operation": "ImportDicomData"})
    rule = {"method": "GET", "path": _GET_OPERATION, "seconds": 0.001, "rate": 1.0}
    requests.post(pipeline.faults_url, json=rule, timeout=10).raise_for_status()
    instances = generate_dataset(1, 1, 2, seed=645)
    _intake_all(pipeline, _upload(pipeline, instances, "held"))
    _flush()
    [message] = pipeline.pull("operations")
    request = _push_envelope(message.message.data, dict(message.message.attributes))
    with ThreadPoolExecutor(1) as pool:
        # WHEN the watch is delivered once, while the import is still running
        delivery = pool.submit(_deliver, _operation_client(), request)
        deadline = time.monotonic() + 120
        while _operation_gets(pipeline) < 3:  # the delivery polls the operation, holding the watch
            assert not delivery.done(), f"the delivery ended while the import ran: HTTP {delivery.result()}"
            assert time.monotonic() < deadline, "the follow-up never polled the operation"
            time.sleep(0.2)
        assert not delivery.done()
        requests.delete(pipeline.faults_url, timeout=10).raise_for_status()  # the import starts working now
        status = delivery.result(timeout=240)
    # THEN that same delivery noticed the end and finished the batch: acknowledged, no redelivery needed
    assert status == 200
    [result] = results(pipeline)
    assert (result["outcome"], result["imported"]) == ("success", 2)
    assert sorted(_stored_sops(pipeline)) == sorted(i.sop_uid for i in instances)


def test_reconcile_asks_the_store_one_study_level_query_for_a_study_of_several_series(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a study already holding an instance of another upload, and a batch of 3 new series of that study,
    # with no-op latency rules counting the study-level and series-level instance queries
    _targets(monkeypatch)
    older = generate_dataset(1, 4, 1, seed=661)
    _intake_all(pipeline, _upload(pipeline, older[:1], "older"))
    _flush()
    drain_operations(pipeline)
    results(pipeline)
    for path in (r"/studies/[^/]+/instances$", r"/series/[^/]+/instances$"):
        pipeline.inject_fault({"method": "GET", "path": path, "seconds": 0.001, "rate": 1.0})
    _intake_all(pipeline, _upload(pipeline, older[1:], "newer"))
    # WHEN the batch is imported and reconciled
    _flush()
    drain_operations(pipeline)
    # THEN each of its 3 files is counted imported (the older instance is not the batch's), from one study query
    [result] = results(pipeline)
    assert (result["files"], result["imported"], result["failed"], result["redriven"]) == (3, 3, 0, 0)
    assert pipeline.faults_fired() == [1, 0]


def test_a_malformed_watch_is_acknowledged(pipeline: Pipeline) -> None:
    assert _deliver(_operation_client(), _push_envelope(b"{not json", {})) == 200
    assert _deliver(_operation_client(), _push_envelope(json.dumps({"version": 9}).encode(), {})) == 200


def test_exported_png_is_a_real_image(
    pipeline: Pipeline, exports: storage.Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    _targets(monkeypatch, {"name": "png", "gcs": f"gs://{exports.name}/png", "mime_type": "image/png"})
    instance = generate_dataset(1, 1, 1, seed=651)[0]
    _intake_all(pipeline, _upload(pipeline, [instance], "img"))
    _flush()
    drain_operations(pipeline)
    [blob] = list(exports.list_blobs(prefix="png/"))
    assert blob.download_as_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
