"""ROUTES through the real functions and the emulator: two routes to two stores in two datasets receive
exactly their own files and exports, and every result names its route."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
from google.cloud import storage

from devstack.synthetic import generate_dataset
from handlers import runtime as runtime_module
from tests.integration.conftest import LOCATION, PROJECT, StoreRef, create_store
from tests.integration.pipeline_helpers import (
    Pipeline,
    _upload,
    import_and_follow,
    results,
)

pytestmark = pytest.mark.integration


def _sops(pipeline: Pipeline, store: StoreRef) -> set[str]:
    response = requests.get(f"{pipeline.services.healthcare_url}/v1/{store.name}/dicomWeb/instances", timeout=30)
    return set() if response.status_code == 204 else {i["00080018"]["Value"][0] for i in response.json()}


def test_two_routes_to_two_stores_in_two_datasets_get_exactly_their_own_files_and_exports(
    pipeline: Pipeline, api_v1: Any, gcs: storage.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a second dataset with its own store, and site-b/ routed there with a PNG export
    research = create_store(api_v1, StoreRef(PROJECT, LOCATION, f"research-{uuid.uuid4().hex[:8]}", "site-b"))
    exports = gcs.create_bucket(f"exports-{uuid.uuid4().hex[:10]}")
    routes = [
        {
            "name": "site-b",
            "prefix": f"gs://{pipeline.bucket.name}/site-b/",
            "store": research.name,
            "export_targets": [{"name": "png", "gcs": f"gs://{exports.name}/site-b", "mime_type": "image/png"}],
        }
    ]
    monkeypatch.setenv("ROUTES", json.dumps(routes))
    monkeypatch.setenv("EXPORT_TARGETS", json.dumps([{"name": "dicom", "gcs": f"gs://{exports.name}/site-a"}]))
    runtime_module.reset()
    site_a = generate_dataset(1, 1, 3, seed=781)
    site_b = generate_dataset(1, 1, 2, seed=782)
    # WHEN both sites upload and the pipeline runs
    import_and_follow(pipeline, _upload(pipeline, site_a, "site-a") + _upload(pipeline, site_b, "site-b"))
    # THEN each store holds exactly its own site's instances
    assert _sops(pipeline, pipeline.store) == {i.sop_uid for i in site_a}
    assert _sops(pipeline, research) == {i.sop_uid for i in site_b}
    # AND each route's exports went where that route says, in its format
    exported = sorted(b.name for b in exports.list_blobs())
    assert sum(1 for n in exported if n.startswith("site-a/") and n.endswith(".dcm")) == len(site_a)
    assert sum(1 for n in exported if n.startswith("site-b/") and n.endswith(".png")) == len(site_b)
    # AND one result per route, each naming its route and store
    by_route = {r["route"]: r for r in results(pipeline)}
    assert set(by_route) == {"default", "site-b"}
    assert (by_route["site-b"]["store"], by_route["site-b"]["imported"]) == (research.name, 2)
    assert by_route["site-b"]["_attributes"]["route"] == "site-b"
