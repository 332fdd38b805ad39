"""Staged imports through fake-gcs-server, the emulator and the real functions: one import per batch in a
drop folder that already holds thousands of files, copies pinned to the generation, no copy left behind."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from devstack.synthetic import generate_dataset
from tests.integration.conftest import upload
from tests.integration.pipeline_helpers import (
    Pipeline,
    _flush,
    _intake_all,
    _stored_sops,
    drain_operations,
    results,
)

pytestmark = pytest.mark.integration


def _manifest(pipeline: Pipeline) -> dict[str, Any]:
    [blob] = [b for b in pipeline.bucket.list_blobs(prefix="dicomflow/batches/") if b.name.endswith("manifest.json")]
    body: dict[str, Any] = json.loads(blob.download_as_bytes())
    return body


def test_new_files_in_a_folder_of_2000_old_ones_are_imported_by_one_staged_operation(
    pipeline: Pipeline, api_v1: Any
) -> None:
    # GIVEN a drop folder holding 2,000 objects from earlier uploads (bytes that would fail an import if read)
    old = {f"incoming/{i:05d}-old.dcm": b"imported long ago" for i in range(2000)}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda item: pipeline.bucket.blob(item[0]).upload_from_string(item[1]), old.items()))
    # AND 12 new instances named by their SOP Instance UID in the same flat folder
    instances = generate_dataset(1, 2, 6, seed=711)
    new = {f"incoming/{i.sop_uid}.dcm": i.data for i in instances}
    upload(pipeline.bucket, new)
    _intake_all(pipeline, list(new))
    # WHEN the flush runs and the watch is followed up
    assert _flush().status_code == 200
    manifest = _manifest(pipeline)
    [entry] = manifest["imports"]
    drain_operations(pipeline)
    # THEN one operation imported exactly the new files: its success counter is 12 (no old file was read)
    operation = requests.get(f"{pipeline.services.healthcare_url}/v1/{entry['operation']}", timeout=10).json()
    assert entry["uri"] == f"gs://{pipeline.bucket.name}/dicomflow/staging/{manifest['batch_id']}/**"
    assert operation["metadata"]["counter"] == {"success": "12"}
    assert sorted(_stored_sops(pipeline)) == sorted(i.sop_uid for i in instances)
    # AND the manifest names the sources; no staged copy is left after reconcile
    assert sorted(f["name"] for f in manifest["files"]) == sorted(new)
    assert list(pipeline.bucket.list_blobs(prefix="dicomflow/staging/")) == []
    [result] = results(pipeline)
    assert (result["files"], result["imported"], result["failed"]) == (12, 12, 0)


def test_a_name_no_uri_can_address_is_staged_and_imported(pipeline: Pipeline) -> None:
    instance = generate_dataset(1, 1, 1, seed=571)[0]
    upload(pipeline.bucket, {"odd/scan[1].dcm": instance.data, "odd/scan1.dcm": b"other"})
    _intake_all(pipeline, ["odd/scan[1].dcm"])
    assert _flush().status_code == 200
    [file] = _manifest(pipeline)["files"]
    assert file["name"] == "odd/scan[1].dcm" and file["staged"].startswith(f"gs://{pipeline.bucket.name}/dicomflow/")
    drain_operations(pipeline)
    assert _stored_sops(pipeline) == [instance.sop_uid]
    assert pipeline.pull_waiting("pending") == []


def test_an_object_overwritten_before_the_flush_is_never_staged_with_other_bytes(pipeline: Pipeline) -> None:
    # GIVEN a file queued at generation 1, then overwritten by another instance before the flush
    first, second = generate_dataset(1, 1, 2, seed=721)
    upload(pipeline.bucket, {"drop/a.dcm": first.data, "drop/old.dcm": b"old"})
    _intake_all(pipeline, ["drop/a.dcm"])
    upload(pipeline.bucket, {"drop/a.dcm": second.data})  # a new generation; its own event is not delivered yet
    # WHEN the flush stages the queued record
    assert _flush().status_code == 200
    # THEN the copy of generation 1 fails (404 at sourceGeneration) and the file is settled as deleted
    failed = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert [(f["name"], f["stage"]) for f in failed] == [("drop/a.dcm", "deleted")]
    assert list(pipeline.bucket.list_blobs(prefix="dicomflow/staging/")) == []
    assert pipeline.pull_waiting("operations") == [] and pipeline.pull_waiting("pending") == []
