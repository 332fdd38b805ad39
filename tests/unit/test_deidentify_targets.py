"""De-id targets: the kind's start-up rules, each with a message naming the target; a batch's de-id started
once, with the batch's filter file, watched like an export, restarted when interrupted; a refused or failed
de-id reported with the API's reason without failing the import; failed instances named and bounded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dicomflow.config.exports import parse_export_targets
from dicomflow.config.settings import Settings
from dicomflow.errors import ConfigurationError, PermanentError
from dicomflow.ports import FileError
from dicomflow.stages.follow import Follower
from dicomflow.stages.follow.deidentify import MAX_FAILED_INSTANCES
from tests.unit.test_follow import NOW, STATE, World, _file, _settings

SOURCE = "projects/proj/locations/l/datasets/d/dicomStores/s"
RESEARCH = "projects/proj/locations/l/datasets/research/dicomStores/deid"
CONFIG = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
US = "projects/proj/locations/us-central1"
REQUIRED = {"PROJECT_ID": "proj", "LOCATION": "us-central1", "DATASET": "d", "DICOM_STORE": "s",
            "SOURCE_BUCKETS": "src", "STATE_BUCKET": "state"}  # fmt: skip


def _target(**deidentify: Any) -> str:
    return json.dumps([{"name": "research", "deidentify": {"store": RESEARCH, "config": CONFIG, **deidentify}}])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"store": "projects/p/datasets/d/dicomStores/s", "config": {}}, "deidentify.store must be projects/P"),
        ({"store": RESEARCH + "/x", "config": {}}, "deidentify.store must be projects/P"),
        ({"store": RESEARCH.replace("deid", "a b"), "config": {}}, "deidentify.store must be projects/P"),
        ({"store": RESEARCH}, "exactly one of 'config'"),
        ({"store": RESEARCH, "config": {}, "config_uri": "gs://b/deid.json"}, "exactly one of 'config'"),
        ({"store": RESEARCH, "config": "basic"}, "deidentify.config must be a JSON object"),
        ({"store": RESEARCH, "config": [1]}, "deidentify.config must be a JSON object"),
        ({"store": RESEARCH, "config_uri": "gs://bucket-only"}, "config_uri must be gs://bucket/object"),
        ({"store": RESEARCH, "config_uri": "https://x/deid.json"}, "config_uri must be gs://bucket/object"),
        ({"store": RESEARCH, "config": {}, "profile": "basic"}, "deidentify has unknown keys: profile"),
        ("projects/x", "deidentify must be an object"),
    ],
)
def test_a_malformed_deid_target_is_refused_naming_it(spec: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"target 'research'.*{message}"):
        parse_export_targets(json.dumps([{"name": "research", "deidentify": spec}]))


def test_a_deid_target_takes_one_kind_only() -> None:
    with pytest.raises(ValueError, match="target 'research' needs exactly one of 'gcs'"):
        parse_export_targets(json.dumps([{"name": "research", "gcs": "gs://b/x", "deidentify": {"store": RESEARCH}}]))
    with pytest.raises(ValueError, match="mime_type and write_disposition apply to GCS and BigQuery"):
        parse_export_targets(json.dumps([{"name": "research", "mime_type": "image/png",
                                          "deidentify": {"store": RESEARCH, "config": {}}}]))  # fmt: skip


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("projects/other/locations/us-central1/datasets/research/dicomStores/deid", "project and location of the"),
        ("projects/proj/locations/europe-west4/datasets/research/dicomStores/deid", "the API refuses other"),
        (f"{US}/datasets/d/dicomStores/s", "is the store it copies from"),
    ],
)
def test_start_up_refuses_a_research_store_the_api_would_refuse(store: str, message: str) -> None:
    # GIVEN a de-id target in EXPORT_TARGETS (the default store's) and the same in a route to another store
    target = [{"name": "research", "deidentify": {"store": store, "config": CONFIG}}]
    with pytest.raises(ConfigurationError, match=f"EXPORT_TARGETS: target 'research'.*{message}"):
        Settings.from_env({**REQUIRED, "EXPORT_TARGETS": json.dumps(target)})
    if "/datasets/research/" in store:  # a route to another store of this project and location: the same rule
        route = {"name": "site-b", "prefix": "gs://src/b/", "store": f"{US}/datasets/b/dicomStores/b",
                 "export_targets": target}  # fmt: skip
        with pytest.raises(ConfigurationError, match=f"ROUTES: route 'site-b': target 'research'.*{message}"):
            Settings.from_env({**REQUIRED, "ROUTES": json.dumps([route])})


def test_a_valid_deid_target_passes_start_up_and_builds_the_apis_request() -> None:
    research = f"{US}/datasets/research/dicomStores/deid"
    settings = Settings.from_env({**REQUIRED, "EXPORT_TARGETS": _target(store=research)})
    [target] = settings.export_targets
    assert target.deidentifies and target.project_and_location == ("proj", "us-central1")
    assert target.request_body("gs://state/filter.txt") == {
        "destinationStore": research, "config": CONFIG, "filterConfig": {"resourcePathsGcsUri": "gs://state/filter.txt"},
    }  # fmt: skip
    by_uri_spec = {"store": RESEARCH, "config_uri": "gs://cfg/deid.json"}
    [by_uri] = parse_export_targets(json.dumps([{"name": "r", "deidentify": by_uri_spec}]))
    assert by_uri.request_body("gs://s/f")["gcsConfigUri"] == "gs://cfg/deid.json"
    assert "config" not in by_uri.request_body("gs://s/f")


def _deid_world(files: int = 1) -> World:
    world = World([_file(f"1.1.1.{n}") for n in range(1, files + 1)], _settings(parse_export_targets(_target())))
    world.healthcare.stored = {("1.1", "1.1.1", f"1.1.1.{n}") for n in range(1, files + 1)}
    return world


def test_a_batchs_deid_starts_once_with_its_filter_file_and_its_counters_reach_the_result() -> None:
    world = _deid_world()
    world.follow(world.watch())
    world.follow(world.watch())  # the import's watch redelivered: no second de-id
    assert world.healthcare.deidentifies == [{
        "destinationStore": RESEARCH, "config": CONFIG,
        "filterConfig": {"resourcePathsGcsUri": f"gs://{STATE}/dicomflow/batches/B1/filter.txt"},
    }]  # fmt: skip
    assert world.healthcare.exports == []
    [watch] = world.publisher.bodies("dicom-operations")
    assert (watch["kind"], watch["target"]) == ("export", "research")
    world.healthcare.operations[watch["operation"]] = {"done": True, "response": {},
                                                       "metadata": {"counter": {"success": "1"}}}  # fmt: skip
    world.follow(world.watch(watch["operation"], "export", "research"))
    world.follow(world.watch(watch["operation"], "export", "research"))  # redelivered: one result
    [result] = world.publisher.bodies("dicom-results")
    assert result["outcome"] == "success"
    assert result["exports"] == [{"target": "research", "operation": watch["operation"], "outcome": "succeeded",
                                  "reason": None, "success": 1, "failure": 0, "failed_instances": []}]  # fmt: skip
    assert len(world.healthcare.deidentifies) == 1


def test_a_refused_deid_is_reported_with_the_apis_reason_and_the_import_stands() -> None:
    # GIVEN a research store that does not exist: the API refuses the call
    world = _deid_world()
    world.healthcare.refuse_deidentify = PermanentError("HTTP 404: destination store not found")
    world.follow(world.watch())
    # THEN no watch for it, the batch result published at once: its file imported, the target failed with why
    assert world.publisher.bodies("dicom-operations") == []
    [result] = world.publisher.bodies("dicom-results")
    assert (result["imported"], result["failed"], result["outcome"]) == (1, 0, "partial")
    [target] = result["exports"]
    assert target["outcome"] == "failed" and "destination store not found" in target["reason"]
    assert world.publisher.bodies("dicom-failed") == []


def test_an_interrupted_deid_is_started_again_and_a_failed_one_is_not() -> None:
    world = _deid_world()
    world.follow(world.watch())
    [first] = world.publisher.bodies("dicom-operations")
    world.healthcare.operations[first["operation"]] = {"done": True, "error": {"code": 14, "message": "unavailable"}}
    world.follow(world.watch(first["operation"], "export", "research"))
    assert len(world.healthcare.deidentifies) == 2 and world.healthcare.exports == []
    second = world.publisher.bodies("dicom-operations")[-1]
    world.healthcare.operations[second["operation"]] = {"done": True, "error": {"code": 7, "message": "denied"}}
    world.follow(world.watch(second["operation"], "export", "research"))
    assert len(world.healthcare.deidentifies) == 2
    [result] = world.publisher.bodies("dicom-results")
    assert (result["imported"], result["exports"][0]["outcome"]) == (1, "failed")
    assert "denied" in result["exports"][0]["reason"]


class _Log:
    def __init__(self, errors: list[FileError]) -> None:
        self.errors, self.reads = errors, 0

    def operation_errors(self, operation_name: str, limit: int) -> list[FileError]:
        self.reads += 1
        return self.errors[:limit]


def test_failed_instances_are_named_with_the_apis_reason_and_bounded() -> None:
    # GIVEN a de-id that failed more instances than are named, each logged with its reason
    world = _deid_world()
    world.follow(world.watch())
    [watch] = world.publisher.bodies("dicom-operations")
    many = MAX_FAILED_INSTANCES + 20
    world.healthcare.operations[watch["operation"]] = {
        "done": True, "response": {}, "metadata": {"counter": {"success": "0", "failure": str(many)}}}  # fmt: skip
    log = _Log([FileError(f"{SOURCE}/dicomWeb/studies/1.1/series/1.1.1/instances/9.{n:03d}", 3,
                          "the de-identified instance is not storable") for n in range(many)])  # fmt: skip
    follower = Follower(world.settings, store=world.store, healthcare=world.healthcare, publisher=world.publisher,
                        now=lambda: NOW, error_log=log)  # fmt: skip
    follower.follow(world.watch(watch["operation"], "export", "research"))
    [result] = world.publisher.bodies("dicom-results")
    [target] = result["exports"]
    # THEN the counter has them all, the first MAX_FAILED_INSTANCES are named by instance path with the reason
    assert target["failure"] == many and len(target["failed_instances"]) == MAX_FAILED_INSTANCES
    assert target["failed_instances"][0] == {"instance": "/studies/1.1/series/1.1.1/instances/9.000",
                                             "reason": "the de-identified instance is not storable"}  # fmt: skip
    assert result["imported"] == 1 and world.publisher.bodies("dicom-failed") == []
