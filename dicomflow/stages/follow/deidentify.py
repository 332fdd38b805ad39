"""What the follow-up's export step does differently for a de-id target: the operation it starts
(``dicomStores.deidentify`` into the research store instead of ``dicomStores.export``) and, once it is done,
the instances it could not de-identify, each with the API's reason from Cloud Logging.

Those instances were imported: they are named in the target's marker, the batch result and ``dicomflow status``,
never put on the failed topic (a requeue would import them again, not de-identify them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicomflow.config.exports import ExportTarget
from dicomflow.messages import lro
from dicomflow.ports import HealthcareApi
from dicomflow.reconcile.logged_reasons import LoggedReasons

MAX_FAILED_INSTANCES = 100  # named per target and batch; the counter holds the full count


def start_operation(healthcare: HealthcareApi, target: ExportTarget, filter_uri: str) -> str:
    """Start the target's operation over the instances of ``filter_uri``; its name."""
    body = target.request_body(filter_uri)
    return healthcare.start_deidentify(body) if target.deidentifies else healthcare.start_export(body)


def failed_instances(
    reasons: LoggedReasons, target: ExportTarget | None, name: str, operation: Mapping[str, Any]
) -> tuple[dict[str, str], ...]:
    """The instances a finished de-id operation failed, with the API's reasons (bounded); () for exports."""
    failures = lro.failures(operation)
    if target is None or not target.deidentifies or failures <= 0:
        return ()
    found = reasons.of(name, min(failures, MAX_FAILED_INSTANCES))
    named = sorted((_instance_path(resource), reason) for resource, reason in found.items())
    return tuple({"instance": path, "reason": reason} for path, reason in named[:MAX_FAILED_INSTANCES])


def _instance_path(resource: str) -> str:
    """``/studies/S/series/R/instances/I`` of a logged resource name (the store part dropped)."""
    _store, found, path = resource.partition("/dicomWeb")
    return path if found else resource
