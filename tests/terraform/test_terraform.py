"""Static checks of the Terraform deployment in terraform/ (no provider, no cloud).

Every .tf file is parsed with python-hcl2, which lives in its own venv (.hclvenv, made by
scripts/terraform_checks.sh): checkov vendors a fork that installs the same ``hcl2`` package, so the
two cannot share one. Elsewhere (the project's .venv) this module is skipped.

The settings table comes from ``dicomflow.config.settings`` itself, imported in a subprocess of this venv: that
module needs only the standard library (a unit test keeps it free of Google SDKs).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 lives in .hclvenv: run scripts/terraform_checks.sh")

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
EXAMPLES = TERRAFORM / "examples"
CONFIG = ROOT / "dicomflow" / "config"  # the settings are declared in its modules (``= setting(``)

_LOCAL_REF = re.compile(r"^\$\{local\.(\w+)\}$")
# The folders the deployed functions must never carry (the brief of the Terraform issue).
DEV_FOLDERS = {
    ".venv",
    ".tfvenv",
    ".hclvenv",
    ".tfschema",
    "tests",
    "bench",
    "devstack",
    "docs",
    "healthcare_emulator",
    "terraform",
    ".git",
}
CACHES = {"**/__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}
RUNTIME = {"main.py", "requirements.txt", "handlers", "dicomflow"}
FORBIDDEN_ROLES = {"roles/owner", "roles/editor"}


# ------------------------------------------------------------------------------------------------
# Reading the HCL
# ------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and block labels; drop them and its metadata."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@cache
def _parse(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        parsed: dict[str, Any] = _plain(hcl2.load(handle))
    return parsed


def _module_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.tf"))


def _blocks(folder: Path, kind: str) -> list[Any]:
    found: list[Any] = []
    for path in _module_files(folder):
        found.extend(_parse(path).get(kind, []))
    return found


def _resources(folder: Path = TERRAFORM, kind: str = "resource") -> dict[str, dict[str, dict[str, Any]]]:
    """type => name => body."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for block in _blocks(folder, kind):
        for rtype, named in block.items():
            for name, body in named.items():
                found.setdefault(rtype, {})[name] = body
    return found


def _locals(folder: Path = TERRAFORM) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in _blocks(folder, "locals"):
        merged.update(block)
    return merged


def _variables(folder: Path) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for block in _blocks(folder, "variable"):
        merged.update(block)
    return merged


def _resolve(expression: Any) -> Any:
    """A literal, or ``${local.NAME}`` replaced by that local's value."""
    if isinstance(expression, str):
        match = _LOCAL_REF.match(expression)
        if match:
            name = match.group(1)
            assert name in _locals(), f"local.{name} is referenced but not defined"
            return _locals()[name]
    return expression


def _text(folder: Path = TERRAFORM) -> str:
    return "\n".join(path.read_text() for path in _module_files(folder))


def _all_tf_files() -> list[Path]:
    return sorted(TERRAFORM.rglob("*.tf"))


@cache
def _settings_table() -> dict[str, str | None]:
    """SETTINGS_TABLE as {NAME: default}, default None when the setting is required."""
    code = (
        "import json; from dicomflow.config.settings import SETTINGS_TABLE as T; "
        "print(json.dumps({s.env: s.default for s in T}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    table: dict[str, str | None] = json.loads(out)
    return table


def _functions() -> dict[str, dict[str, Any]]:
    return _resources()["google_cloudfunctions2_function"]


_SERVER_ENV = "${merge(local.function_env, local.server_env[each.key])}"


def _function_env() -> dict[str, Any]:
    """The settings every function reads: ``local.function_env`` (merged with each function's server env)."""
    (function,) = _functions().values()
    expression = function["service_config"][0]["environment_variables"]
    assert expression == _SERVER_ENV, "the functions' environment is the settings plus each one's gunicorn env"
    env = _locals()["function_env"]
    assert isinstance(env, dict), "local.function_env must be a map literal"
    return env


# ------------------------------------------------------------------------------------------------
# Settings <-> environment variables
# ------------------------------------------------------------------------------------------------


def test_settings_table_parses_every_setting():
    # GIVEN dicomflow/config/settings.py (stdlib only: this venv has no pipeline dependencies) WHEN its table is read
    # THEN it has every field of Settings, declared in whichever module of dicomflow/config/, with required ones marked
    table = _settings_table()
    declared = sum(len(re.findall(r"= setting\(", path.read_text())) for path in sorted(CONFIG.glob("*.py")))
    assert len(table) == declared
    assert {"PROJECT_ID", "EXPORT_TARGETS", "LOG_LEVEL"} <= set(table)
    assert table["PROJECT_ID"] is None
    assert table["STATE_PREFIX"] == "dicomflow/"


def test_function_resource_is_one_for_each_over_the_entry_points():
    functions = _functions()
    assert list(functions) == ["main"], "the three functions are one resource with for_each"
    (function,) = functions.values()
    assert function["for_each"] == "${local.functions}"
    assert set(_locals()["functions"]) == {"on_object_finalized", "on_flush", "on_operation"}


def test_function_env_sets_only_known_settings():
    unknown = set(_function_env()) - set(_settings_table())
    assert not unknown, f"environment variables the functions do not read: {sorted(unknown)}"


def test_function_env_sets_every_required_setting():
    required = {name for name, default in _settings_table().items() if default is None}
    missing = required - set(_function_env())
    assert not missing, f"required settings not set on the functions: {sorted(missing)}"


def _secret_env_keys() -> set[str]:
    """Settings the functions read from Secret Manager (secret_environment_variables), not plain config."""
    return set(re.findall(r'key\s*=\s*"([A-Z][A-Z0-9_]*)"', (TERRAFORM / "main.tf").read_text()))


def test_function_env_covers_every_setting():
    missing = set(_settings_table()) - set(_function_env()) - _secret_env_keys()
    assert not missing, f"settings without an environment variable in Terraform: {sorted(missing)}"


def _settings_variable_attributes() -> dict[str, str | None]:
    """Attribute => default text of `variable "settings"`'s object type (None when multi-line)."""
    text = (TERRAFORM / "variables.tf").read_text()
    block = text[text.index('variable "settings"') :]
    block = block[: block.index("\n  default")]
    attributes: dict[str, str | None] = {}
    for line in block.splitlines():
        match = re.match(r"^    (\w+)\s*=\s*optional\((.*)$", line)
        if not match:
            continue
        one_line = re.match(r"^(\w+(?:\(\w+\))?),\s*(.+)\)$", match.group(2).strip())
        attributes[match.group(1)] = one_line.group(2) if one_line else None
    return attributes


def _as_setting_text(hcl_default: str) -> str:
    value = json.loads(hcl_default)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def test_settings_variable_mirrors_every_optional_setting_and_its_default():
    attributes = _settings_variable_attributes()
    secrets = _secret_env_keys()
    optional = {n: default for n, default in _settings_table().items() if default is not None and n not in secrets}
    assert set(attributes) == {name.lower() for name in optional}
    for name, default in optional.items():
        hcl_default = attributes[name.lower()]
        if hcl_default is None:  # the export target list: [] <=> ""
            assert default == "", name
            continue
        terraform_default = _as_setting_text(hcl_default)
        assert terraform_default == default, f"{name}: Terraform default {hcl_default}, settings {default!r}"


def test_settings_variable_validates_the_ranges_of_settings_py():
    settings = _variables(TERRAFORM)["settings"]
    conditions = "\n".join(v["condition"] for v in settings["validation"])
    for bound in ("1000000", ">= 1024", ">= 100", "<= 600", "<= 20", "<= 100", "var.settings.settle_seconds"):
        assert bound in conditions, f"no validation mentions {bound}"
    for attribute in ("max_header_bytes", "export_targets", "log_level", "blob_storage_class", "max_attempts"):
        assert f"var.settings.{attribute}" in conditions, f"settings.{attribute} is not validated"


# ------------------------------------------------------------------------------------------------
# Topics and subscriptions
# ------------------------------------------------------------------------------------------------


_PUBSUB_REF = re.compile(r'\b(google_pubsub_(?:topic|subscription))\.(\w+)(?:\[(?:"([^"]+)"|[^\]]*)\])?')


def test_pubsub_references_point_to_declared_topics_and_subscriptions():
    resources = _resources()
    checked = 0
    for path in _module_files(TERRAFORM):
        for rtype, name, key in _PUBSUB_REF.findall(path.read_text()):
            assert name in resources.get(rtype, {}), f"{path.name}: {rtype}.{name} is not declared"
            for_each = _resolve(resources[rtype][name].get("for_each"))
            if key:
                assert isinstance(for_each, dict), f"{rtype}.{name}[{key!r}] needs a literal for_each map"
                assert key in for_each, f"{path.name}: {rtype}.{name}[{key!r}] is not one of {sorted(for_each)}"
            checked += 1
    assert checked > 10


def test_function_topic_grants_name_declared_topics_and_functions():
    topics = set(_locals()["topics"])
    for function, granted in _locals()["function_topics"].items():
        assert function in _locals()["function_ids"]
        assert set(granted) <= topics, f"{function}: {set(granted) - topics}"


def test_function_env_topics_are_the_matching_topics():
    env = _function_env()
    for variable, key in {"PENDING_TOPIC": "pending", "OPERATIONS_TOPIC": "operations",
                          "FAILED_TOPIC": "failed", "RESULTS_TOPIC": "results"}.items():  # fmt: skip
        assert env[variable] == f'${{google_pubsub_topic.main["{key}"].name}}', variable
    assert env["PENDING_SUBSCRIPTION"] == "${google_pubsub_subscription.pending.name}"


def test_pending_subscription_is_a_long_lived_pull_without_dead_letter():
    pending = _resources()["google_pubsub_subscription"]["pending"]
    assert "push_config" not in pending, "on_flush pulls this subscription"
    assert "dead_letter_policy" not in pending, "unsettled records are nacked on purpose: never dead-letter them"
    assert pending["topic"] == '${google_pubsub_topic.main["pending"].id}'
    assert pending["expiration_policy"][0]["ttl"] == ""
    defaults = _variables(TERRAFORM)["pending_subscription"]["type"]
    # the ack deadline is the flush lease: a flush killed before its first extension is bounded the same way
    assert "optional(number, 30)" in defaults and "optional(number, 604800)" in defaults


def test_operations_subscription_pushes_with_backoff_and_dead_letter():
    operations = _resources()["google_pubsub_subscription"]["operations"]
    push = operations["push_config"][0]
    assert 'google_cloudfunctions2_function.main["on_operation"]' in push["push_endpoint"]
    assert push["oidc_token"][0]["service_account_email"] == "${google_service_account.invoker.email}"
    retry = operations["retry_policy"][0]
    assert "minimum_backoff_seconds" in retry["minimum_backoff"]
    assert "maximum_backoff_seconds" in retry["maximum_backoff"]
    dead_letter = operations["dead_letter_policy"][0]
    assert dead_letter["dead_letter_topic"] == '${google_pubsub_topic.main["dead_letter"].id}'
    assert operations["ack_deadline_seconds"] == 600


def test_pubsub_service_agent_can_dead_letter_operations():
    resources = _resources()
    topic_grant = resources["google_pubsub_topic_iam_member"]["pubsub_agent_dead_letter"]
    assert topic_grant["topic"] == '${google_pubsub_topic.main["dead_letter"].name}'
    assert topic_grant["role"] == "roles/pubsub.publisher"
    assert "google_project_service_identity.pubsub" in topic_grant["member"]
    subscription_grant = resources["google_pubsub_subscription_iam_member"]["pubsub_agent_operations"]
    assert subscription_grant["subscription"] == "${google_pubsub_subscription.operations.name}"
    assert subscription_grant["role"] == "roles/pubsub.subscriber"
    assert "google_project_service_identity.pubsub" in subscription_grant["member"]


# ------------------------------------------------------------------------------------------------
# Functions and IAM
# ------------------------------------------------------------------------------------------------


def test_function_entry_points_are_defined_in_main_py():
    (function,) = _functions().values()
    build = function["build_config"][0]
    assert build["runtime"] == "python311"
    assert build["entry_point"] == "${each.key}"
    main_py = (ROOT / "main.py").read_text()
    for entry_point in _locals()["functions"]:
        assert re.search(rf"^def {entry_point}\(", main_py, re.M), f"main.py has no {entry_point}"


def test_function_each_has_its_own_service_account():
    (function,) = _functions().values()
    runtime_account = function["service_config"][0]["service_account_email"]
    assert runtime_account == "${google_service_account.function[each.key].email}"
    accounts = _resources()["google_service_account"]
    per_function = accounts["function"]
    assert per_function["for_each"] == "${local.function_ids}"
    ids = _locals()["function_ids"]
    assert set(ids) == set(_locals()["functions"]), "one service account per function"
    assert len(set(ids.values())) == len(ids), "service account ids must differ"
    assert "${each.value}" in per_function["account_id"]
    assert "invoker" in accounts and accounts["invoker"]["account_id"] != per_function["account_id"]


def test_functions_accept_internal_traffic_only():
    (function,) = _functions().values()
    assert function["service_config"][0]["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert "allUsers" not in _text() and "allAuthenticatedUsers" not in _text()


def _function_defaults() -> dict[str, dict[str, str]]:
    """Function => attribute => default text, from `variable "functions"`'s object type."""
    text = (TERRAFORM / "variables.tf").read_text()
    block = text[text.index('variable "functions"') : text.index('variable "build_service_account_email"')]
    defaults: dict[str, dict[str, str]] = {}
    for name, body in re.findall(r"(\w+) = optional\(object\(\{(.*?)\}\), \{\}\)", block, re.S):
        defaults[name] = dict(re.findall(r"(\w+)\s*=\s*optional\(\w+(?:, ([^)]+))?\)", body))
    return defaults


def test_each_function_gets_one_gunicorn_thread_per_request_it_accepts():
    # GIVEN the Python runtime's server (functions-framework under gunicorn: WORKERS x THREADS)
    server_env = _locals()["server_env"]
    # THEN every function's THREADS x WORKERS covers its max_instance_request_concurrency
    assert "WORKERS = tostring(f.workers)" in server_env
    assert "THREADS = tostring(ceil(f.max_instance_request_concurrency / f.workers))" in server_env
    assert "for name, f in var.functions" in server_env


def test_intake_serves_requests_concurrently_and_flush_and_follow_up_one_at_a_time():
    defaults = _function_defaults()
    assert set(defaults) == {"on_object_finalized", "on_flush", "on_operation"}
    intake = defaults["on_object_finalized"]
    assert int(intake["max_instance_request_concurrency"]) > 1
    assert float(intake["available_cpu"].strip('"')) >= 1, "concurrency above 1 needs a whole vCPU"
    for name in ("on_flush", "on_operation"):
        assert defaults[name]["max_instance_request_concurrency"] == "1", name
    assert defaults["on_flush"]["max_instance_count"] == "1", "flushes never overlap"
    conditions = "\n".join(v["condition"] for v in _variables(TERRAFORM)["functions"]["validation"])
    assert "tonumber(f.available_cpu) >= 1" in conditions
    assert "var.functions.on_flush.max_instance_count == 1" in conditions


def test_flush_run_fits_in_the_flush_timeout():
    (function,) = _functions().values()
    conditions = [p["condition"] for p in function["lifecycle"][0]["precondition"]]
    assert any(
        "var.settings.flush_run_seconds + 60 <= var.functions.on_flush.timeout_seconds" in c for c in conditions
    ), conditions


def test_on_flush_and_intake_triggers():
    functions = _locals()["functions"]
    assert 'google_pubsub_topic.main["flush_tick"].id' in functions["on_flush"]
    assert "RETRY_POLICY_DO_NOT_RETRY" in functions["on_flush"]
    assert "google.cloud.storage.object.v1.finalized" in functions["on_object_finalized"]
    assert "RETRY_POLICY_RETRY" in functions["on_object_finalized"]
    assert "local.no_trigger" in functions["on_operation"], "on_operation is fed by the push subscription"
    job = _resources()["google_cloud_scheduler_job"]["flush"]
    assert job["pubsub_target"][0]["topic_name"] == '${google_pubsub_topic.main["flush_tick"].id}'


def _project_level_roles() -> list[tuple[str, str]]:
    """(resource, role text) of every project-level grant; for_each-driven roles yield their for_each text."""
    found: list[tuple[str, str]] = []
    for rtype, named in _resources().items():
        if not rtype.startswith("google_project_iam_"):
            continue
        for name, body in named.items():
            role = str(body.get("role", ""))
            if "each." in role:
                role = json.dumps(_resolve(body.get("for_each")))
            found.append((f"{rtype}.{name}", role))
    return found


def test_iam_roles_exclude_owner_editor_and_project_storage_admin():
    for path in _all_tf_files():
        roles = set(re.findall(r"roles/[A-Za-z0-9_.]+", path.read_text()))
        assert not roles & FORBIDDEN_ROLES, f"{path}: {sorted(roles & FORBIDDEN_ROLES)}"
    project_level = _project_level_roles()
    assert project_level, "expected the few project-level grants (event receiver, GCS agent publisher)"
    for resource, role in project_level:
        assert "roles/storage." not in role, f"{resource}: project-wide storage role {role}"
        assert not any(forbidden in role for forbidden in FORBIDDEN_ROLES), resource


def test_iam_is_additive_members_only():
    authoritative = [t for t in _resources() if t.endswith(("_iam_binding", "_iam_policy"))]
    assert not authoritative, f"authoritative IAM resources replace grants made by others: {authoritative}"


def test_healthcare_agent_reads_sources_and_state_and_writes_exports():
    grants = _locals()["healthcare_agent_bucket_grants"]
    assert "local.source_bucket_names" in grants and "local.state_bucket_name" in grants
    assert "roles/storage.objectViewer" in grants
    assert "local.export_gcs_buckets" in grants and "roles/storage.objectAdmin" in grants
    resources = _resources()
    agent_member = resources["google_storage_bucket_iam_member"]["healthcare_agent"]["member"]
    assert "google_project_service_identity.healthcare" in agent_member
    assert resources["google_bigquery_dataset_iam_member"]["healthcare_agent"]["role"] == "roles/bigquery.dataEditor"


def test_every_function_writes_the_state_bucket():
    """Intake notes its failures there (so a backfill does not report them twice); flush and follow-up keep
    the batch ledger there."""
    grants = _locals()["function_bucket_grants"]
    for function in ("on_flush", "on_operation"):
        assert f'"{function} ${{local.state_bucket_name}} user"' in grants, function
    assert grants.count("roles/storage.objectUser") == 2
    # intake: the same role, limited by a condition to the bucket (listing) and its failure notes
    intake = _resources()["google_storage_bucket_iam_member"]["intake_state"]
    assert intake["bucket"] == "${local.state_bucket_name}" and intake["role"] == "roles/storage.objectUser"
    assert "on_object_finalized" in intake["member"]
    assert intake["condition"][0]["expression"] == "${local.intake_state_condition}"
    condition = _locals()["intake_state_condition"]
    assert 'resource.type == \\"storage.googleapis.com/Bucket\\"' in condition
    assert "objects/${local.state_prefix}failed/" in condition


def test_gcs_service_agent_can_publish_for_eventarc():
    grant = _resources()["google_project_iam_member"]["gcs_agent_publisher"]
    assert grant["role"] == "roles/pubsub.publisher"
    assert "google_storage_project_service_account" in grant["member"]


def test_apis_stay_enabled_on_destroy():
    service = _resources()["google_project_service"]["main"]
    assert service["disable_on_destroy"] is False


# ------------------------------------------------------------------------------------------------
# Function source archive
# ------------------------------------------------------------------------------------------------


def _archive() -> dict[str, Any]:
    archive: dict[str, Any] = _resources(kind="data")["archive_file"]["source"]
    return archive


def _excluded(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) or (p.startswith("**/") and fnmatch.fnmatch(name, p[3:])) for p in patterns)


def test_archive_excludes_dev_folders_and_caches():
    archive = _archive()
    assert archive["source_dir"] == '${abspath("${path.module}/..")}', "the repository root is zipped"
    excludes = _resolve(archive["excludes"])
    assert isinstance(excludes, list)
    missing = (DEV_FOLDERS | CACHES) - set(excludes)
    assert not missing, f"not excluded from the function source: {sorted(missing)}"
    shipped = {name for name in RUNTIME if _excluded(name, excludes)}
    assert not shipped, f"runtime files excluded: {sorted(shipped)}"


def test_archive_ships_only_runtime_files_of_the_repository():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to list tracked files")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    top_level = {line.split("/", 1)[0] for line in tracked.splitlines() if line}
    excludes = _resolve(_archive()["excludes"])
    shipped = {name for name in top_level if not _excluded(name, excludes)}
    assert shipped <= RUNTIME, f"zipped with the functions but not needed by them: {sorted(shipped - RUNTIME)}"


def test_source_object_is_named_by_the_archive_hash():
    source = _resources()["google_storage_bucket_object"]["source"]
    assert "${data.archive_file.source.output_md5}" in source["name"]
    assert source["source"] == "${data.archive_file.source.output_path}"
    (function,) = _functions().values()
    storage = function["build_config"][0]["source"][0]["storage_source"][0]
    assert storage["object"] == "${google_storage_bucket_object.source.name}"


# ------------------------------------------------------------------------------------------------
# Buckets
# ------------------------------------------------------------------------------------------------


def test_buckets_are_private_uniform_and_versioned():
    bucket = _resources()["google_storage_bucket"]["main"]
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"][0]["enabled"] is True
    assert bucket["force_destroy"] == "${var.force_destroy}"
    assert any(rule.get("condition") for rule in bucket["lifecycle_rule"])
    assert any("lifecycle_rule" in block for block in bucket["dynamic"]), "state objects expire under STATE_PREFIX"


# ------------------------------------------------------------------------------------------------
# Module hygiene and examples
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", [TERRAFORM, *sorted(p for p in EXAMPLES.iterdir() if p.is_dir())], ids=str)
def test_variables_and_outputs_are_typed_and_described(folder: Path):
    for name, body in _variables(folder).items():
        assert body.get("type"), f"{folder.name}: variable {name} has no type"
        assert str(body.get("description", "")).strip(), f"{folder.name}: variable {name} has no description"
    for block in _blocks(folder, "output"):
        for name, body in block.items():
            assert str(body.get("description", "")).strip(), f"{folder.name}: output {name} has no description"


def _required_providers(folder: Path) -> dict[str, Any]:
    (terraform,) = _parse(folder / "versions.tf")["terraform"]
    providers: dict[str, Any] = terraform["required_providers"][0]
    return providers


def test_providers_are_pinned_to_current_majors():
    # 8.7.0 is the version the provider schema check (scripts/terraform_schema.py) reads: no older 8.x.
    providers = _required_providers(TERRAFORM)
    assert providers["google"]["version"] == "~> 8.7"
    assert providers["google-beta"]["version"] == "~> 8.7"
    assert providers["archive"]["version"].startswith("~> 2.")


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
def test_examples_pin_the_same_providers_as_the_root_module(example: str):
    assert _required_providers(EXAMPLES / example) == _required_providers(TERRAFORM)


@pytest.mark.parametrize("example", ["minimal", "with-exports", "with-research"])
def test_examples_call_the_root_module(example: str):
    folder = EXAMPLES / example
    for required in ("main.tf", "versions.tf", "variables.tf", "outputs.tf", "README.md", "terraform.tfvars.example"):
        assert (folder / required).is_file(), f"{example}/{required} is missing"
    modules = {name: body for block in _blocks(folder, "module") for name, body in block.items()}
    assert [body["source"] for body in modules.values()] == ["../.."]


def test_with_exports_example_configures_dicom_png_and_bigquery_targets():
    text = (EXAMPLES / "with-exports" / "main.tf").read_text()
    assert 'mime_type = "application/dicom"' in text and 'mime_type = "image/png"' in text
    assert "bigquery" in text and "bq://" in text


def test_checkov_skips_are_justified_inline():
    skips = 0
    for path in _all_tf_files():
        for line in path.read_text().splitlines():
            if "checkov:skip" not in line:
                continue
            match = re.search(r"#checkov:skip=(CKV2?_[A-Z]+_\d+):(.+)$", line)
            assert match, f"{path}: malformed skip: {line.strip()}"
            assert len(match.group(2).strip()) >= 30, f"{path}: {match.group(1)} needs a real reason"
            skips += 1
    assert skips >= 1


# Which Healthcare roles carry dicomWebDelete (the Cloud IAM roles reference): deleting a conflicting instance.
_DICOM_WEB_DELETE = {"roles/healthcare.dicomEditor": True, "roles/healthcare.dicomViewer": False}


def test_follow_up_may_delete_instances_only_when_conflicts_are_replaced():
    # GIVEN on_operation's store role: the custom role, whose permissions depend on settings.conflict_policy
    assert _locals()["function_store_roles"]["on_operation"] == "${google_project_iam_custom_role.dicom_follower.name}"
    permissions = _resources()["google_project_iam_custom_role"]["dicom_follower"]["permissions"]
    # THEN it reads and exports, and deletes only when conflicts are replaced (least privilege)
    assert '["healthcare.dicomStores.dicomWebRead", "healthcare.dicomStores.export"]' in permissions
    assert 'var.settings.conflict_policy == "replace" ? ["healthcare.dicomStores.dicomWebDelete"] : []' in permissions
    # AND route stores of other projects get the predefined role of the same reach
    role = _locals()["function_store_roles_elsewhere"]["on_operation"]
    match = re.fullmatch(r'\$\{var\.settings\.conflict_policy == "replace" \? "([^"]+)" : "([^"]+)"\}', role)
    assert match, f"on_operation's role elsewhere should depend on settings.conflict_policy: {role}"
    with_replace, with_report = match.groups()
    assert _DICOM_WEB_DELETE[with_replace] and not _DICOM_WEB_DELETE[with_report]
    # AND the routes' stores of this project get the same role as the default store
    assert "local.function_store_roles[each.value.function]" in (TERRAFORM / "iam.tf").read_text()
