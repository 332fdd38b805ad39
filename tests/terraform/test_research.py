"""De-identified research copies in the Terraform module (terraform/research.tf, var.research): the variable's
validation, the resources and grants present only when enabled, IAM on the two stores only, the deidentify
target in EXPORT_TARGETS, the research store's own notification topic.

The variable's validation rules run for real: its block is copied into an empty folder and ``terraform console``
reads a value for it (no provider is needed for variables). Locals and preconditions are evaluated with
tests/terraform/console.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hcl2", reason="python-hcl2 lives in .hclvenv: run scripts/terraform_checks.sh")

from tests.terraform.console import evaluate, evaluate_expression, needs_terraform
from tests.terraform.test_terraform import EXAMPLES, TERRAFORM, _blocks, _locals, _parse, _resources, _variables

RESEARCH_TF = TERRAFORM / "research.tf"
SOURCE_STORE = "projects/p/locations/us-central1/datasets/dicomflow/dicomStores/dicomflow"
CREATED_STORE = "projects/p/locations/us-central1/datasets/dicomflow-research/dicomStores/research"
EXISTING_STORE = "projects/p/locations/us-central1/datasets/science/dicomStores/deid"
OTHER_LOCATION_STORE = "projects/p/locations/europe-west4/datasets/d/dicomStores/s"
DEFAULT_CONFIG = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
# The variable with every attribute at its default (console.evaluate substitutes values as given).
RESEARCH = {
    "enabled": True, "dataset_id": "dicomflow-research", "store_id": "research", "existing_store": None,
    "target_name": "research", "config": None, "config_uri": None,
    "notification_topic": "dicom-research-notifications", "send_for_bulk_import": True,
}  # fmt: skip
GCS_TARGET = {"name": "dcm", "gcs": "gs://exports/dcm", "mime_type": None, "bigquery": None, "write_disposition": None}


def _variables_for(research: dict[str, Any], **others: Any) -> dict[str, Any]:
    return {
        "project_id": "p", "region": "us-central1",
        "healthcare": {"location": None, "dataset": "dicomflow", "dicom_store": "dicomflow", "time_zone": "UTC"},
        "settings": {"export_targets": [GCS_TARGET]},
        "research": {**RESEARCH, **research}, **others,
    }  # fmt: skip


def _research_resources() -> dict[str, dict[str, dict[str, Any]]]:
    """type => name => body of the blocks of research.tf."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for block in _parse(RESEARCH_TF).get("resource", []):
        for rtype, named in block.items():
            for name, body in named.items():
                found.setdefault(rtype, {})[name] = body
    return found


# ------------------------------------------------------------------------------------------------
# The variable and its validation (run by terraform itself)
# ------------------------------------------------------------------------------------------------


def _variable_block() -> str:
    text = (TERRAFORM / "variables.tf").read_text()
    start = text.index('variable "research" {')
    return text[start : text.index("\n}\n", start) + 3]


def _validation_errors(value: dict[str, Any], workdir: Path) -> str:
    """What terraform says about var.research = VALUE: '' when every validation rule passes."""
    (workdir / "variables.tf").write_text(_variable_block())
    (workdir / "values.tfvars.json").write_text(json.dumps({"research": value}))
    done = subprocess.run(
        ["terraform", "console", "-no-color", "-var-file=values.tfvars.json"], input="var.research.enabled\n",
        cwd=workdir, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    if "Invalid value for variable" not in output:
        return ""
    return " ".join(output.split())


def test_research_is_off_by_default_with_the_documented_defaults():
    variable = _variables(TERRAFORM)["research"]
    assert variable["default"] == {} and variable["nullable"] is False
    for attribute in ('enabled = optional(bool, false)', 'dataset_id = optional(string, "dicomflow-research")',
                      'store_id = optional(string, "research")', 'target_name = optional(string, "research")',
                      "existing_store = optional(string)", "config = optional(any)", "config_uri = optional(string)",
                      'notification_topic = optional(string, "dicom-research-notifications")',
                      "send_for_bulk_import = optional(bool, true)"):  # fmt: skip
        assert re.search(re.escape(attribute).replace(r"\ =\ ", r"\s*=\s*"), variable["type"]), attribute
    assert '{ dicom = { filterProfile = "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE" } }' in RESEARCH_TF.read_text()


@needs_terraform
@pytest.mark.parametrize(
    "value",
    [
        {},
        {"enabled": True},
        {"enabled": True, "config": {"dicom": {"keepList": {"tags": ["Modality", "StudyInstanceUID"]}}, "text": {}}},
        {
            "enabled": True,
            "config": {"dicom": {"filterProfile": "MINIMAL_KEEP_LIST_PROFILE", "skipIdRedaction": False}},
        },
        {"enabled": True, "config_uri": "gs://deid-configs/research/v2.json"},
        {"enabled": True, "existing_store": EXISTING_STORE, "target_name": "deid-1"},
    ],
    ids=["off", "defaults", "config", "profile", "config_uri", "existing_store"],
)
def test_research_variable_accepts(value: dict[str, Any], tmp_path: Path):
    assert _validation_errors(value, tmp_path) == ""


@needs_terraform
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"config": DEFAULT_CONFIG, "config_uri": "gs://b/deid.json"}, "not both"),
        ({"config": {}}, "non-empty DeidentifyConfig object"),
        ({"config": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}, "non-empty DeidentifyConfig object"),
        ({"config": {"dicom": {"filterProfile": "BASIC_PROFILE"}}}, "filterProfile must be"),
        ({"config_uri": "gs://b/"}, "must name one object"),
        ({"config_uri": "gs://b/configs/*.json"}, "must name one object"),
        ({"config_uri": "s3://b/deid.json"}, "must name one object"),
        ({"existing_store": "projects/p/locations/us-central1/datasets/d"}, "full DICOM store name"),
        ({"target_name": "Research"}, "research.target_name"),
        ({"dataset_id": "has space"}, "research.dataset_id and research.store_id"),
        ({"notification_topic": "goog-notify"}, "research.notification_topic"),
    ],
    ids=["config-and-uri", "empty-config", "string-config", "unknown-profile", "uri-folder", "uri-wildcard",
         "uri-not-gcs", "store-not-full", "target-name", "dataset-id", "topic-goog"],
)  # fmt: skip
def test_research_variable_rejects(value: dict[str, Any], message: str, tmp_path: Path):
    errors = _validation_errors({"enabled": True, **value}, tmp_path)
    assert message in errors, errors or "accepted"


def _precondition(rtype: str, name: str, fragment: str) -> str:
    """The condition (HCL, without ${}) of the precondition of RTYPE.NAME whose text holds FRAGMENT."""
    body = _research_resources()[rtype][name]
    [condition] = [p["condition"] for p in body["lifecycle"][0]["precondition"] if fragment in p["condition"]]
    assert condition.startswith("${") and condition.endswith("}")
    return str(condition[2:-1])


@needs_terraform
@pytest.mark.parametrize(
    ("fragment", "research", "holds"),
    [
        ("[1] == var.project_id", {"existing_store": EXISTING_STORE}, True),
        ("[1] == var.project_id", {"existing_store": "projects/other/locations/us-central1/datasets/d/dicomStores/s"},
         False),
        ("[3] == local.healthcare_location", {"existing_store": EXISTING_STORE}, True),
        ("[3] == local.healthcare_location", {"existing_store": OTHER_LOCATION_STORE}, False),
        ("[3] == local.healthcare_location", {}, True),  # created: in the source's location by construction
        ("local.research_store_name !=", {"existing_store": SOURCE_STORE}, False),
        ("local.research_store_name !=", {}, True),
        ("var.settings.export_targets", {"target_name": "dcm"}, False),
        ("var.settings.export_targets", {}, True),
    ],
    ids=["same-project", "other-project", "same-location", "other-location", "created", "source-store",
         "research-store", "name-taken", "name-free"],
)  # fmt: skip
def test_rules_between_variables_fail_the_plan(fragment: str, research: dict[str, Any], holds: bool, tmp_path: Path):
    # GIVEN the preconditions of the research store grant (one variable's validation cannot see another's)
    condition = _precondition("google_healthcare_dicom_store_iam_member", "research_write", fragment)
    # THEN each holds exactly when the research store may be written by de-identification
    assert evaluate_expression(condition, _variables_for(research), tmp_path) is holds


@needs_terraform
def test_research_store_location_follows_an_explicit_healthcare_location(tmp_path: Path):
    variables = _variables_for({"existing_store": EXISTING_STORE})
    variables["healthcare"]["location"] = "us-east4"
    condition = _precondition("google_healthcare_dicom_store_iam_member", "research_write", "[3] == local.healthcare")
    assert evaluate_expression(condition, variables, tmp_path) is False
    assert evaluate("research_store_name", _variables_for({}, healthcare=variables["healthcare"]), tmp_path) == (
        "projects/p/locations/us-east4/datasets/dicomflow-research/dicomStores/research"
    )


def test_the_research_dataset_is_not_the_source_dataset():
    dataset = _research_resources()["google_healthcare_dataset"]["research"]
    [check] = dataset["lifecycle"][0]["precondition"]
    assert check["condition"] == "${var.research.dataset_id != var.healthcare.dataset}"
    assert dataset["location"] == "${local.healthcare_location}", "de-identification stays in one location"


# ------------------------------------------------------------------------------------------------
# EXPORT_TARGETS
# ------------------------------------------------------------------------------------------------


def test_the_functions_read_the_configured_targets_then_the_research_target():
    env = _locals()["function_env"]
    assert env["EXPORT_TARGETS"] == (
        '${length(local.function_export_targets) == 0 ? "" : jsonencode(local.function_export_targets)}'
    )
    assert _locals()["function_export_targets"] == "${concat(local.export_targets, local.research_targets)}"


@needs_terraform
@pytest.mark.parametrize(
    ("research", "deidentify"),
    [
        ({}, {"store": CREATED_STORE, "config": DEFAULT_CONFIG}),
        ({"config": {"dicom": {"keepList": {"tags": ["Modality"]}}, "text": {}}},
         {"store": CREATED_STORE, "config": {"dicom": {"keepList": {"tags": ["Modality"]}}, "text": {}}}),
        ({"config_uri": "gs://cfg/deid.json"}, {"store": CREATED_STORE, "config_uri": "gs://cfg/deid.json"}),
        ({"existing_store": EXISTING_STORE, "target_name": "deid"},
         {"store": EXISTING_STORE, "config": DEFAULT_CONFIG}),
    ],
    ids=["default-config", "own-config", "config-uri", "existing-store"],
)  # fmt: skip
def test_export_targets_carry_the_deidentify_target(
    research: dict[str, Any], deidentify: dict[str, Any], tmp_path: Path
) -> None:
    # GIVEN a GCS export target and research copies WHEN the functions' targets are built
    targets = evaluate("function_export_targets", _variables_for(research), tmp_path)
    # THEN the configured target comes first, unchanged, and the research target has exactly one of config/config_uri
    assert targets[0] == {"name": "dcm", "gcs": "gs://exports/dcm"}
    assert targets[1] == {"name": research.get("target_name", "research"), "deidentify": deidentify}
    assert len(targets) == 2
    # AND the JSON the functions parse is the shape of the deidentify kind
    assert json.loads(json.dumps(targets))[1]["deidentify"]["store"].count("/") == 7


@needs_terraform
def test_without_research_export_targets_are_unchanged(tmp_path: Path):
    variables = _variables_for({"enabled": False})
    assert evaluate("function_export_targets", variables, tmp_path) == [{"name": "dcm", "gcs": "gs://exports/dcm"}]
    assert evaluate("research_store_name", variables, tmp_path) is None
    variables["settings"]["export_targets"] = []
    assert evaluate("function_export_targets", variables, tmp_path) == []  # EXPORT_TARGETS = ""


# ------------------------------------------------------------------------------------------------
# Resources present only when enabled
# ------------------------------------------------------------------------------------------------

# What research.tf declares and what each exists for: created only with a created store, or whenever enabled.
_CREATED_WITH_THE_STORE = {
    ("google_healthcare_dataset", "research"),
    ("google_healthcare_dicom_store", "research"),
    ("google_pubsub_topic", "research_notifications"),
    ("google_pubsub_topic_iam_member", "healthcare_agent_research_notifications"),
}
_CREATED_WHEN_ENABLED = {
    ("google_project_iam_custom_role", "dicom_deidentifier"),
    ("google_project_iam_custom_role", "dicom_writer"),
    ("google_healthcare_dicom_store_iam_member", "research_deidentify"),
    ("google_healthcare_dicom_store_iam_member", "research_write"),
}


def test_every_research_resource_exists_only_when_enabled():
    declared = {(rtype, name) for rtype, named in _research_resources().items() for name in named}
    assert declared == _CREATED_WITH_THE_STORE | _CREATED_WHEN_ENABLED
    for rtype, name in declared:
        count = _research_resources()[rtype][name].get("count")
        expected = "local.research_create" if (rtype, name) in _CREATED_WITH_THE_STORE else "var.research.enabled"
        assert count == f"${{{expected} ? 1 : 0}}", f"{rtype}.{name}: count {count}"
    assert "data" not in _parse(RESEARCH_TF), "nothing is read when research is off"


@needs_terraform
@pytest.mark.parametrize(
    ("research", "create"),
    [({"enabled": False}, False), ({}, True), ({"existing_store": EXISTING_STORE}, False)],
    ids=["off", "created", "existing"],
)
def test_the_store_is_created_unless_an_existing_one_is_named(research: dict[str, Any], create: bool, tmp_path: Path):
    variables = _variables_for(research)
    assert evaluate("research_create", variables, tmp_path) is create
    topic = evaluate("research_topic_id", variables, tmp_path)
    assert topic == ("projects/p/topics/dicom-research-notifications" if create else None)


# ------------------------------------------------------------------------------------------------
# IAM: exactly the permissions de-identification needs, on the two stores only
# ------------------------------------------------------------------------------------------------

# https://docs.cloud.google.com/healthcare-api/docs/access-control ("DICOM store methods"): dicomStores.deidentify
# needs healthcare.dicomStores.deidentify on the source store and healthcare.dicomStores.dicomWebWrite on the
# destination store.
_DEIDENTIFY = "healthcare.dicomStores.deidentify"
_WRITE = "healthcare.dicomStores.dicomWebWrite"


def test_the_custom_roles_hold_one_permission_each():
    roles = _research_resources()["google_project_iam_custom_role"]
    assert roles["dicom_deidentifier"]["permissions"] == [_DEIDENTIFY]
    assert roles["dicom_writer"]["permissions"] == [_WRITE]
    for role in roles.values():
        assert role["role_id"].startswith('${replace(var.name_prefix, "-", "_")}_')


def test_on_operation_may_deidentify_the_source_store_and_write_the_research_store_only():
    grants = _research_resources()["google_healthcare_dicom_store_iam_member"]
    deidentify, write = grants["research_deidentify"], grants["research_write"]
    assert deidentify["dicom_store_id"] == "${google_healthcare_dicom_store.main.id}"
    assert deidentify["role"] == "${google_project_iam_custom_role.dicom_deidentifier[0].name}"
    assert write["dicom_store_id"] == (
        "${local.research_create ? google_healthcare_dicom_store.research[0].id : var.research.existing_store}"
    )
    assert write["role"] == "${google_project_iam_custom_role.dicom_writer[0].name}"
    for grant in (deidentify, write):
        assert grant["member"] == 'serviceAccount:${google_service_account.function["on_operation"].email}'
        assert "condition" not in grant


def test_no_project_or_dataset_level_grant_of_the_deidentify_permissions():
    resources = _resources()
    # GIVEN every project- and dataset-level grant of the module THEN none is a Healthcare store role or ours
    for rtype in ("google_project_iam_member", "google_healthcare_dataset_iam_member"):
        for name, body in resources.get(rtype, {}).items():
            text = json.dumps(body)
            for role in ("dicom_deidentifier", "dicom_writer", "roles/healthcare.dicomStoreAdmin",
                         "roles/healthcare.dicomEditor"):  # fmt: skip
                assert role not in text, f"{rtype}.{name} grants {role}"
    # AND the research roles are granted by the two store grants alone
    for rtype, named in resources.items():
        for name, body in named.items():
            if rtype == "google_healthcare_dicom_store_iam_member" and name.startswith("research_"):
                continue
            text = json.dumps(body)
            if rtype != "google_project_iam_custom_role":
                assert "dicom_deidentifier" not in text and "dicom_writer" not in text, f"{rtype}.{name}"
    # AND no other custom role of the module holds the permissions
    for name, custom in resources["google_project_iam_custom_role"].items():
        if name not in ("dicom_deidentifier", "dicom_writer"):
            assert _DEIDENTIFY not in json.dumps(custom) and _WRITE not in json.dumps(custom), name
    # AND the broad predefined role that holds healthcare.dicomStores.deidentify is granted nowhere
    tf_text = "".join(p.read_text() for p in TERRAFORM.rglob("*.tf"))
    assert not re.search(r'"roles/healthcare\.dicomStoreAdmin"', tf_text)


def test_the_functions_start_after_their_research_grants():
    depends_on = _resources()["google_cloudfunctions2_function"]["main"]["depends_on"]
    for grant in ("research_deidentify", "research_write"):
        assert f"${{google_healthcare_dicom_store_iam_member.{grant}}}" in depends_on


def test_the_healthcare_agent_reads_the_config_uri_bucket():
    # the filter file is in the state bucket, already readable for exports; config_uri may be elsewhere
    grants = _locals()["healthcare_agent_bucket_grants"]
    assert "local.research_config_buckets" in grants
    assert "[local.state_bucket_name]" in grants


@needs_terraform
@pytest.mark.parametrize(
    ("research", "buckets"),
    [
        ({}, []),
        ({"config_uri": "gs://deid-configs/research/v2.json"}, ["deid-configs"]),
        ({"enabled": False, "config_uri": "gs://deid-configs/v2.json"}, []),
    ],
    ids=["inline-config", "config-uri", "off"],
)
def test_config_uri_bucket_is_granted_only_when_used(research: dict[str, Any], buckets: list[str], tmp_path: Path):
    assert evaluate("research_config_buckets", _variables_for(research), tmp_path) == buckets


# ------------------------------------------------------------------------------------------------
# The research store's notification topic, encryption and outputs
# ------------------------------------------------------------------------------------------------


def test_the_research_store_notifies_its_own_topic():
    resources = _research_resources()
    store = resources["google_healthcare_dicom_store"]["research"]
    assert store["dataset"] == "${google_healthcare_dataset.research[0].id}"
    assert "provider" not in store, "notification_config is in the google provider (8.7)"
    [notification] = store["notification_config"]
    assert notification == {
        "pubsub_topic": "${google_pubsub_topic.research_notifications[0].id}",
        "send_for_bulk_import": "${var.research.send_for_bulk_import}",
    }
    assert store["depends_on"] == ["${google_pubsub_topic_iam_member.healthcare_agent_research_notifications}"]
    grant = resources["google_pubsub_topic_iam_member"]["healthcare_agent_research_notifications"]
    assert grant["topic"] == "${google_pubsub_topic.research_notifications[0].name}"
    assert grant["role"] == "roles/pubsub.publisher"
    assert grant["member"] == "serviceAccount:${google_project_service_identity.healthcare.email}"
    topic = resources["google_pubsub_topic"]["research_notifications"]
    assert topic["name"] == "${var.research.notification_topic}"
    [distinct] = topic["lifecycle"][0]["precondition"]
    assert "values(local.topics)" in distinct["condition"] and "var.store_notifications.topic" in distinct["condition"]


def test_research_resources_are_hardened_like_the_others():
    resources = _research_resources()
    dataset = resources["google_healthcare_dataset"]["research"]
    [encryption] = [block["encryption_spec"] for block in dataset["dynamic"] if "encryption_spec" in block]
    assert encryption["for_each"] == "${var.kms_key_name == null ? [] : [var.kms_key_name]}"
    topic = resources["google_pubsub_topic"]["research_notifications"]
    assert topic["kms_key_name"] == "${var.kms_key_name}"
    for body in (dataset, topic):
        assert "${google_kms_crypto_key_iam_member.service_agents}" in body["depends_on"]
    for body in (topic, resources["google_healthcare_dicom_store"]["research"]):
        assert body["labels"] == "${local.labels}"


def test_outputs_name_the_research_store_and_its_topic():
    outputs = {name: body for block in _parse(TERRAFORM / "outputs.tf")["output"] for name, body in block.items()}
    assert outputs["research_store"]["value"] == "${local.research_store_name}"
    assert outputs["research_notification_topic"]["value"] == "${local.research_topic_id}"


def test_the_with_research_example_turns_research_on_and_subscribes_to_its_notifications():
    [block] = _blocks(EXAMPLES / "with-research", "module")
    research = block["dicomflow"]["research"]
    assert research["enabled"] is True and "config_uri" not in research
    example = _resources(EXAMPLES / "with-research")
    assert example["google_pubsub_subscription"]["research"]["topic"] == (
        "${module.dicomflow.research_notification_topic}"
    )
    readers = example["google_healthcare_dicom_store_iam_member"]["research_readers"]
    assert readers["dicom_store_id"] == "${module.dicomflow.research_store}", "readers see the research store only"
