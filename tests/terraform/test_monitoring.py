"""Monitoring in the Terraform module (terraform/monitoring.tf, terraform/dashboards/dicomflow.json): on by
default, one alert per signal with its threshold as a variable, log filters that match what the functions
actually log, and a dashboard whose placeholders are exactly what the module passes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hcl2", reason="python-hcl2 lives in .hclvenv: run scripts/terraform_checks.sh")

from tests.terraform.test_terraform import ROOT, TERRAFORM, _locals, _resources, _variables

MONITORING_TF = TERRAFORM / "monitoring.tf"
DASHBOARD = TERRAFORM / "dashboards" / "dicomflow.json"
SIGNALS = {"files_failed", "operations_stuck", "dead_letter", "pending_dead_letter", "pending_oldest_unacked",
           "function_errors"}  # fmt: skip
THRESHOLDS = {
    "files_failed": "files_failed_threshold",
    "operations_stuck": "stuck_operations_threshold",
    "dead_letter": "dead_letter_threshold",
    "pending_dead_letter": "dead_letter_threshold",
    "pending_oldest_unacked": "pending_record_max_age_seconds",
    "function_errors": "function_errors_threshold",
}
_PLACEHOLDER = re.compile(r"(?<!\$)\$\{(\w+)\}")


def _alert_bodies() -> dict[str, str]:
    """Signal => the text of its entry in `local.alerts` (monitoring.tf)."""
    text = MONITORING_TF.read_text()
    block = text[text.index("  alerts = var.monitoring.enabled ? {") :]
    block = block[: block.index("\n  } : {}")]
    parts = re.split(r"^    (\w+) = \{$", block, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _dashboard_filters(dashboard: dict[str, Any]) -> list[str]:
    return [
        data["timeSeriesQuery"]["timeSeriesFilter"]["filter"]
        for tile in dashboard["mosaicLayout"]["tiles"]
        for data in tile["widget"]["xyChart"]["dataSets"]
    ]


def test_monitoring_is_on_by_default_and_switched_by_one_flag():
    monitoring_type = _variables(TERRAFORM)["monitoring"]["type"]
    assert "enabled = optional(bool, true)" in monitoring_type
    resources = _resources()
    for rtype, name in [
        ("google_logging_metric", "operations_stuck"),
        ("google_logging_metric", "function_errors"),
        ("google_monitoring_dashboard", "main"),
    ]:
        assert resources[rtype][name]["count"] == "${var.monitoring.enabled ? 1 : 0}", f"{rtype}.{name}"
    assert resources["google_monitoring_alert_policy"]["main"]["for_each"] == "${local.alerts}"
    assert "  alerts = var.monitoring.enabled ? {" in MONITORING_TF.read_text()
    assert 'var.monitoring.enabled ? ["monitoring.googleapis.com"] : []' in (TERRAFORM / "main.tf").read_text()


def test_alerts_cover_every_signal_with_its_threshold_variable():
    bodies = _alert_bodies()
    assert set(bodies) == SIGNALS
    assert set(_locals()["monitoring_filters"]) == SIGNALS, "one monitoring filter per alert"
    monitoring_type = _variables(TERRAFORM)["monitoring"]["type"]
    for signal, variable in THRESHOLDS.items():
        assert re.search(rf"threshold\s+= var\.monitoring\.{variable}\n", bodies[signal]), signal
        assert f"{variable} " in monitoring_type, f"monitoring.{variable} is not a variable attribute"
    policy = _resources()["google_monitoring_alert_policy"]["main"]
    assert policy["notification_channels"] == "${var.notification_channels}"
    condition = policy["conditions"][0]["condition_threshold"][0]
    assert condition["filter"] == "${local.monitoring_filters[each.key]}"
    assert condition["threshold_value"] == "${each.value.threshold}"
    assert condition["comparison"] == "COMPARISON_GT"


def test_pending_age_alert_cannot_fire_for_folders_that_are_still_settling():
    (precondition,) = _resources()["google_monitoring_alert_policy"]["main"]["lifecycle"][0]["precondition"]
    assert (
        precondition["condition"]
        == "${var.monitoring.pending_record_max_age_seconds > var.settings.max_wait_seconds + 60}"
    )


def test_pubsub_filters_name_the_module_topics_and_subscriptions():
    filters = _locals()["monitoring_filters"]
    assert 'resource.label.topic_id=\\"${var.settings.failed_topic}\\"' in filters["files_failed"]
    assert 'subscription_id=\\"${var.settings.pending_subscription}\\"' in filters["pending_oldest_unacked"]
    assert "local.dead_letter_inspect_subscription" in filters["dead_letter"]
    assert "local.operations_subscription" in filters["dead_letter"]
    # ... and those locals are the names the subscriptions are created with.
    assert _resources()["google_pubsub_subscription"]["operations"]["name"] == "${local.operations_subscription}"
    assert "dead_letter = local.dead_letter_inspect_subscription" in str(_locals()["inspection_subscriptions"])


def test_log_metrics_match_what_the_functions_log():
    # GIVEN the log filters of the two log-based metrics
    metrics = _resources()["google_logging_metric"]
    stuck_filter = metrics["operations_stuck"]["filter"]
    errors_filter = metrics["function_errors"]["filter"]
    # THEN "operation stuck" is a message on_operation's core logs at ERROR (also a function error) ...
    match = re.search(r'jsonPayload\.message=\\+"([^"\\]+)\\+"', stuck_filter)
    assert match, stuck_filter
    sources = "\n".join(p.read_text() for p in (ROOT / "dicomflow").rglob("*.py"))
    assert re.search(rf'log\.error\(\s*"{re.escape(match.group(1))}"', sources), f"nobody logs {match.group(1)!r}"
    assert "severity>=ERROR" in errors_filter
    # ... the entries carry `message` and `severity` at the top of the JSON line (dicomflow/logs.py) ...
    logs_py = (ROOT / "dicomflow" / "logs.py").read_text()
    assert '"severity": record.levelname' in logs_py and '"message": message,' in logs_py
    assert re.search(r"message = .*record\.getMessage\(\)", logs_py)  # the record's message, names hashed
    # ... both read the functions' stdout as Cloud Run revisions, never the request log (deliberate 500s)
    assert 'log_id(\\"run.googleapis.com/stdout\\")' in _locals()["function_stdout_filter"]
    for metric in (stuck_filter, errors_filter):
        assert "local.function_stdout_filter" in metric
    # ... and the service names are the function names.
    (function,) = _resources()["google_cloudfunctions2_function"].values()
    assert function["name"] == '${var.name_prefix}-${replace(each.key, "_", "-")}'
    assert _locals()["on_operation_service"] == "${var.name_prefix}-on-operation"
    assert 'replace(key, "_", "-")' in _locals()["function_service_names"]
    assert "local.function_ids" in _locals()["function_service_names"]


def test_dashboard_placeholders_are_exactly_the_template_variables():
    raw = DASHBOARD.read_text()
    json.loads(raw)  # valid JSON before rendering too
    placeholders = set(_PLACEHOLDER.findall(raw))
    dashboard = _resources()["google_monitoring_dashboard"]["main"]["dashboard_json"]
    passed = set(re.findall(r"(\w+)\s*=", dashboard.split("{", 1)[1]))
    assert placeholders == passed


def test_dashboard_shows_every_alerted_signal():
    dashboard = json.loads(DASHBOARD.read_text())
    filters = "\n".join(_dashboard_filters(dashboard))
    for needed in (
        'topic_id="${failed_topic}"',
        "user/${operations_stuck_metric}",
        'subscription_id="${dead_letter_inspect_subscription}"',
        "dead_letter_message_count",
        "oldest_unacked_message_age",
        "user/${function_errors_metric}",
    ):
        assert needed in filters, needed
    metric_types = set(re.findall(r'metric\.type="([^"]+)"', filters))
    alerted = set(re.findall(r'metric\.type=\\"([^"\\]+)\\"', str(_locals()["monitoring_filters"])))
    alerted = {m.replace("${local.log_metric_names.operations_stuck}", "${operations_stuck_metric}") for m in alerted}
    alerted = {m.replace("${local.log_metric_names.function_errors}", "${function_errors_metric}") for m in alerted}
    assert alerted <= metric_types, f"alerted but not on the dashboard: {sorted(alerted - metric_types)}"


@pytest.mark.skipif(shutil.which("terraform") is None, reason="needs the terraform CLI (terraform console)")
def test_dashboard_renders_to_json_with_terraform(tmp_path: Path):
    # GIVEN the module's templatefile() call WHEN terraform renders it (no provider needed)
    variables = {name: f"x-{name}" for name in set(_PLACEHOLDER.findall(DASHBOARD.read_text()))}
    hcl_map = ", ".join(f'{k} = "{v}"' for k, v in sorted(variables.items()))
    expression = f'templatefile("{DASHBOARD}", {{ {hcl_map} }})'
    done = subprocess.run(
        ["terraform", "console"], input=f"jsonencode(jsondecode({expression}))\n", cwd=tmp_path,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # THEN it is JSON, every placeholder is filled and the legend template is left to Monitoring
    rendered = json.loads(json.loads(done.stdout.strip()))
    filters = "\n".join(_dashboard_filters(rendered))
    assert "${" not in filters
    assert 'resource.label.topic_id="x-failed_topic"' in filters
    legends = [
        d.get("legendTemplate") for t in rendered["mosaicLayout"]["tiles"] for d in t["widget"]["xyChart"]["dataSets"]
    ]
    assert "${metric.labels.function}" in legends
    assert rendered["displayName"] == "dicomflow (x-name_prefix)"
