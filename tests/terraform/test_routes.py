"""settings.routes in the Terraform module: the ROUTES the functions read, and who gets access where.

The locals are evaluated with ``terraform console`` (no provider needed), as in test_dicom_store.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("hcl2", reason="python-hcl2 lives in .hclvenv: run scripts/terraform_checks.sh")

from tests.terraform.console import evaluate, needs_terraform
from tests.terraform.test_terraform import _resources

STORE_B = "projects/research/locations/europe-west4/datasets/rs/dicomStores/site-b"
STORE_C = "projects/main-proj/locations/us-central1/datasets/other/dicomStores/site-c"
ROUTES = [
    {"name": "site-b", "prefix": "gs://incoming/site-b/", "store": STORE_B, "storage_class": "NEARLINE",
     "export_targets": [{"name": "png", "gcs": "gs://b-viewer/png", "mime_type": "image/png", "bigquery": None,
                         "write_disposition": None}]},
    {"name": "site-c", "prefix": "gs://incoming/site-c/", "store": STORE_C, "storage_class": None,
     "export_targets": [{"name": "dcm", "gcs": "gs://c-archive/dcm", "mime_type": None, "bigquery": None,
                         "write_disposition": None}]},
]  # fmt: skip
VARIABLES = {"settings": {"routes": ROUTES}, "project_id": "main-proj"}


@needs_terraform
def test_routes_reach_the_functions_as_json_without_empty_fields(tmp_path: Path) -> None:
    routes = evaluate("routes", VARIABLES, tmp_path)
    png = {"name": "png", "gcs": "gs://b-viewer/png", "mime_type": "image/png"}
    assert routes[0] == {"name": "site-b", "prefix": "gs://incoming/site-b/", "store": STORE_B,
                         "storage_class": "NEARLINE", "export_targets": [png]}  # fmt: skip
    assert "storage_class" not in routes[1]
    assert json.loads(json.dumps(routes)) == routes


@needs_terraform
def test_route_stores_datasets_and_other_projects_are_granted(tmp_path: Path) -> None:
    assert sorted(evaluate("route_stores", VARIABLES, tmp_path)) == sorted([STORE_B, STORE_C])
    assert sorted(evaluate("route_datasets", VARIABLES, tmp_path)) == [
        "projects/main-proj/locations/us-central1/datasets/other",
        "projects/research/locations/europe-west4/datasets/rs",
    ]
    # only the other project's Healthcare agent needs its own grants; it writes that route's exports
    assert evaluate("route_projects", VARIABLES, tmp_path) == ["research"]
    assert evaluate("route_export_buckets_elsewhere", VARIABLES, tmp_path) == [
        {"project": "research", "bucket": "b-viewer"}]  # fmt: skip


def test_route_grants_mirror_the_default_stores_roles():
    resources = _resources()
    store = resources["google_healthcare_dicom_store_iam_member"]["route"]
    # the custom roles live in this project: a route store elsewhere gets the predefined roles instead
    assert store["role"] == (
        '${(split("/", each.value.store)[1] == var.project_id ? local.function_store_roles[each.value.function] '
        ": local.function_store_roles_elsewhere[each.value.function])}"
    )
    dataset = resources["google_healthcare_dataset_iam_member"]["route"]
    assert dataset["role"] == "${local.function_dataset_roles[each.value.function]}"
    agent = resources["google_storage_bucket_iam_member"]["route_healthcare_agent"]
    assert "gcp-sa-healthcare.iam.gserviceaccount.com" in agent["member"]
