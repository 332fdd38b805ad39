"""Hardening of the Terraform module (terraform/hardening.tf and the settings it wires): optional CMEK, Data
Access audit logs, the flush's custom role, intake's conditional grant, reused-bucket checks, the pending
dead-letter topic, and the log hash key of the functions and the backfill job."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("hcl2", reason="python-hcl2 lives in .hclvenv: run scripts/terraform_checks.sh")

from tests.terraform.console import evaluate, needs_terraform
from tests.terraform.test_terraform import EXAMPLES, TERRAFORM, _blocks, _locals, _resources, _variables


def _dynamic(body: dict, name: str) -> dict:
    [block] = [block[name] for block in body.get("dynamic", []) if name in block]
    return block


def test_cmek_is_optional_and_reaches_buckets_dataset_and_topics() -> None:
    variable = _variables(TERRAFORM)["kms_key_name"]
    assert variable["default"] is None and "REPLACES the dataset" in variable["description"]
    resources = _resources()
    bucket = _dynamic(resources["google_storage_bucket"]["main"], "encryption")
    assert bucket["for_each"] == "${var.kms_key_name == null ? [] : [var.kms_key_name]}"
    assert bucket["content"][0]["default_kms_key_name"] == "${encryption.value}"
    dataset = _dynamic(resources["google_healthcare_dataset"]["main"], "encryption_spec")
    assert dataset["content"][0]["kms_key_name"] == "${encryption_spec.value}"
    for topic in ("main", "store_notifications"):
        assert resources["google_pubsub_topic"][topic]["kms_key_name"] == "${var.kms_key_name}"
    # every encrypted resource waits for its service agent's grant on the key
    for rtype, name in [("google_storage_bucket", "main"), ("google_healthcare_dataset", "main"),
                        ("google_pubsub_topic", "main"), ("google_pubsub_topic", "store_notifications")]:  # fmt: skip
        assert "${google_kms_crypto_key_iam_member.service_agents}" in resources[rtype][name]["depends_on"]


def test_the_three_service_agents_get_encrypter_decrypter_on_the_key_only() -> None:
    grant = _resources()["google_kms_crypto_key_iam_member"]["service_agents"]
    assert grant["crypto_key_id"] == "${var.kms_key_name}"
    assert grant["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    agents = _locals()["kms_agents"]
    assert agents.startswith("${var.kms_key_name == null ? {} :")
    for agent in ("google_storage_project_service_account.main", "google_project_service_identity.healthcare",
                  "google_project_service_identity.pubsub"):  # fmt: skip
        assert agent in agents


def test_data_access_audit_logs_cover_healthcare_and_storage() -> None:
    # the checkov skip of bucket access logging (CKV_GCP_62) relies on these
    audit = _resources()["google_project_iam_audit_config"]["data_access"]
    assert audit["for_each"] == "${local.audited_services}"
    assert [c["log_type"] for c in audit["audit_log_config"]] == ["ADMIN_READ", "DATA_READ", "DATA_WRITE"]
    services = _locals()["audited_services"]
    assert '"healthcare.googleapis.com", "storage.googleapis.com"' in services
    assert services.startswith("${var.data_access_audit_logs ?")
    assert _variables(TERRAFORM)["data_access_audit_logs"]["default"] is True
    assert "Data Access logs for storage.googleapis.com" in (TERRAFORM / "main.tf").read_text()


def test_flush_starts_imports_through_a_custom_role_with_the_import_permission_only() -> None:
    role = _resources()["google_project_iam_custom_role"]["dicom_importer"]
    assert role["permissions"] == ["healthcare.dicomStores.import"]
    roles = _locals()["function_store_roles"]
    assert roles["on_flush"] == "${google_project_iam_custom_role.dicom_importer.name}"
    assert _locals()["function_store_roles_elsewhere"]["on_flush"] == "roles/healthcare.dicomEditor"


def test_the_follow_up_reads_log_entries_through_a_custom_role_with_the_list_permission_only() -> None:
    role = _resources()["google_project_iam_custom_role"]["log_reader"]
    assert role["permissions"] == ["logging.logEntries.list"]
    grant = _resources()["google_project_iam_member"]["follower_log_reader"]
    assert grant["member"] == 'serviceAccount:${google_service_account.function["on_operation"].email}'
    assert "google_project_iam_custom_role.log_reader.name" in str(grant["for_each"])
    assert '"roles/logging.viewer"' in str(grant["for_each"])  # route projects elsewhere


@needs_terraform
@pytest.mark.parametrize(
    ("source", "state", "export", "checked"),
    [
        ([{"name": "src", "create": True}], {"create": True}, {"enabled": True, "create": True}, []),
        ([{"name": "src", "create": False}, {"name": "more", "create": True}], {"create": False, "name": "st"},
         {"enabled": True, "create": False, "name": "ex"}, ["ex", "src", "st"]),
        # a reused state bucket that is a created source bucket is created, so not checked
        ([{"name": "src", "create": True}], {"create": False, "name": "src"}, {"enabled": False}, []),
    ],
)  # fmt: skip
def test_reused_buckets_are_the_ones_checked(
    source: list, state: dict, export: dict, checked: list, tmp_path: Path
) -> None:
    defaults = {"name": None, "location": None, "create": True}
    variables = {
        "project_id": "proj", "region": "us-central1", "name_prefix": "dicomflow",
        "source_buckets": [{**defaults, **b} for b in source],
        "state_bucket": {**defaults, **state},
        "export_bucket": {**defaults, "enabled": True, **export},
    }  # fmt: skip
    assert sorted(evaluate("reused_buckets", variables, tmp_path)) == checked


def test_reused_buckets_must_be_uniform_and_enforce_public_access_prevention() -> None:
    reused = _resources(kind="data")["google_storage_bucket"]["reused"]
    assert reused["for_each"] == "${var.reused_bucket_checks ? local.reused_buckets : toset([])}"
    conditions = [p["condition"] for p in reused["lifecycle"][0]["postcondition"]]
    assert conditions == ["${self.uniform_bucket_level_access == true}",
                          '${self.public_access_prevention == "enforced"}']  # fmt: skip


def test_pending_messages_flush_cannot_process_have_a_dead_letter_topic() -> None:
    topics = _locals()["topics"]
    assert topics["pending_dead_letter"] == "${var.settings.pending_topic}-dead-letter"
    assert "pending_dead_letter" in _locals()["function_topics"]["on_flush"]
    assert _locals()["inspection_subscriptions"].count("pending_dead_letter") == 1
    # Pub/Sub's own policy only when asked for, with the service agent's grants the policy needs
    pending = _resources()["google_pubsub_subscription"]["pending"]
    policy = _dynamic(pending, "dead_letter_policy")
    assert policy["for_each"].startswith("${var.pending_subscription.max_delivery_attempts == null ? []")
    assert policy["content"][0]["dead_letter_topic"] == '${google_pubsub_topic.main["pending_dead_letter"].id}'
    resources = _resources()
    publisher = resources["google_pubsub_topic_iam_member"]["pubsub_agent_pending_dead_letter"]
    subscriber = resources["google_pubsub_subscription_iam_member"]["pubsub_agent_pending"]
    assert publisher["role"] == "roles/pubsub.publisher" and subscriber["role"] == "roles/pubsub.subscriber"
    for grant in (publisher, subscriber):
        assert "google_project_service_identity.pubsub" in grant["member"]
        assert grant["count"] == "${var.pending_subscription.max_delivery_attempts == null ? 0 : 1}"
    assert _variables(TERRAFORM)["pending_subscription"]["type"].count("max_delivery_attempts = optional(number)")


def test_every_subscription_that_delivers_to_a_function_has_a_dead_letter_path() -> None:
    subscriptions = _resources()["google_pubsub_subscription"]
    assert subscriptions["operations"]["dead_letter_policy"][0]["dead_letter_topic"] == (
        '${google_pubsub_topic.main["dead_letter"].id}'
    )
    assert _dynamic(subscriptions["pending"], "dead_letter_policy")  # on_flush's own, plus the optional policy
    # the inspection subscriptions are read by people, who acknowledge what they read: no policy there
    assert "dead_letter_policy" not in subscriptions["inspect"]


def test_the_backfill_job_reads_the_log_hash_key_and_hashes_like_the_functions() -> None:
    resources = _resources()
    grant = resources["google_secret_manager_secret_iam_member"]["backfill_log_hash_key"]
    assert grant["secret_id"] == "${var.log_hash_key_secret}"
    assert grant["role"] == "roles/secretmanager.secretAccessor"
    assert "google_service_account.backfill[0]" in grant["member"]
    container = resources["google_cloud_run_v2_job"]["backfill"]["template"][0]["template"][0]["containers"][0]
    envs = [block["env"] for block in container["dynamic"] if "env" in block]
    [secret] = [env for env in envs if env["content"][0]["name"] == "LOG_HASH_KEY"]
    ref = secret["content"][0]["value_source"][0]["secret_key_ref"][0]
    assert ref == {"secret": "${env.value}", "version": "latest"}
    assert any(env["for_each"] == "${local.function_env}" for env in envs)  # LOG_OBJECT_NAMES among them
    assert _locals()["function_env"]["LOG_OBJECT_NAMES"] == "${var.settings.log_object_names}"


def test_hashed_names_without_a_key_fail_the_plan() -> None:
    preconditions = _resources()["google_cloudfunctions2_function"]["main"]["lifecycle"][0]["precondition"]
    assert any(
        p["condition"] == '${var.settings.log_object_names != "hashed" || var.log_hash_key_secret != null}'
        for p in preconditions
    )


@pytest.mark.parametrize("example", ["minimal", "with-exports", "with-research"])
def test_the_examples_log_hashed_names(example: str) -> None:
    [block] = _blocks(EXAMPLES / example, "module")
    call = block["dicomflow"]
    assert call["log_hash_key_secret"] == "${var.log_hash_key_secret}"
    assert call["settings"]["log_object_names"] == "hashed"


def test_notification_intake_grants_the_storage_agent_one_topic_instead_of_the_project() -> None:
    assert _variables(TERRAFORM)["intake_events"]["default"] == "eventarc"
    assert _locals()["intake_via_notifications"] == '${var.intake_events == "notifications"}'
    resources = _resources()
    project_wide = resources["google_project_iam_member"]["gcs_agent_publisher"]
    topic_level = resources["google_pubsub_topic_iam_member"]["gcs_agent_uploads"]
    assert project_wide["count"] == "${local.intake_via_notifications ? 0 : 1}"
    assert topic_level["count"] == "${local.intake_via_notifications ? 1 : 0}"
    assert topic_level["topic"] == "${google_pubsub_topic.uploads[0].name}"
    assert topic_level["role"] == "roles/pubsub.publisher"
    assert "google_storage_project_service_account" in topic_level["member"]
    # every source bucket notifies the uploads topic in the shape intake parses (dicomflow/messages/events.py)
    notification = resources["google_storage_notification"]["source"]
    assert notification["topic"] == "${google_pubsub_topic.uploads[0].id}"
    assert notification["payload_format"] == "JSON_API_V1" and notification["event_types"] == ["OBJECT_FINALIZE"]
    assert (
        notification["for_each"] == "${local.intake_via_notifications ? toset(local.source_bucket_names) : toset([])}"
    )
    events = (TERRAFORM.parent / "dicomflow" / "messages" / "events.py").read_text()
    assert 'GCS_NOTIFICATION_FINALIZE = "OBJECT_FINALIZE"' in events
    # the intake trigger follows, and no per-bucket Eventarc trigger is left
    trigger = _locals()["functions"]["on_object_finalized"]
    assert "local.intake_via_notifications ?" in trigger and "google.cloud.pubsub.topic.v1.messagePublished" in trigger
    assert "topics/${local.uploads_topic}" in trigger
    extra = resources["google_eventarc_trigger"]["extra_source"]
    assert extra["for_each"] == "${local.intake_via_notifications ? {} : local.extra_source_buckets}"
