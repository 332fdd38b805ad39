"""A target never hangs in 'starting' and can be run again: a start or restart that meets a retryable error
gives its claim back (the redelivered watch starts it), a claim whose holder died is taken over once it
expires; ``dicomflow requeue --batch --target`` runs one target of a batch again under a claim; a stuck
export's failure is re-driven as that export, never as an import."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from dicomflow.cli import requeue
from dicomflow.cli.context import Context
from dicomflow.config.exports import parse_export_targets
from dicomflow.errors import NotFoundError, PermanentError, RetryableError
from dicomflow.ledger.manifest import ExportStatus
from dicomflow.messages.records import WatchMessage
from dicomflow.stages.follow import Follower
from dicomflow.stages.follow.context import FollowContext
from dicomflow.stages.follow.rerun import rerun_target
from tests.fakes.services import FakeSubscriber
from tests.unit.test_deidentify_targets import _target
from tests.unit.test_follow import NOW, World, _file, _settings


class Clocked(World):
    """The follow-up's world with a clock the test moves (claims expire after the ledger's 300 s)."""

    def __init__(self, **overrides: Any) -> None:
        super().__init__([_file("1.1.1.1")], _settings(parse_export_targets(_target()), **overrides))
        self.healthcare.stored = {("1.1", "1.1.1", "1.1.1.1")}
        self.now = NOW  # moved by the tests

    def follow(self, watch: WatchMessage) -> Any:
        follower = Follower(self.settings, store=self.store, healthcare=self.healthcare, publisher=self.publisher,
                            now=lambda: self.now)  # fmt: skip
        return follower.follow(watch)

    def marker(self) -> Any:
        found = self.ledger.export_marker("B1", "research")
        return None if found is None else found[0]

    def context(self) -> Context:
        return Context(self.settings, self.store, self.publisher, FakeSubscriber(), self.healthcare,
                       lambda _store: self.healthcare, self.ledger, lambda: self.now)  # fmt: skip


def _args(**values: object) -> argparse.Namespace:
    defaults = {"batch": "B1", "target": "research", "dry_run": False, "json": False, "subscription": None,
                "reason": None, "stage": None, "limit": None}  # fmt: skip
    return argparse.Namespace(**(defaults | values))


def test_a_start_meeting_a_retryable_error_gives_its_claim_back_and_the_redelivery_starts_it() -> None:
    # GIVEN the de-id call answering 503 (after the adapter's own retries) at the first delivery
    world = Clocked()
    world.healthcare.refuse_deidentify = RetryableError("HTTP 503")
    with pytest.raises(RetryableError):
        world.follow(world.watch())
    # THEN the claim is given back at once, and no result is published without the target
    assert world.marker().status is ExportStatus.STARTING and world.marker().claimed is None
    assert world.publisher.bodies("dicom-results") == []
    # WHEN the import's watch is redelivered and the API answers
    world.healthcare.refuse_deidentify = None
    world.follow(world.watch())
    # THEN the de-id starts once and is watched
    assert len(world.healthcare.deidentifies) == 1 and world.marker().status is ExportStatus.RUNNING
    [watch] = world.publisher.bodies("dicom-operations")
    assert watch["target"] == "research"


def test_a_claim_held_by_a_delivery_that_died_is_waited_for_then_taken_over() -> None:
    # GIVEN a delivery that claimed the target and died before starting it (the claim stays, unreleased)
    world = Clocked()
    assert world.ledger.claim_export("B1", "research") is not None
    # WHEN the import's watch comes back while the claim is fresh: retried, not acknowledged as finished
    with pytest.raises(RetryableError, match="being started by another delivery"):
        world.follow(world.watch())
    assert world.healthcare.deidentifies == []
    # AND once the claim expired, the redelivery takes it over and starts the target
    world.now = NOW + timedelta(seconds=301)
    world.follow(world.watch())
    assert len(world.healthcare.deidentifies) == 1 and world.marker().status is ExportStatus.RUNNING


def _interrupted(world: Clocked) -> str:
    world.follow(world.watch())
    [watch] = world.publisher.bodies("dicom-operations")
    world.healthcare.operations[watch["operation"]] = {"done": True, "error": {"code": 14, "message": "unavailable"}}
    return str(watch["operation"])


def test_a_restart_meeting_a_retryable_error_is_retried_by_its_watch_never_left_starting() -> None:
    # GIVEN an interrupted de-id whose restart meets a 503
    world = Clocked()
    first = _interrupted(world)
    world.healthcare.refuse_deidentify = RetryableError("HTTP 503")
    with pytest.raises(RetryableError):
        world.follow(world.watch(first, "export", "research"))
    # THEN the marker runs on the interrupted operation again, so its redelivered watch restarts it
    assert (world.marker().status, world.marker().operation) == (ExportStatus.RUNNING, first)
    world.healthcare.refuse_deidentify = None
    world.follow(world.watch(first, "export", "research"))
    assert len(world.healthcare.deidentifies) == 2 and world.marker().attempts == 2
    second = world.publisher.bodies("dicom-operations")[-1]["operation"]
    world.healthcare.operations[second] = {"done": True, "response": {}}
    world.follow(world.watch(second, "export", "research"))
    [result] = world.publisher.bodies("dicom-results")
    assert result["exports"][0]["outcome"] == "succeeded"


def test_a_restart_whose_delivery_died_is_taken_over_once_its_claim_expired() -> None:
    # GIVEN an interrupted de-id whose restarting delivery died after claiming (marker 'starting', same op)
    world = Clocked()
    first = _interrupted(world)
    found = world.ledger.export_marker("B1", "research")
    assert found is not None
    marker, generation = found
    restarting = replace(marker, status=ExportStatus.STARTING, claimed=NOW.isoformat())
    assert world.ledger.reclaim_export(world.ledger.export_claim("B1", "research", generation), restarting)
    # THEN its watch is retried while the claim is fresh, and restarts the target once it expired
    with pytest.raises(RetryableError, match="started again by another delivery"):
        world.follow(world.watch(first, "export", "research"))
    world.now = NOW + timedelta(seconds=301)
    world.follow(world.watch(first, "export", "research"))
    assert len(world.healthcare.deidentifies) == 2 and world.marker().status is ExportStatus.RUNNING


def test_a_restart_refused_for_good_is_the_targets_outcome() -> None:
    world = Clocked()
    first = _interrupted(world)
    world.healthcare.refuse_deidentify = NotFoundError("HTTP 404: destination store not found", 404)
    world.follow(world.watch(first, "export", "research"))
    [result] = world.publisher.bodies("dicom-results")
    assert result["exports"][0]["outcome"] == "failed" and "store not found" in result["exports"][0]["reason"]


def test_the_operator_runs_a_refused_deid_again_under_a_claim(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a batch whose de-id was refused (its store did not exist yet), its result published
    world = Clocked()
    world.healthcare.refuse_deidentify = NotFoundError("HTTP 404: destination store not found", 404)
    world.follow(world.watch())
    [result] = world.publisher.bodies("dicom-results")
    assert result["exports"][0]["outcome"] == "failed"
    world.healthcare.refuse_deidentify = None
    ctx = world.context()
    # WHEN the operator runs it dry, then for real
    assert requeue.run(ctx, _args(dry_run=True)) == 0
    assert "would start" in capsys.readouterr().out and world.healthcare.deidentifies == []
    assert requeue.run(ctx, _args()) == 0
    assert "dicomflow status --batch B1" in capsys.readouterr().out
    # THEN it started once, is watched, and its outcome replaces the failed one; no second result
    assert len(world.healthcare.deidentifies) == 1 and world.marker().status is ExportStatus.RUNNING
    [watch] = world.publisher.bodies("dicom-operations")
    with pytest.raises(PermanentError, match="wait until it ends"):
        requeue.run(ctx, _args())
    world.healthcare.operations[watch["operation"]] = {"done": True, "response": {},
                                                       "metadata": {"counter": {"success": "1"}}}  # fmt: skip
    world.follow(world.watch(watch["operation"], "export", "research"))
    assert world.marker().outcome == "succeeded" and world.marker().counter == {"success": "1"}
    assert len(world.publisher.bodies("dicom-results")) == 1


def test_a_rerun_never_races_a_follow_up_that_holds_the_claim() -> None:
    world = Clocked()
    assert world.ledger.claim_export("B1", "research") is not None
    manifest = world.ledger.read("B1")
    assert manifest is not None
    follow = FollowContext(world.settings, world.store, world.healthcare, world.publisher, lambda: world.now,
                           world.ledger)  # fmt: skip
    with pytest.raises(PermanentError, match="being started by a follow-up right now"):
        rerun_target(follow, manifest, "research")
    assert world.healthcare.deidentifies == []


def test_requeue_of_a_batch_says_what_is_wrong() -> None:
    ctx = Clocked().context()
    with pytest.raises(PermanentError, match=r"batch NOPE is not in the ledger .*dicomflow status"):
        requeue.run(ctx, _args(batch="NOPE"))
    with pytest.raises(PermanentError, match=r"'viewer' is not an export target .*its targets: research"):
        requeue.run(ctx, _args(target="viewer"))
    with pytest.raises(PermanentError, match="--batch and --target go together"):
        requeue.run(ctx, _args(target=None))


def _failed_topic(world: Clocked) -> FakeSubscriber:
    subscriber = FakeSubscriber()
    for body in world.publisher.bodies("dicom-failed"):
        subscriber.put(json.dumps(body).encode())
    return subscriber


def test_a_stuck_export_is_reported_with_its_target_and_requeue_runs_that_target_not_an_import() -> None:
    # GIVEN a de-id that never finishes: reported stuck on dicom-failed, its outcome recorded
    world = Clocked(operation_max_age_seconds=600, follow_poll_seconds=0)
    world.follow(world.watch())
    [watch] = world.publisher.bodies("dicom-operations")
    created = (NOW - timedelta(hours=1)).isoformat()
    world.healthcare.operations[watch["operation"]] = {"name": watch["operation"], "metadata": {"createTime": created}}
    world.follow(world.watch(watch["operation"], "export", "research"))
    [stuck] = world.publisher.bodies("dicom-failed")
    assert (stuck["stage"], stuck["operation"], stuck["target"]) == ("operation", watch["operation"], "research")
    assert world.marker().outcome == "stuck"
    # WHEN the operator re-drives the operation failures
    ctx = world.context()
    ctx = Context(ctx.settings, ctx.store, ctx.publisher, _failed_topic(world), ctx.healthcare, ctx.stores,
                  ctx.ledger, ctx.now)  # fmt: skip
    report = requeue.requeue(ctx, "dicom-failed-inspect", stage="operation")
    # THEN the de-id is started again (not an import's watch published)
    assert [o.result for o in report.chosen] == ["target started again"]
    assert len(world.healthcare.deidentifies) == 2
    kinds = [w["kind"] for w in world.publisher.bodies("dicom-operations")]
    assert kinds == ["export", "export"]


def test_an_old_failure_without_a_target_still_republishes_the_import_watch() -> None:
    world = Clocked()
    ctx = world.context()
    body = b'{"version": 1, "bucket": "state", "name": "gs://state/m.json", "generation": null, "reason": "stuck",' \
           b' "stage": "operation", "attempt": 1, "batch_id": "B1",' \
           b' "operation": "projects/p/locations/l/datasets/d/operations/import-1"}'  # fmt: skip
    subscriber = FakeSubscriber()
    subscriber.put(body)
    ctx = Context(ctx.settings, ctx.store, ctx.publisher, subscriber, ctx.healthcare, ctx.stores, ctx.ledger,
                  ctx.now)  # fmt: skip
    report = requeue.requeue(ctx, "dicom-failed-inspect")
    assert [o.result for o in report.chosen] == ["watch published"]
    [watch] = world.publisher.bodies("dicom-operations")
    assert (watch["kind"], watch["target"]) == ("import", None)
