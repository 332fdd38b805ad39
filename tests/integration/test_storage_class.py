"""BLOB_STORAGE_CLASS and a route's storage_class reach the Healthcare API: the instances an import brings in
are stored in that class (read back with getStorageInfo), and a route without one keeps the store's default."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack.synthetic import SyntheticInstance, generate_dataset
from handlers import runtime as runtime_module
from tests.integration.pipeline_helpers import (
    Pipeline,
    _upload,
    import_and_follow,
)

pytestmark = pytest.mark.integration


def _storage_class(api: Any, pipeline: Pipeline, instance: SyntheticInstance) -> str:
    path = (
        f"{pipeline.store.name}/dicomWeb/studies/{instance.study_uid}/series/{instance.series_uid}"
        f"/instances/{instance.sop_uid}"
    )
    instances = api.projects().locations().datasets().dicomStores().dicomWeb().studies().series().instances()
    return str(instances.getStorageInfo(resource=path).execute()["blobStorageInfo"]["storageClass"])


def test_blob_storage_class_setting_reaches_every_imported_instance(
    pipeline: Pipeline, api_v1: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the pipeline configured to import into NEARLINE
    monkeypatch.setenv("BLOB_STORAGE_CLASS", "NEARLINE")
    runtime_module.reset()
    instances = generate_dataset(1, 2, 2, seed=9101)
    # WHEN files are taken in and flushed
    import_and_follow(pipeline, _upload(pipeline, instances, "cold"))
    # THEN every instance is stored in NEARLINE, not the store's default
    assert {_storage_class(api_v1, pipeline, i) for i in instances} == {"NEARLINE"}


def test_a_route_storage_class_applies_to_its_files_only(
    pipeline: Pipeline, api_v1: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN archive/ routed to the same store in ARCHIVE, everything else in the store's default class
    route = {"name": "archive", "prefix": f"gs://{pipeline.bucket.name}/archive/", "store": pipeline.store.name,
             "storage_class": "ARCHIVE"}  # fmt: skip
    monkeypatch.setenv("ROUTES", json.dumps([route]))
    runtime_module.reset()
    archived = generate_dataset(1, 1, 2, seed=9102)
    current = generate_dataset(1, 1, 2, seed=9103)
    # WHEN both folders are taken in and flushed
    import_and_follow(pipeline, _upload(pipeline, archived, "archive") + _upload(pipeline, current, "current"))
    # THEN the route's files are in ARCHIVE and the others in STANDARD
    assert {_storage_class(api_v1, pipeline, i) for i in archived} == {"ARCHIVE"}
    assert {_storage_class(api_v1, pipeline, i) for i in current} == {"STANDARD"}
