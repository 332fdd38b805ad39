"""De-id targets through the real functions, the Pub/Sub emulator, fake-gcs-server and the emulator: a study
uploaded in two batches ends as one de-identified study in the research store with nothing identifying left,
the source store unchanged, each batch's result naming the target with its counters; a research store that
does not exist is reported with the API's reason while the import stands."""

from __future__ import annotations

import io
import json
import logging
import random
import uuid
from typing import Any

import pydicom
import pytest
import requests

from devstack.synthetic import make_instance, new_uid
from handlers import runtime as runtime_module
from tests.integration.conftest import LOCATION, PROJECT, StoreRef, create_store, upload
from tests.integration.pipeline_helpers import (
    Pipeline,
    cli_json,
    drain_operations,
    import_and_follow,
    results,
)

pytestmark = pytest.mark.integration

IDENTIFYING = ("DOE^JANE", "MRN-778899", "St Example Hospital", "Left knee of Jane", "Knee series of Jane",
               "private-jane-doe")  # fmt: skip
BASIC = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}


def _identifying_instance(study: str, series: str, sop: str, number: int) -> bytes:
    data = make_instance(study_uid=study, series_uid=series, sop_uid=sop, patient_name=IDENTIFYING[0],
                         patient_id=IDENTIFYING[1], InstitutionName=IDENTIFYING[2], StudyDescription=IDENTIFYING[3],
                         SeriesDescription=IDENTIFYING[4], instance_number=number, seed=number)  # fmt: skip
    dataset = pydicom.dcmread(io.BytesIO(data))
    block = dataset.private_block(0x0011, "DICOMFLOW TEST", create=True)
    block.add_new(0x01, "LO", IDENTIFYING[5])
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _research_store(api: Any) -> StoreRef:
    return create_store(api, StoreRef(PROJECT, LOCATION, f"research-{uuid.uuid4().hex[:8]}", "deid"))


def _metadata(pipeline: Pipeline, store: StoreRef) -> list[dict[str, Any]]:
    base = f"{pipeline.services.healthcare_url}/v1/{store.name}/dicomWeb"
    studies = requests.get(f"{base}/studies", timeout=30)
    found: list[dict[str, Any]] = []
    for study in [] if studies.status_code == 204 else studies.json():
        uid = study["0020000D"]["Value"][0]
        found += requests.get(f"{base}/studies/{uid}/metadata", timeout=30).json()
    return found


def _target(store: str) -> str:
    return json.dumps([{"name": "research", "deidentify": {"store": store, "config": BASIC}}])


def _run_batch(pipeline: Pipeline, files: dict[str, bytes]) -> None:
    upload(pipeline.bucket, files)
    import_and_follow(pipeline, list(files))


def test_a_study_in_two_batches_ends_as_one_clean_study_in_the_research_store(
    pipeline: Pipeline, api_v1: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a research store and a de-id target (the Basic Profile) on the default route
    research = _research_store(api_v1)
    monkeypatch.setenv("EXPORT_TARGETS", _target(research.name))
    runtime_module.reset()
    rng = random.Random(3131)
    study, series = new_uid(rng), [new_uid(rng), new_uid(rng)]
    sops = [new_uid(rng) for _ in range(15)]
    files = {f"up/{n:02d}.dcm": _identifying_instance(study, series[n % 2], sop, n + 1) for n, sop in enumerate(sops)}
    names = list(files)
    caplog.set_level(logging.DEBUG)
    # WHEN the study arrives in two batches, 10 then 5 instances
    _run_batch(pipeline, {n: files[n] for n in names[:10]})
    _run_batch(pipeline, {n: files[n] for n in names[10:]})
    # THEN the research store holds 15 instances under one new StudyInstanceUID, two series
    copy = _metadata(pipeline, research)
    assert len(copy) == 15
    assert len({i["0020000D"]["Value"][0] for i in copy}) == 1
    assert len({i["0020000E"]["Value"][0] for i in copy}) == 2
    # AND none of the original UIDs nor any identifying value is anywhere in its metadata
    text = json.dumps(copy)
    assert [uid for uid in [study, *series, *sops] if uid in text] == []
    assert [value for value in IDENTIFYING if value in text] == []
    # AND the source store is unchanged: the 15 originals with their values
    source = _metadata(pipeline, pipeline.store)
    assert sorted(i["00080018"]["Value"][0] for i in source) == sorted(sops)
    assert {i["00100010"]["Value"][0]["Alphabetic"] for i in source} == {IDENTIFYING[0]}
    # AND each batch's result names the target with its counters
    done = sorted(results(pipeline), key=lambda r: r["files"], reverse=True)
    assert [(r["imported"], r["outcome"]) for r in done] == [(10, "success"), (5, "success")]
    assert [[(e["target"], e["outcome"], e["success"], e["failure"]) for e in r["exports"]] for r in done] == [
        [("research", "succeeded", 10, 0)], [("research", "succeeded", 5, 0)]]  # fmt: skip
    # AND no log line carries a patient's value
    assert [value for value in IDENTIFYING if value in caplog.text] == []


def test_a_research_store_that_does_not_exist_is_reported_the_import_stands_and_requeue_runs_it_once_it_exists(
    pipeline: Pipeline, api_v1: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a de-id target whose store (same project and location) was never created
    missing = StoreRef(PROJECT, LOCATION, f"absent-{uuid.uuid4().hex[:8]}", "deid")
    monkeypatch.setenv("EXPORT_TARGETS", _target(missing.name))
    runtime_module.reset()
    rng = random.Random(3132)
    study, series = new_uid(rng), new_uid(rng)
    files = {f"up/m{n}.dcm": _identifying_instance(study, series, new_uid(rng), n + 1) for n in range(3)}
    # WHEN a batch runs
    _run_batch(pipeline, files)
    # THEN its files are imported and reported as usual, the target failed with the API's reason, once
    [result] = results(pipeline)
    assert (result["files"], result["imported"], result["failed"]) == (3, 3, 0)
    [target] = result["exports"]
    assert (target["target"], target["outcome"]) == ("research", "failed")
    assert "not found" in target["reason"].lower() or "404" in target["reason"], target["reason"]
    assert len(_metadata(pipeline, pipeline.store)) == 3
    # AND nothing is left to redeliver and nothing is reported failed
    assert drain_operations(pipeline) == []
    assert pipeline.pull_waiting("failed", seconds=1.0) == []
    assert results(pipeline) == []
    # WHEN the store is created and the operator runs the batch's de-id again (dry, then for real)
    create_store(api_v1, missing)
    code, dry = cli_json(capsys, "requeue", "--batch", result["batch_id"], "--target", "research", "--dry-run")
    assert (code, dry["result"]) == (0, "would start")
    code, rerun = cli_json(capsys, "requeue", "--batch", result["batch_id"], "--target", "research")
    assert (code, rerun["result"]) == (0, "started")
    [delivery] = drain_operations(pipeline)
    assert (delivery.watch.kind, delivery.watch.target) == ("export", "research")
    # THEN the research store holds the batch's 3 instances, status shows the target succeeded, no 2nd result
    assert len(_metadata(pipeline, missing)) == 3
    code, status = cli_json(capsys, "status", "--batch", result["batch_id"], "--no-peek")
    [export] = status["batches"][0]["exports"]
    assert (code, export["outcome"], export["counter"]) == (0, "succeeded", {"success": "3"})
    assert pipeline.pull_waiting("results", seconds=1.0) == []


def test_a_deid_call_answered_503_beyond_the_retries_is_started_by_the_redelivered_watch(
    pipeline: Pipeline, api_v1: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a research store and an API answering 503 to the de-id call more often than one delivery retries
    research = _research_store(api_v1)
    monkeypatch.setenv("EXPORT_TARGETS", _target(research.name))
    monkeypatch.setenv("API_RETRY_ATTEMPTS", "2")
    runtime_module.reset()
    pipeline.inject_fault({"method": "POST", "path": ":deidentify$", "status": 503, "count": 3})
    rng = random.Random(3133)
    study, series = new_uid(rng), new_uid(rng)
    files = {f"up/r{n}.dcm": _identifying_instance(study, series, new_uid(rng), n + 1) for n in range(2)}
    # WHEN a batch runs: the import's watch fails twice (the claim given back each time), then starts the de-id
    _run_batch(pipeline, files)
    # THEN the target is not left 'starting': the copy is made and the result names it, once
    assert pipeline.faults_fired() == [3]
    assert len(_metadata(pipeline, research)) == 2
    [result] = results(pipeline)
    assert [(e["target"], e["outcome"], e["success"]) for e in result["exports"]] == [("research", "succeeded", 2)]
