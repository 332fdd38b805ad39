"""Every failed file with the API's own reason, through the real functions, the emulator and its Cloud Logging
read API: a batch of 300 files of which 40 the import refuses for different reasons puts 40 messages on
dicom-failed, each with the reason logged for that file (the operation's sample errors hold 10 at most), and
``verify`` and ``status`` show those reasons; with
reading logs refused (403) the files are still reported, with the fallback reasons and one ERROR naming the
role to grant."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from googleapiclient import discovery

from devstack.synthetic import deflated_cut_short, generate_dataset, make_instance, without_sop_class
from dicomflow.cli import app
from handlers import runtime as runtime_module
from tests.integration.conftest import PROJECT, upload
from tests.integration.pipeline_helpers import (
    Pipeline,
    import_and_follow,
    results,
)

pytestmark = pytest.mark.integration


def _batch(seed: int, good: int, no_class: int, cut: int) -> dict[str, bytes]:
    """``good`` storable files, then ``no_class`` without a SOP Class UID and ``cut`` whose deflated data set
    is cut short: each passes intake (the three UIDs are in the header) and is refused by the import."""
    instances = generate_dataset(1, 10, (good + no_class + cut) // 10 + 1, seed=seed)[: good + no_class + cut]
    files = {f"in{seed}/{i.relative_path}": i.data for i in instances[:good]}
    files |= {f"in{seed}/noclass/{i.sop_uid}.dcm": without_sop_class(i.data) for i in instances[good:][:no_class]}
    files |= {f"in{seed}/cut/{i.sop_uid}.dcm": deflated_cut_short(i.data) for i in instances[good + no_class :]}
    return files


def _import_and_follow(pipeline: Pipeline, files: dict[str, bytes]) -> list[dict[str, Any]]:
    upload(pipeline.bucket, files)
    import_and_follow(pipeline, list(files), timeout=180)
    return [json.loads(m.message.data) for m in pipeline.pull("failed")]


def _logged(pipeline: Pipeline) -> dict[str, str]:
    """Every per-file import error the emulator logged, by source URI, read as any Cloud Logging client would."""
    client = discovery.build("logging", "v2", client_options={"api_endpoint": pipeline.services.healthcare_url},
                             credentials=AnonymousCredentials(), static_discovery=True)  # fmt: skip
    store = pipeline.store  # the emulator serves every test of the session: this test's store's imports only
    query = (f'resource.type="healthcare_dicom_store" AND resource.labels.dataset_id="{store.dataset}" AND '
             f'resource.labels.dicom_store_id="{store.store}" AND logName="projects/{PROJECT}/logs/'
             'healthcare.googleapis.com%2Fimport_dicom" AND severity>=ERROR')  # fmt: skip
    body: dict[str, Any] = {"resourceNames": [f"projects/{PROJECT}"], "pageSize": 1000, "filter": query}
    logged: dict[str, str] = {}
    while True:
        page = client.entries().list(body=body).execute()
        for entry in page.get("entries", []):
            logged[entry["jsonPayload"]["source"]] = entry["jsonPayload"]["error"]["message"]
        if not page.get("nextPageToken"):
            return logged
        body["pageToken"] = page["nextPageToken"]


@pytest.fixture
def one_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Report a refused file at its first attempt (no re-drive) and import in place (the logged source is the
    uploaded object itself)."""
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    monkeypatch.setenv("STAGING", "never")
    runtime_module.reset()


@pytest.mark.usefixtures("one_attempt")
def test_each_of_40_refused_files_is_reported_with_the_reason_logged_for_it(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN 13 instances already in the store
    stored = generate_dataset(1, 1, 13, seed=2511)
    assert _import_and_follow(pipeline, {f"first/{i.relative_path}": i.data for i in stored}) == []
    results(pipeline)
    # WHEN a batch of 300 arrives: 260 good, 14 without a SOP Class UID, 13 unreadable, 13 with the UIDs of a
    # stored instance and other content
    files = _batch(2512, good=260, no_class=14, cut=13)
    files |= {f"in2512/again/{i.sop_uid}.dcm": make_instance(study_uid=i.study_uid, series_uid=i.series_uid,
                                                             sop_uid=i.sop_uid, patient_name="SYNTH^OTHER")
              for i in stored}  # fmt: skip
    assert len(files) == 300
    failed = _import_and_follow(pipeline, files)
    # THEN 40 files are on dicom-failed, each with the reason the emulator logged for that very file
    assert len(failed) == 40
    logged = _logged(pipeline)
    for message in failed:
        reason = logged[f"gs://{pipeline.bucket.name}/{message['name']}"]
        assert reason in message["reason"], (message["name"], message["reason"])
    stages = Counter((m["stage"], m["name"].split("/")[1]) for m in failed)
    assert stages == {("reconcile", "noclass"): 14, ("reconcile", "cut"): 13, ("conflict", "again"): 13}
    assert len({logged[f"gs://{pipeline.bucket.name}/{m['name']}"] for m in failed}) == 3
    [result] = results(pipeline)
    assert (result["files"], result["imported"], result["failed"]) == (300, 260, 40)
    # AND verify gives each refused file the same reason, and status groups them by it
    verified = _cli(capsys, "verify", f"gs://{pipeline.bucket.name}/in2512/")
    refused = {o["name"]: o["reason"] for o in verified["objects"] if o["state"] == "reported failed"}
    assert refused == {m["name"]: f"{m['stage']}: {m['reason']}" for m in failed}
    groups = {(g["stage"], g["files"]) for g in _cli(capsys, "status", "--no-peek")["failures"]}
    assert groups == {("reconcile", 14), ("reconcile", 13), ("conflict", 13)}


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """``dicomflow ARGV --json``'s parsed report (the functions' log lines before it dropped)."""
    capsys.readouterr()
    app.main([argv[0], "--json", *argv[1:]])
    return json.loads(capsys.readouterr().out)


@pytest.mark.usefixtures("one_attempt")
def test_with_log_reading_refused_files_are_reported_with_the_fallback_and_one_error_names_the_role(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN Cloud Logging refuses the follow-up's reads (no roles/logging.viewer); a log read names no store, so
    # the rule is not scoped to this test's (the fixture clears it at teardown)
    pipeline.inject_fault({"method": "POST", "path": "^/v2/entries:list$", "status": 403, "count": 1000, "store": None})
    # WHEN a batch with 12 refused files is imported (more than the 10 sample errors of the operation)
    failed = _import_and_follow(pipeline, _batch(2513, good=20, no_class=6, cut=6))
    # THEN every refused file is reported: by its sample error where it has one, else the operation's summary
    assert len(failed) == 12
    summary = [m for m in failed if "items failed" in m["reason"]]
    assert len(summary) == 2
    assert all("missing SOPClassUID" in m["reason"] or "does not inflate" in m["reason"]
               for m in failed if m not in summary)  # fmt: skip
    # AND one ERROR line (JSON, for Cloud Logging) names the role to grant
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    errors = [line for line in lines if line["severity"] == "ERROR" and "logging.viewer" in line["message"]]
    assert len(errors) == 1
    assert pipeline.faults_fired() and sum(pipeline.faults_fired()) >= 1
