"""The operator CLI through the real local services: backfill (resumable, idempotent), verify, plan, requeue
and status, each run as ``dicomflow ...`` would run it, against the pipeline's own topics and ledger."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from devstack.synthetic import generate_dataset, make_instance
from dicomflow.cli import app, backfill, requeue, scan
from dicomflow.cli.context import load
from dicomflow.cli.source import GcsPrefix
from dicomflow.messages.records import PendingRecord
from dicomflow.stages import intake
from tests.integration.conftest import upload
from tests.integration.pipeline_helpers import (
    Pipeline,
    _flush,
    _intake_all,
    _stored_sops,
    _upload,
    drain_operations,
    flush_and_follow,
    import_and_follow,
)
from tests.integration.pipeline_helpers import (
    cli_json as _cli,
)

pytestmark = pytest.mark.integration


def _pending(pipeline: Pipeline) -> list[PendingRecord]:
    return [PendingRecord.from_json(m.message.data) for m in pipeline.pull("pending")]


def _requeue_pending(pipeline: Pipeline, records: Sequence[PendingRecord]) -> None:
    """Put records back on the pending topic (what the test pulled to look at)."""
    pipeline.publish("pending", [r.to_json() for r in records])


def test_backfill_queues_what_the_store_lacks_resumes_after_an_interruption_and_queues_nothing_twice(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an archive: 4 instances already imported, 24 never seen, one non-DICOM '.dcm', one other file
    imported = generate_dataset(1, 1, 4, seed=751)
    import_and_follow(pipeline, _upload(pipeline, imported, "archive/old"))
    new = generate_dataset(2, 2, 6, seed=752)
    new_names = _upload(pipeline, new, "archive/new")
    upload(pipeline.bucket, {"archive/bad.dcm": b"not dicom at all", "archive/notes.txt": b"text"})
    # WHEN a backfill is interrupted after its first chunks (Ctrl-C while publishing)
    monkeypatch.setattr(scan, "CHUNK", 5)
    published: list[int] = []
    real_publish = intake.publish_all

    def interrupting(*args: Any, **kwargs: Any) -> None:
        if len(published) == 2:  # one publish per chunk: two chunks go out, the third is interrupted
            raise KeyboardInterrupt
        published.append(1)
        real_publish(*args, **kwargs)

    monkeypatch.setattr(backfill, "publish_all", interrupting)
    assert app.main(["backfill", f"gs://{pipeline.bucket.name}/archive/"]) == 130
    capsys.readouterr()
    # THEN the same command resumes from its cursor and finishes
    monkeypatch.setattr(backfill, "publish_all", real_publish)
    code, report = _cli(capsys, "backfill", f"gs://{pipeline.bucket.name}/archive/")
    assert code == 0 and report["resumed_after"] is not None
    # AND every new instance was queued (some twice across the interruption: harmless, flush dedupes), the
    # imported ones were not, the bad file is on dicom-failed, the text file was never selected
    queued = _pending(pipeline)
    assert {r.name for r in queued} == set(new_names)
    failed = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert {f["name"] for f in failed} == {"archive/bad.dcm"}
    # AND a second backfill, once those are imported, queues nothing
    _requeue_pending(pipeline, queued)
    flush_and_follow(pipeline)
    code, again = _cli(capsys, "backfill", f"gs://{pipeline.bucket.name}/archive/")
    assert code == 0 and again["counts"].get("queued", 0) == 0
    assert again["counts"]["in store"] == len(imported) + len(new)
    assert _pending(pipeline) == []
    # AND does not report the unchanged bad file again; once the sender rewrites it (still bad), it is reported
    assert again["counts"]["failed (reported before)"] == 1 and pipeline.pull_waiting("failed") == []
    upload(pipeline.bucket, {"archive/bad.dcm": b"still not dicom"})
    code, third = _cli(capsys, "backfill", f"gs://{pipeline.bucket.name}/archive/")
    assert code == 0 and third["counts"]["failed (reported)"] == 1
    assert [json.loads(m.message.data)["name"] for m in pipeline.pull("failed")] == ["archive/bad.dcm"]


def test_backfill_unbatched_queues_a_stored_files_overwrite_whose_record_was_lost_so_its_conflict_is_reported(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN two imported files, then one overwritten with other content under the same UIDs, its record lost
    # (the soak's lost conflict: queued on dicom-pending when the local Pub/Sub emulator restarted)
    instances = generate_dataset(1, 1, 2, seed=755)
    names = _upload(pipeline, instances, "overwrites")
    import_and_follow(pipeline, names)
    pipeline.pull_waiting("results")
    kept = instances[0]
    conflicting = make_instance(study_uid=kept.study_uid, series_uid=kept.series_uid, sop_uid=kept.sop_uid,
                                seed=756, SeriesDescription="CORRECTED")  # fmt: skip
    before_overwrite = datetime.now(UTC)
    time.sleep(1.1)  # object times may be kept to the second
    upload(pipeline.bucket, {names[0]: conflicting})
    where = f"gs://{pipeline.bucket.name}/overwrites/"
    # WHEN the cutoff is before the overwrite THEN it is left to intake (which has its notification)
    later = backfill.backfill(load(None), GcsPrefix.parse(where), dry_run=True, progress=False,
                              unbatched_before=before_overwrite)  # fmt: skip
    assert later.counts.get("queued", 0) == 0 and later.counts["in store"] == 2
    # WHEN a plain backfill runs THEN it skips both (their UIDs are in the store)
    code, plain = _cli(capsys, "backfill", where)
    assert code == 0 and plain["counts"].get("queued", 0) == 0 and plain["counts"]["in store"] == 2
    # WHEN it runs with --unbatched THEN it queues the overwrite alone, at its new generation
    code, report = _cli(capsys, "backfill", where, "--unbatched")
    assert code == 0
    assert report["counts"]["queued"] == 1 and report["counts"]["in store, generation not batched"] == 1
    assert report["counts"]["in store"] == 1
    [record] = _pending(pipeline)
    blob = pipeline.bucket.get_blob(names[0])
    assert blob is not None and (record.name, record.generation) == (names[0], str(blob.generation))
    # AND once flushed, its import reports it a conflict; the stored instance keeps its first content
    _requeue_pending(pipeline, [record])
    flush_and_follow(pipeline)
    failed = [json.loads(m.message.data) for m in pipeline.pull("failed")]
    assert [(f["name"], f["stage"]) for f in failed] == [(names[0], "conflict")]
    # AND a second --unbatched backfill queues nothing: that generation is now in a batch (and reported)
    code, again = _cli(capsys, "backfill", where, "--unbatched")
    assert code == 0 and again["counts"].get("queued", 0) == 0 and _pending(pipeline) == []


def test_backfill_shards_split_the_work_without_overlap(pipeline: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    names = _upload(pipeline, generate_dataset(1, 2, 8, seed=753), "sharded")
    counts = []
    for index in range(3):
        code, report = _cli(capsys, "backfill", f"gs://{pipeline.bucket.name}/sharded/", "--shard", f"{index}/3")
        assert code == 0
        counts.append(report["counts"].get("queued", 0))
    queued = [r.name for r in _pending(pipeline)]
    assert sorted(queued) == sorted(names) and sum(counts) == len(names) and all(counts)


def test_verify_says_every_file_is_in_the_store_then_finds_one_deleted(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    instances = generate_dataset(1, 1, 5, seed=754)
    names = _upload(pipeline, instances, "verified")
    upload(pipeline.bucket, {"verified/broken.dcm": b"DICM? no"})
    import_and_follow(pipeline, [*names, "verified/broken.dcm"])
    code, report = _cli(capsys, "verify", f"gs://{pipeline.bucket.name}/verified/")
    assert code == 0
    assert report["counts"] == {"in store": 5, "reported failed": 1}
    # WHEN an instance is deleted from the store THEN verify names it missing and exits 1
    gone = instances[2]
    url = (f"{pipeline.services.healthcare_url}/v1/{pipeline.store.name}/dicomWeb/studies/{gone.study_uid}"
           f"/series/{gone.series_uid}/instances/{gone.sop_uid}")  # fmt: skip
    requests.delete(url, timeout=10).raise_for_status()
    code, report = _cli(capsys, "verify", f"gs://{pipeline.bucket.name}/verified/")
    assert code == 1
    assert [o["name"] for o in report["objects"] if o["state"] == "missing"] == [names[2]]


def test_plan_shows_one_staged_import_for_new_files_in_a_crowded_folder(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a drop folder with 60 files and 10 new ones, and a whole new study folder
    upload(pipeline.bucket, {f"drop/old-{i:04d}.dcm": b"x" for i in range(60)})
    upload(pipeline.bucket, {f"drop/new-{i:04d}.dcm": b"x" for i in range(10)})
    upload(pipeline.bucket, {f"fresh/study/{i}.dcm": b"x" for i in range(100)})
    # WHEN the new files of the drop folder are planned THEN one staged import copies the ten
    code, crowded = _cli(capsys, "plan", f"gs://{pipeline.bucket.name}/drop/new-")
    assert code == 0 and crowded["files"] == 10
    assert [(i["files"], i["copies"]) for i in crowded["imports"]] == [(10, 10)]
    assert "/staging/" in crowded["imports"][0]["uri"]
    # AND a whole new subtree is imported in place, without a copy
    code, fresh = _cli(capsys, "plan", f"gs://{pipeline.bucket.name}/fresh/")
    assert [(i["uri"], i["copies"]) for i in fresh["imports"]] == [(f"gs://{pipeline.bucket.name}/fresh/**.dcm", 0)]
    assert pipeline.pull_waiting("operations") == [] and list(pipeline.bucket.list_blobs(prefix="dicomflow/")) == []


def test_requeue_redrives_a_fixed_file_and_leaves_the_other_failures_alone(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN two files that failed at intake
    upload(pipeline.bucket, {"fix/a.dcm": b"truncated", "fix/b.dcm": b"also broken"})
    _intake_all(pipeline, ["fix/a.dcm", "fix/b.dcm"])
    subscription = pipeline.names["failed-sub"]
    # WHEN a.dcm is fixed and re-driven (a dry run first changes nothing)
    upload(pipeline.bucket, {"fix/a.dcm": generate_dataset(1, 1, 1, seed=755)[0].data})
    code, dry = _cli(capsys, "requeue", "--subscription", subscription, "--reason", "checksum", "--dry-run")
    assert code == 0 and dry["chosen"] == [] and dry["left"] == 2
    code, report = _cli(capsys, "requeue", "--subscription", subscription, "--stage", "intake", "--limit", "1")
    # THEN it is queued with a fresh attempt count, its failure acknowledged, the other one left untouched
    assert code == 0 and [o["result"] for o in report["chosen"]] == ["queued"] and report["left"] == 1
    [record] = _pending(pipeline)
    assert (record.name, record.attempt) == (report["chosen"][0]["name"], 1)
    left = [json.loads(m.message.data)["name"] for m in pipeline.pull("failed")]
    assert len(left) == 1 and left[0] != record.name


def test_status_reports_batches_failures_and_what_is_in_flight(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    instances = generate_dataset(1, 1, 3, seed=756)
    names = _upload(pipeline, instances, "status")
    _intake_all(pipeline, names)
    upload(pipeline.bucket, {names[0]: instances[0].data})  # the sender writes one file again: a new generation
    _intake_all(pipeline, names[:1])
    upload(pipeline.bucket, {"status/notes.dcm": b"not an image"})  # reported at intake: in no batch
    _intake_all(pipeline, ["status/notes.dcm"])
    assert _flush().status_code == 200
    code, running = _cli(capsys, "status")
    assert code == 0 and len(running["in_flight"]) == 1 and running["batches"][0]["outcome"] == "in progress"
    drain_operations(pipeline)
    code, done = _cli(capsys, "status", "--since", "1h")
    [batch] = done["batches"]
    counts = ("files", "imported", "duplicates", "failed", "redriven")
    assert (batch["outcome"], *(batch[c] for c in counts)) == ("success", 4, 3, 1, 0, 0)  # files add up
    assert done["in_flight"] == [] and done["oldest_pending"]["peeked"] == 0
    assert [(f["stage"], f["files"]) for f in done["failures"]] == [("intake", 1)]
    code, detail = _cli(capsys, "status", "--batch", batch["batch_id"])
    assert detail["batches"][0]["imports"][0]["counter"] == {"success": "3"}
    assert sorted(_stored_sops(pipeline)) == sorted(i.sop_uid for i in instances)
    # AND the human form prints the same batch
    assert app.main(["status", "--no-peek"]) == 0
    assert batch["batch_id"] in capsys.readouterr().out


def test_errors_say_what_to_do(pipeline: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    # a missing bucket is named
    assert app.main(["verify", "gs://no-such-bucket-7f3a/x/"]) == 2
    assert "bucket no-such-bucket-7f3a does not exist" in capsys.readouterr().err
    # a missing subscription is named
    assert app.main(["requeue", "--subscription", "no-such-sub-7f3a"]) == 2
    assert "no-such-sub-7f3a" in capsys.readouterr().err
    # a permission the store refuses names the role (the emulator answers QIDO-RS 403 once, as for a caller
    # without it; a 403 is not retried)
    _intake_all(pipeline, _upload(pipeline, generate_dataset(1, 1, 1, seed=757), "denied"))
    pipeline.inject_fault({"path": "dicomWeb", "status": 403, "count": 1})
    assert app.main(["verify", f"gs://{pipeline.bucket.name}/denied/"]) == 2
    err = capsys.readouterr().err
    assert "permission denied" in err and "roles/healthcare.dicomViewer on the DICOM store" in err
    assert "Traceback" not in err


def test_ctrl_c_in_requeue_acknowledges_only_what_was_redriven(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN three files that failed at intake, all fixed since
    names = [f"interrupted/{i}.dcm" for i in range(3)]
    upload(pipeline.bucket, dict.fromkeys(names, b"broken"))
    _intake_all(pipeline, names)
    upload(pipeline.bucket, {n: i.data for n, i in zip(names, generate_dataset(1, 1, 3, seed=758), strict=True)})
    # WHEN Ctrl-C comes while the second one is being re-driven
    calls: list[str] = []
    real = intake.handle_object_event

    def interrupted(event: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(event.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(event, *args, **kwargs)

    monkeypatch.setattr(requeue, "handle_object_event", interrupted)
    assert app.main(["requeue", "--subscription", pipeline.names["failed-sub"]]) == 130
    assert "interrupted" in capsys.readouterr().err
    # THEN the first is queued and its failure acknowledged; the other two failures wait on the subscription
    assert [r.name for r in _pending(pipeline)] == calls[:1]
    left = sorted(json.loads(m.message.data)["name"] for m in pipeline.pull("failed"))
    assert left == sorted(set(names) - set(calls[:1]))
