"""Through the whole local stack: a DICOM media file-set (DICOMDIR + extensionless files in nested folders)
ends with every image in the store and the DICOMDIR skipped; only source buckets' notifications reach intake."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.checks import assert_counts_add_up
from devstack.client import read_journal, storage_client, upload_paths
from devstack.fileset import write_file_set
from devstack.stack import EXPORT_BUCKET, INCOMING_BUCKET, STATE_BUCKET, LocalStack, StackConfig, StackEndpoints
from devstack.synthetic import generate_dataset, make_instance

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackEndpoints]:
    # SNIFF_EXTENSIONLESS is left at its default; DEBUG shows every event intake receives
    config = StackConfig.on_free_ports(
        settle_seconds=1.0, max_wait_seconds=60.0, flush_interval=1.0, data_dir=tmp_path_factory.mktemp("media"),
        extra_env=(("LOG_LEVEL", "DEBUG"),),
    )  # fmt: skip
    local = LocalStack(config)
    endpoints = local.start()
    try:
        yield endpoints
    finally:
        local.stop()


def _wait(condition: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _stored(endpoints: StackEndpoints) -> set[str]:
    url = f"{endpoints.healthcare_url}/v1/{endpoints.store_name}/dicomWeb/instances"
    response = requests.get(url, timeout=30)
    return {item["00080018"]["Value"][0] for item in response.json()} if response.status_code == 200 else set()


def _function_log(endpoints: StackEndpoints, function: str = "on_object_finalized") -> list[dict[str, Any]]:
    path = endpoints.data_dir / "logs" / f"{function}.log"
    entries = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


def _flush_passes(endpoints: StackEndpoints) -> list[dict[str, Any]]:
    """The flush passes that pulled something (one "flush finished" line each)."""
    return [e for e in _function_log(endpoints, "on_flush") if e["message"] == "flush finished"]


def _logged(endpoints: StackEndpoints, message: str, name: str) -> bool:
    return any(e["message"] == message and e.get("object") == name for e in _function_log(endpoints))


def test_a_dicom_media_file_set_is_imported_and_its_dicomdir_skipped(stack: StackEndpoints, tmp_path: Path) -> None:
    # GIVEN a file-set written with pydicom's FileSet API: DICOMDIR + PT000000/ST000000/SE000000/IM000000 ...
    instances = generate_dataset(2, 2, 3, seed=1801, compressed_every=4)
    _, *images = write_file_set(instances, tmp_path / "CDROM")
    assert all("." not in image.name for image in images)
    # WHEN the folder is uploaded as it is (what `python -m devstack upload CDROM` does)
    names = upload_paths(storage_client(stack.storage_host), INCOMING_BUCKET, [tmp_path / "CDROM"], "media/")
    assert "media/CDROM/DICOMDIR" in names and len(names) == len(images) + 1
    # THEN every image reaches the store
    expected = {i.sop_uid for i in instances}
    _wait(lambda: expected <= _stored(stack), "every image of the file-set in the store")
    assert _stored(stack) == expected
    # AND the DICOMDIR was skipped at intake with one INFO line, never imported nor reported failed
    skipped = "DICOMDIR (index of a media file-set, not an instance) skipped"
    _wait(lambda: _logged(stack, skipped, "media/CDROM/DICOMDIR"), "the DICOMDIR skip line")
    [line] = [e for e in _function_log(stack) if e.get("object") == "media/CDROM/DICOMDIR"]
    assert line["severity"] == "INFO"
    _wait(lambda: sum(r["files"] for r in read_journal(stack.journal("results"))) >= len(images), "batch results")
    results = read_journal(stack.journal("results"))
    assert sum(r["files"] for r in results) == len(images) and sum(r["imported"] for r in results) == len(images)
    assert_counts_add_up(results)
    assert read_journal(stack.journal("failed")) == []
    # AND the batch results count it once as skipped, outside their files; the manifests list it, never as a file
    assert sum(r["skipped"] for r in results) == 1
    client = storage_client(stack.storage_host)
    manifests = [json.loads(b.download_as_bytes()) for b in client.list_blobs(STATE_BUCKET)
                 if b.name.endswith("manifest.json")]  # fmt: skip
    assert len(manifests) == len(results)
    assert [s for m in manifests for s in m["skipped"]] == [f"gs://{INCOMING_BUCKET}/media/CDROM/DICOMDIR"]
    assert not [f["name"] for m in manifests for f in m["files"] if "DICOMDIR" in f["name"]]
    # AND it was acknowledged with its batch: no later flush pass pulls anything (a pass that pulls logs a line)
    time.sleep(3.0)
    passes = len(_flush_passes(stack))
    time.sleep(4.0)  # several 1 s flush ticks
    assert len(_flush_passes(stack)) == passes
    assert sum(p["skipped"] for p in _flush_passes(stack)) == 1


def test_notifications_of_other_buckets_never_reach_intake(stack: StackEndpoints) -> None:
    client = storage_client(stack.storage_host)
    # GIVEN objects written to buckets that are not sources (as exports and manifests are)
    foreign = {EXPORT_BUCKET: "probe/IM1.dcm", STATE_BUCKET: "probe/IM2.dcm"}
    for bucket, name in foreign.items():
        client.bucket(bucket).blob(name).upload_from_string(make_instance(study_uid="2.25.71", series_uid="2.25.72",
                                                                          sop_uid=f"2.25.7{len(name)}"))  # fmt: skip
    # WHEN objects are then written to the source bucket, one after the other
    source = client.bucket(INCOMING_BUCKET)
    source.blob("buckets/readme.txt").upload_from_string(b"not dicom")
    _wait(lambda: _logged(stack, "object not selected as DICOM", "buckets/readme.txt"), "intake of the first")
    source.blob("buckets/notes.txt").upload_from_string(b"not dicom either")
    # THEN intake receives the source bucket's (a later delivery than the foreign ones: the relay hands out its
    # pulls in order) and never a foreign one: not these, nor the exports and manifests of the other test
    _wait(lambda: _logged(stack, "object not selected as DICOM", "buckets/notes.txt"), "intake of the second")
    entries = _function_log(stack)
    assert {e.get("bucket") for e in entries if "bucket" in e} == {INCOMING_BUCKET}
    assert not [e for e in entries if "not a source bucket" in e["message"]]
