"""``dicomflow rewatch`` through the real local services: the watches of a batch are lost (what a restart of the
Pub/Sub emulator does to the local stack, or a recreated subscription to a deployment) and published again, so
the batch is reconciled, exported and reported once all the same."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from google.cloud import storage

from devstack.synthetic import generate_dataset
from dicomflow.messages.records import WatchKind, WatchMessage
from handlers import runtime as runtime_module
from tests.integration.pipeline_helpers import (
    Pipeline,
    _deliver,
    _flush,
    _intake_all,
    _operation_client,
    _push_envelope,
    _upload,
    cli_json,
    drain_operations,
    results,
)

pytestmark = pytest.mark.integration


def _rewatch(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, parsed = cli_json(capsys, "rewatch", *argv)
    assert code == 0
    return dict(parsed)


def _deliver_until_acked(message: Any, timeout: float = 60.0) -> None:
    client, deadline = _operation_client(), time.monotonic() + timeout
    while _deliver(client, _push_envelope(message.message.data, dict(message.message.attributes))) >= 300:
        assert time.monotonic() < deadline, "the watch was never acknowledged"
        time.sleep(0.1)


def test_lost_import_and_export_watches_are_published_again_and_the_batch_is_reported_once(
    pipeline: Pipeline, gcs: storage.Client, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    exports = gcs.create_bucket(f"exports-{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("EXPORT_TARGETS", json.dumps([{"name": "dicom", "gcs": f"gs://{exports.name}/dicom"}]))
    runtime_module.reset()
    # GIVEN a batch whose import watch is lost (pulled and acknowledged, never delivered)
    instances = generate_dataset(1, 1, 3, seed=3101)
    _intake_all(pipeline, _upload(pipeline, instances, "lost"))
    assert _flush().status_code == 200
    [lost] = pipeline.pull("operations")
    assert WatchMessage.from_json(lost.message.data).kind == WatchKind.IMPORT
    # WHEN rewatch runs dry THEN it names the batch and publishes nothing
    dry = _rewatch(capsys, "--dry-run")
    assert (len(dry["open"]), dry["imports"], dry["exports"]) == (1, 1, 0)
    assert pipeline.pull_waiting("operations", seconds=2.0) == []
    # WHEN it runs THEN the import watch is back; followed up, it starts the export, whose watch is lost too
    assert _rewatch(capsys)["imports"] == 1
    [again] = pipeline.pull_waiting("operations", seconds=10.0, until=1)
    assert again.message.data == lost.message.data
    _deliver_until_acked(again)
    [export_watch] = pipeline.pull_waiting("operations", seconds=10.0, until=1)
    assert WatchMessage.from_json(export_watch.message.data).kind == WatchKind.EXPORT
    assert results(pipeline) == []
    # AND a second rewatch publishes the import watch (acted on once already) and the export's
    second = _rewatch(capsys)
    assert (second["open"], second["imports"], second["exports"]) == (dry["open"], 1, 1)
    deliveries = drain_operations(pipeline)
    assert sorted(d.watch.kind for d in deliveries) == ["export", "import"]
    # THEN the batch is reported once, every file imported once and exported
    [result] = results(pipeline)
    assert (result["files"], result["imported"], result["failed"], result["redriven"]) == (3, 3, 0, 0)
    assert [(e["target"], e["outcome"]) for e in result["exports"]] == [("dicom", "succeeded")]
    assert len(list(exports.list_blobs(prefix="dicom/"))) == 3
    # AND a batch with its result is not watched again
    assert _rewatch(capsys) == {"batches": 1, "open": [], "imports": 0, "exports": 0, "dry_run": False}
