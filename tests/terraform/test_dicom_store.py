"""DICOM store options of the Terraform module: BigQuery stream configs and the Pub/Sub notification config.

Some locals are evaluated for real with ``terraform console`` (tests/terraform/console.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hcl2", reason="python-hcl2 lives in .hclvenv: run scripts/terraform_checks.sh")

from tests.terraform.console import evaluate, needs_terraform
from tests.terraform.test_terraform import _resources, _variables


def test_store_is_managed_by_google_beta_for_stream_configs():
    store = _resources()["google_healthcare_dicom_store"]["main"]
    assert store["provider"] == "google-beta"
    stream = store["dynamic"][1]["stream_configs"]
    assert stream["for_each"] == "${var.store_stream_configs}"
    assert stream["content"][0]["bigquery_destination"][0]["table_uri"] == "${stream_configs.value.table_uri}"
    notification = store["dynamic"][0]["notification_config"]
    assert notification["for_each"] == "${var.store_notifications.enabled ? [local.store_notification_topic_id] : []}"


def test_store_options_are_optional_and_off_by_default():
    variables = _variables(Path(__file__).resolve().parents[2] / "terraform")
    assert variables["store_stream_configs"]["default"] == []
    assert "enabled = optional(bool, false)" in variables["store_notifications"]["type"]


def test_store_waits_for_the_grants_it_needs():
    depends_on = _resources()["google_healthcare_dicom_store"]["main"]["depends_on"]
    for needed in (
        "google_pubsub_topic_iam_member.healthcare_agent_notifications",
        "google_bigquery_dataset_iam_member.healthcare_agent",
        "google_project_iam_member.healthcare_agent_bigquery_job_user",
    ):
        assert f"${{{needed}}}" in depends_on, needed


@needs_terraform
def test_stream_config_tables_get_the_healthcare_agent_bigquery_grants(tmp_path: Path):
    # GIVEN an export target and two stream configs, one in another project, one sharing the export's dataset
    variables = {
        "settings": {"export_targets": [{"name": "bq", "bigquery": "bq://p1.meta.instances", "gcs": None}]},
        "store_stream_configs": [{"table_uri": "bq://p1.meta.stream"}, {"table_uri": "bq://other.proj:x.ds2.t"}],
    }
    # WHEN the module groups the tables by dataset
    datasets = evaluate("export_bigquery_datasets", variables, tmp_path)
    # THEN each dataset is granted once, with its project
    assert datasets == {
        "p1.meta": {"project": "p1", "dataset_id": "meta"},
        "other.proj:x.ds2": {"project": "other.proj:x", "dataset_id": "ds2"},
    }
    grants = _resources()["google_bigquery_dataset_iam_member"]["healthcare_agent"]
    assert grants["for_each"] == "${local.export_bigquery_datasets}"


@needs_terraform
@pytest.mark.parametrize(
    ("notifications", "created", "topic_id"),
    [
        ({"enabled": False, "topic": "dicom-store-notifications"}, False, None),
        ({"enabled": True, "topic": "dicom-store-notifications"}, True, "projects/p/topics/dicom-store-notifications"),
        ({"enabled": True, "topic": "projects/hub/topics/dicom"}, False, "projects/hub/topics/dicom"),
    ],
)
def test_store_notification_topic_is_created_or_reused(
    tmp_path: Path, notifications: dict[str, Any], created: bool, topic_id: str | None
):
    variables = {"store_notifications": notifications, "project_id": "p"}
    assert evaluate("store_notification_topic_create", variables, tmp_path) is created
    assert evaluate("store_notification_topic_id", variables, tmp_path) == topic_id
    topic = _resources()["google_pubsub_topic"]["store_notifications"]
    assert topic["count"] == "${local.store_notification_topic_create ? 1 : 0}"
    grant = _resources()["google_pubsub_topic_iam_member"]["healthcare_agent_notifications"]
    assert grant["topic"] == "${local.store_notification_topic_id}"
