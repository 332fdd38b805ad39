"""Settings: one frozen dataclass, built once from an environment mapping and validated with clear errors.

Each setting is declared once, as a field of ``Settings`` (in one of its bases, by topic): its environment variable
is the attribute's name in capitals, and ``setting(default, parser, description)`` (``config.parsers``) gives the
rest. ``SETTINGS_TABLE`` is derived from the fields and drives ``from_env``, the settings table
(docs/configuration.md) and the Terraform variables check. The core receives a ``Settings``; it never reads the
environment itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from dicomflow.config.exports import ExportTarget, parse_export_targets, store_mismatch
from dicomflow.config.parsers import (
    Setting,
    parse_bool,
    parse_choice,
    parse_endpoint,
    parse_list,
    parse_log_level,
    parse_number,
    parse_object_basename,
    parse_pattern,
    parse_prefix,
    parse_storage_class,
    setting,
)
from dicomflow.config.routes import DEFAULT, Route, parse_routes
from dicomflow.errors import ConfigurationError

_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,256}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._\-]{1,220}[a-z0-9]$")
_TOPIC = re.compile(r"^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$")
_ID_EXPECTED = "1-256 letters, digits, '_', '-' or '.'"
_TOPIC_EXPECTED = "a Pub/Sub resource id (3-255 characters, starting with a letter)"


@dataclass(frozen=True, kw_only=True)
class _Sources:
    """Where files come from, which are selected, and where the pipeline keeps its state."""

    project_id: str = setting(None, parse_pattern(re.compile(r"^[a-z][a-z0-9\-:.]{2,62}$"), "a project id"),
                              "Google Cloud project of the Healthcare dataset and the Pub/Sub topics.")  # fmt: skip
    location: str = setting(None, parse_pattern(re.compile(r"^[a-z0-9\-]{2,63}$"), "a location such as us-central1"),
                            "Healthcare API location of the dataset, e.g. us-central1.")  # fmt: skip
    dataset: str = setting(None, parse_pattern(_ID, _ID_EXPECTED), "Healthcare dataset id.")
    dicom_store: str = setting(None, parse_pattern(_ID, _ID_EXPECTED), "DICOM store id that receives the imports.")
    source_buckets: tuple[str, ...] = setting(
        None, parse_list(parse_pattern(_BUCKET, "bucket names"), allow_empty=False),
        "Comma-separated buckets whose uploads are imported; events from others are ignored.",
    )  # fmt: skip
    state_bucket: str = setting(
        None,
        parse_pattern(_BUCKET, "a bucket name"),
        "Bucket for batch manifests and filter files (may be a source bucket).",
    )
    state_prefix: str = setting(
        "dicomflow/", parse_prefix, "Prefix of the pipeline's own objects in the state bucket; never imported."
    )
    dicom_suffixes: tuple[str, ...] = setting(
        ".dcm",
        parse_list(str.lower, allow_empty=False),
        "Comma-separated name suffixes selected as DICOM (case-insensitive).",
    )
    sniff_extensionless: bool = setting(
        "true",
        parse_bool,
        "Also select objects without an extension whose bytes 128-131 are 'DICM' (DICOM media such as CT1/17106, "
        "many PACS exports); costs one ranged read of up to HEADER_READ_BYTES per extensionless object.",
    )
    ready_marker: str = setting(
        "", parse_object_basename,
        "Name of an object (e.g. _READY) whose upload marks its folder complete: the folder's files (and its "
        "subfolders') that arrived before it are imported at the next flush, without waiting SETTLE_SECONDS; the "
        "marker is never imported or reported. Empty: off.",
    )  # fmt: skip
    exclude_prefixes: tuple[str, ...] = setting(
        "", parse_list(str), "Comma-separated object prefixes never imported (e.g. quarantine/)."
    )


@dataclass(frozen=True, kw_only=True)
class _Batching:
    """The topics between the stages, and how pending files become batches and imports."""

    pending_topic: str = setting(
        "dicom-pending", parse_pattern(_TOPIC, _TOPIC_EXPECTED), "Topic of one record per uploaded DICOM object."
    )
    pending_subscription: str = setting(
        "dicom-pending-flush",
        parse_pattern(_TOPIC, _TOPIC_EXPECTED),
        "Pull subscription on PENDING_TOPIC read by on_flush.",
    )
    operations_topic: str = setting(
        "dicom-operations",
        parse_pattern(_TOPIC, _TOPIC_EXPECTED),
        "Topic of watch messages, one per started operation.",
    )
    failed_topic: str = setting(
        "dicom-failed",
        parse_pattern(_TOPIC, _TOPIC_EXPECTED),
        "Topic of files that cannot be imported, with the reason.",
    )
    results_topic: str = setting(
        "dicom-results", parse_pattern(_TOPIC, _TOPIC_EXPECTED), "Topic of one summary per finished batch."
    )
    settle_seconds: float = setting(
        "30", parse_number(float, minimum=0), "A folder is ready once no new upload arrived in it for this long."
    )
    max_wait_seconds: float = setting(
        "600", parse_number(float, minimum=0), "A folder is ready anyway once its oldest pending upload is this old."
    )
    max_batch_files: int = setting(
        "10000",
        parse_number(int, minimum=1, maximum=1_000_000),
        "Most pending records one flush pulls and imports as one batch.",
    )
    max_concurrent_operations: int = setting(
        "5",
        parse_number(int, minimum=1, maximum=100),
        "Most import operations in flight on the store (Google advises ~5).",
    )
    blob_storage_class: str | None = setting(
        "", parse_storage_class, "Storage class for imported instances (STANDARD, NEARLINE, COLDLINE, ARCHIVE)."
    )
    staging: str = setting(
        "auto", parse_choice("auto", "always", "never"),
        "auto: a whole new subtree holding most of a batch is imported in place, every other file is copied into "
        "the staging prefix and imported with one more operation; always: stage every file; never: in-place "
        "wildcard covers only (names no URI can address are still staged).",
    )  # fmt: skip
    header_read_bytes: int = setting(
        "65536",
        parse_number(int, minimum=1024),
        "First ranged read when sniffing a header; grows only for longer headers.",
    )
    max_header_bytes: int = setting(
        "16777216", parse_number(int, minimum=1024), "Largest header read before an object is reported as not DICOM."
    )
    listing_cap: int = setting(
        "50000",
        parse_number(int, minimum=100),
        "Most objects one planner step may list; beyond it the planner stays narrower.",
    )
    flush_lease_seconds: int = setting(
        "30",
        parse_number(int, minimum=10, maximum=600),
        "Ack deadline the flush keeps extending (every third of it) on the records it holds: a crashed flush's "
        "records come back to the next flush within this long.",
    )
    flush_run_seconds: float = setting(
        "55",
        parse_number(float, minimum=0, maximum=480),
        "Seconds one on_flush invocation keeps working (pull, plan, start; pull again as folders settle) before it "
        "hands over; keep it below the tick interval (60 s) and the function timeout. 0: one pass per tick.",
    )


@dataclass(frozen=True, kw_only=True)
class _FollowUp:
    """The APIs, and how imports are retried, reconciled, followed up and explained."""

    healthcare_api_endpoint: str | None = setting(
        "", parse_endpoint, "Override of https://healthcare.googleapis.com (the local emulator)."
    )
    logging_api_endpoint: str | None = setting(
        "", parse_endpoint, "Override of https://logging.googleapis.com, where the follow-up reads the API's per-file "
        "reasons (the local emulator serves that read API too).",
    )  # fmt: skip
    api_retry_attempts: int = setting(
        "6",
        parse_number(int, minimum=1, maximum=20),
        "Attempts for a Healthcare API call answered 429/5xx or timing out.",
    )
    export_targets: tuple[ExportTarget, ...] = setting(
        "",
        parse_export_targets,
        "JSON list of exports fired for every imported batch (see Export targets); empty = none.",
    )
    routes: tuple[Route, ...] = setting(
        "", parse_routes,
        "JSON list of routes sending files under a prefix to another DICOM store (see Routes); the single-store "
        "settings stay the default route. Empty: one store.",
    )  # fmt: skip
    max_attempts: int = setting(
        "3", parse_number(int, minimum=1, maximum=100), "Imports tried per file before it goes to dicom-failed."
    )
    conflict_policy: str = setting(
        "report", parse_choice("report", "replace"),
        "What becomes of a file whose UIDs the store already holds with other content. report: it goes to "
        "dicom-failed (stage conflict), the stored instance stays; replace: the stored instance is deleted through "
        "DICOMweb and the file re-driven, so the next flush imports it (once per file: conflicting again, it is "
        "reported). replace needs healthcare.dicomStores.dicomWebDelete (roles/healthcare.dicomEditor).",
    )  # fmt: skip
    operation_max_age_seconds: float = setting(
        "21600", parse_number(float, minimum=0), "An operation still running after this long is reported stuck."
    )
    follow_poll_seconds: float = setting(
        "240", parse_number(float, minimum=0, maximum=540),
        "Seconds one on_operation invocation keeps polling operations.get for a running operation before it hands "
        "the watch back to Pub/Sub's redelivery, so the follow-up learns that an import or export ended within "
        "FOLLOW_INTERVAL_SECONDS of its end; keep it at least 60 s below on_operation's timeout. 0: no polling "
        "(every check is one delivery, paced by the subscription's retry backoff).",
    )  # fmt: skip
    follow_interval_seconds: float = setting(
        "2", parse_number(float, minimum=0.1, maximum=60),
        "Seconds between two operations.get calls while an invocation polls (one call per interval and running "
        "operation: a 10-minute import costs about 600 / interval calls).",
    )  # fmt: skip
    failure_log_wait_seconds: float = setting(
        "30", parse_number(float, minimum=0, maximum=120),
        "Seconds a follow-up waits for Cloud Logging to hold the per-file errors of a finished import that failed "
        "files (log ingestion lags), reading again every 5 s, before it reports them with the fallback reasons "
        "(the operation's sample errors, then its summary). Only when a file is reported; 0: one read.",
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class _Logging:
    """What the logs carry."""

    log_level: str = setting("INFO", parse_log_level, "DEBUG, INFO, WARNING or ERROR.")
    log_object_names: str = setting(
        "full", parse_choice("full", "hashed"),
        "full: logs carry object names; hashed: every object name in a log line is a keyed hash (LOG_HASH_KEY). "
        "Failure messages and results keep the names (requeue needs them).",
    )  # fmt: skip
    log_hash_key: str = setting(
        "",
        str,
        "Secret key of the object-name hash (at least 16 characters); required with LOG_OBJECT_NAMES=hashed.",
        secret=True,
    )


@dataclass(frozen=True, kw_only=True)
class Settings(_Logging, _FollowUp, _Batching, _Sources):
    """Every setting (the fields of the bases, in their order: sources, batching, follow-up, logging) and
    what is derived from them."""

    @property
    def dataset_name(self) -> str:
        return f"projects/{self.project_id}/locations/{self.location}/datasets/{self.dataset}"

    @property
    def store_name(self) -> str:
        return f"{self.dataset_name}/dicomStores/{self.dicom_store}"

    @property
    def default_route(self) -> Route:
        return Route(DEFAULT, "", "", self.store_name, self.export_targets, self.blob_storage_class)

    def route_for(self, bucket: str, name: str) -> Route:
        """The route of an object: the longest matching ROUTES prefix, else the default route."""
        matching = [r for r in self.routes if r.matches(bucket, name)]
        return max(matching, key=lambda r: len(r.prefix)) if matching else self.default_route

    def route_named(self, name: str) -> Route:
        return next((r for r in self.routes if r.name == name), self.default_route)

    @property
    def pending_dead_letter_topic(self) -> str:
        """Where flush puts pending messages it can never process (derived: ``{PENDING_TOPIC}-dead-letter``)."""
        return f"{self.pending_topic}-dead-letter"

    def refuses(self, bucket: str, name: str) -> str | None:
        """Why a record naming this object must not be imported (None: it may), re-checked by every flush."""
        if bucket not in self.source_buckets:
            return "pending record field 'bucket' is not one of SOURCE_BUCKETS"
        if self.excluded(bucket, name):
            return "pending record field 'name' is excluded (EXCLUDE_PREFIXES, the pipeline's state or exports)"
        return None

    @property
    def stores(self) -> tuple[str, ...]:
        """Every DICOM store the deployment imports into: the default one first."""
        return tuple(dict.fromkeys([self.store_name, *(r.store for r in self.routes)]))

    def excluded(self, bucket: str, name: str) -> bool:
        """True for objects the pipeline must never import: configured exclusions and its own state."""
        if bucket == self.state_bucket and name.startswith(self.state_prefix):
            return True
        if any(name.startswith(prefix) for prefix in self.exclude_prefixes):
            return True
        targets = [*self.export_targets, *(t for r in self.routes for t in r.export_targets)]
        for target in targets:  # never import our own exports (no loops)
            location = target.gcs_bucket_and_prefix
            if location and location[0] == bucket and name.startswith(location[1]):
                return True
        return False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build and validate from an environment mapping; ConfigurationError lists every problem at once."""
        problems: list[str] = []
        values: dict[str, Any] = {}
        for item in SETTINGS_TABLE:
            raw = env.get(item.env, "").strip()
            if not raw:
                if item.default is None:
                    problems.append(f"{item.env} is required: {item.description}")
                    continue
                raw = item.default
            try:
                values[item.attribute] = item.parse(raw)
            except ValueError as exc:
                problems.append(f"{item.env}={raw!r}: {exc}")
        if not problems:
            problems.extend(_cross_checks(values))
        if problems:
            raise ConfigurationError("invalid configuration:\n  - " + "\n  - ".join(problems))
        return cls(**values)


def _cross_checks(values: Mapping[str, Any]) -> list[str]:
    """Rules that involve several settings."""
    problems: list[str] = []
    if values["max_wait_seconds"] < values["settle_seconds"]:
        problems.append("MAX_WAIT_SECONDS must be at least SETTLE_SECONDS")
    if values["log_object_names"] == "hashed" and len(values["log_hash_key"]) < 16:
        problems.append("LOG_OBJECT_NAMES=hashed needs LOG_HASH_KEY of at least 16 characters (keep it secret)")
    if values["max_header_bytes"] < values["header_read_bytes"]:
        problems.append("MAX_HEADER_BYTES must be at least HEADER_READ_BYTES")
    for route in values["routes"]:
        if route.bucket not in values["source_buckets"]:
            problems.append(f"ROUTES: route {route.name!r} takes files of bucket {route.bucket}, which is not in "
                            "SOURCE_BUCKETS (add it there, or the route never sees an upload)")  # fmt: skip
    for target in [*values["export_targets"], *(t for r in values["routes"] for t in r.export_targets)]:
        location = target.gcs_bucket_and_prefix
        if location and location[0] in values["source_buckets"] and not location[1].strip("/"):
            problems.append(f"EXPORT_TARGETS: target {target.name!r} writes to the root of source bucket "
                            f"{location[0]}; give it a prefix so exports are not taken for uploads")  # fmt: skip
    default_store = (f"projects/{values['project_id']}/locations/{values['location']}/datasets/{values['dataset']}"
                     f"/dicomStores/{values['dicom_store']}")  # fmt: skip
    checks = [("EXPORT_TARGETS", t, default_store) for t in values["export_targets"]]
    checks += [(f"ROUTES: route {r.name!r}", t, r.store) for r in values["routes"] for t in r.export_targets]
    for where, target, store in checks:
        if mismatch := store_mismatch(target, store):
            problems.append(f"{where}: {mismatch}")
    return problems


SETTINGS_TABLE: tuple[Setting, ...] = tuple(
    Setting(f.name.upper(), f.name, *f.metadata["setting"]) for f in fields(Settings)
)
KNOWN_SETTINGS = frozenset(item.env for item in SETTINGS_TABLE)
