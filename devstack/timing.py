"""Timing profiles of the local stack: ``local`` (the stand-ins' own clocks, the default) and ``cloud`` (the
clocks of the services the pipeline runs on, for benchmarks: ``devstack up --timing cloud``).

Every parameter is an explicit field with its default and, in ``SOURCES``, where the value comes from: a
documented platform figure, the deployment's Terraform default, or an assumption (the Healthcare API and Cloud
Storage publish no latency or throughput figures for these calls; the assumptions are this project's estimate,
to be replaced by measured values).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Percentiles:
    """A latency's median and 99th percentile, in milliseconds (drawn log-normal)."""

    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class OperationClock:
    """An import, export or de-identification lasts ``fixed + per_file x files + per_mb x MB`` seconds."""

    fixed_seconds: float
    per_file_seconds: float
    per_mb_seconds: float


@dataclass(frozen=True)
class TimingProfile:
    name: str
    import_operation: OperationClock | None = None  # None: the emulator's own speed
    export_operation: OperationClock | None = None
    deidentify_operation: OperationClock | None = None
    api_latency: dict[str, Percentiles] = field(default_factory=dict)  # operations.get, qido, wado, delete
    gcs_latency: dict[str, Percentiles] = field(default_factory=dict)  # rewrite, other: per Cloud Storage call
    operations_min_backoff_seconds: float = 1.0  # the operations subscription's retry policy (relay)
    operations_max_backoff_seconds: float = 5.0
    seed: int = 24

    @property
    def emulated(self) -> bool:
        """Whether any clock differs from the stand-ins' own."""
        return bool(self.import_operation or self.export_operation or self.deidentify_operation or self.api_latency)

    def emulator_json(self) -> dict[str, Any]:
        """The healthcare_emulator ``--timing`` profile (see healthcare_emulator/timing.py)."""
        body: dict[str, Any] = {"latency": {k: asdict(v) for k, v in self.api_latency.items()}, "seed": self.seed}
        if self.import_operation:
            body["import"] = asdict(self.import_operation)
        if self.export_operation:
            body["export"] = asdict(self.export_operation)
        if self.deidentify_operation:
            body["deidentify"] = asdict(self.deidentify_operation)
        return body


LOCAL = TimingProfile("local")

CLOUD = TimingProfile(
    "cloud",
    import_operation=OperationClock(fixed_seconds=20.0, per_file_seconds=0.03, per_mb_seconds=0.05),
    export_operation=OperationClock(fixed_seconds=20.0, per_file_seconds=0.01, per_mb_seconds=0.05),
    deidentify_operation=OperationClock(fixed_seconds=20.0, per_file_seconds=0.05, per_mb_seconds=0.1),
    api_latency={
        "operations.get": Percentiles(60, 250),
        "qido": Percentiles(100, 400),
        "wado": Percentiles(120, 500),
        "delete": Percentiles(150, 600),
    },
    gcs_latency={"rewrite": Percentiles(50, 200), "other": Percentiles(30, 150)},
    operations_min_backoff_seconds=10.0,
    operations_max_backoff_seconds=10.0,
)

SOURCES = {
    "import_operation": "assumption: 20 s to start and finish plus 30 ms a file (10,000 files: ~5 min, the order "
    "the issue reports for a cloud import) plus 50 ms a MB; the API publishes no throughput",
    "export_operation": "assumption: 20 s plus 10 ms a file plus 50 ms a MB; the API publishes no throughput",
    "deidentify_operation": "assumption: 20 s plus 50 ms a file plus 100 ms a MB (each instance is read, rewritten "
    "and stored again: more work a file than an export); the API publishes no throughput",
    "api_latency": "assumption: operations.get 60/250 ms, QIDO-RS 100/400 ms (the issue's 50-150 ms a query), "
    "WADO-RS 120/500 ms, DELETE 150/600 ms (p50/p99); no latency is published",
    "gcs_latency": "assumption: objects.rewrite 50/200 ms (the issue's 'tens of milliseconds a rewrite'; a rewrite "
    "within one location and storage class is metadata only), every other call 30/150 ms (p50/p99)",
    "operations_backoff": "the deployment's retry policy: terraform/variables.tf operations_delivery "
    "(minimum_backoff_seconds 10, maximum_backoff_seconds 10); Pub/Sub's own defaults are 10 s and 600 s "
    "(RetryPolicy: 'Value should be between 0 and 600 seconds'), exponential between them, best effort",
    "flush_interval": "Cloud Scheduler's finest schedule: one minute (the benchmarks' production shape uses 60 s)",
}

PROFILES = {profile.name: profile for profile in (LOCAL, CLOUD)}
