"""Settings: one frozen dataclass, built once from an environment mapping and validated with clear errors.

Every field is one environment variable (``SETTINGS_TABLE`` lists name, default and meaning; the README and
the Terraform variables are generated from the same facts). The core receives a ``Settings``; it never
reads the environment itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dicomflow.errors import ConfigurationError
from dicomflow.exports import ExportTarget, parse_export_targets

_STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")
_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,256}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._\-]{1,220}[a-z0-9]$")
_TOPIC = re.compile(r"^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$")


@dataclass(frozen=True)
class Setting:
    env: str
    default: str | None  # None = required
    description: str


SETTINGS_TABLE: tuple[Setting, ...] = (
    Setting("PROJECT_ID", None, "Google Cloud project of the Healthcare dataset and the Pub/Sub topics."),
    Setting("LOCATION", None, "Healthcare API location of the dataset, e.g. us-central1."),
    Setting("DATASET", None, "Healthcare dataset id."),
    Setting("DICOM_STORE", None, "DICOM store id that receives the imports."),
    Setting(
        "SOURCE_BUCKETS", None, "Comma-separated buckets whose uploads are imported; events from others are ignored."
    ),
    Setting("STATE_BUCKET", None, "Bucket for batch manifests and filter files (may be a source bucket)."),
    Setting("STATE_PREFIX", "dicomflow/", "Prefix of the pipeline's own objects in the state bucket; never imported."),
    Setting("DICOM_SUFFIXES", ".dcm", "Comma-separated name suffixes selected as DICOM (case-insensitive)."),
    Setting("SNIFF_EXTENSIONLESS", "true", "Also select objects without an extension whose bytes 128-131 are 'DICM'."),
    Setting("EXCLUDE_PREFIXES", "", "Comma-separated object prefixes never imported (e.g. quarantine/)."),
    Setting("PENDING_TOPIC", "dicom-pending", "Topic of one record per uploaded DICOM object."),
    Setting("PENDING_SUBSCRIPTION", "dicom-pending-flush", "Pull subscription on PENDING_TOPIC read by on_flush."),
    Setting("OPERATIONS_TOPIC", "dicom-operations", "Topic of watch messages, one per started operation."),
    Setting("FAILED_TOPIC", "dicom-failed", "Topic of files that cannot be imported, with the reason."),
    Setting("RESULTS_TOPIC", "dicom-results", "Topic of one summary per finished batch."),
    Setting("SETTLE_SECONDS", "30", "A folder is ready once no new upload arrived in it for this long."),
    Setting("MAX_WAIT_SECONDS", "600", "A folder is ready anyway once its oldest pending upload is this old."),
    Setting("MAX_BATCH_FILES", "10000", "Most pending records one flush pulls and imports as one batch."),
    Setting("MAX_CONCURRENT_OPERATIONS", "5", "Most import operations in flight on the store (Google advises ~5)."),
    Setting("BLOB_STORAGE_CLASS", "", "Storage class for imported instances (STANDARD, NEARLINE, COLDLINE, ARCHIVE)."),
    Setting(
        "STOW_LEFTOVERS", "100", "Files per flush sent by STOW-RS when their URI (1-2 files) finds no free import slot."
    ),
    Setting("HEADER_READ_BYTES", "65536", "First ranged read when sniffing a header; grows only for longer headers."),
    Setting("MAX_HEADER_BYTES", "16777216", "Largest header read before an object is reported as not DICOM."),
    Setting("LISTING_CAP", "50000", "Most objects one planner step may list; beyond it the planner stays narrower."),
    Setting("FLUSH_LEASE_SECONDS", "120", "Ack deadline the flush keeps extending on the records it holds."),
    Setting("HEALTHCARE_API_ENDPOINT", "", "Override of https://healthcare.googleapis.com (the local emulator)."),
    Setting("API_RETRY_ATTEMPTS", "6", "Attempts for a Healthcare API call answered 429/5xx or timing out."),
    Setting(
        "EXPORT_TARGETS", "", "JSON list of exports fired for every imported batch (see Export targets); empty = none."
    ),
    Setting("MAX_ATTEMPTS", "3", "Imports tried per file before it goes to dicom-failed."),
    Setting("OPERATION_MAX_AGE_SECONDS", "21600", "An operation still running after this long is reported stuck."),
    Setting("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR."),
)
KNOWN_SETTINGS = frozenset(setting.env for setting in SETTINGS_TABLE)


@dataclass(frozen=True)
class Settings:
    project_id: str
    location: str
    dataset: str
    dicom_store: str
    source_buckets: tuple[str, ...]
    state_bucket: str
    state_prefix: str = "dicomflow/"
    dicom_suffixes: tuple[str, ...] = (".dcm",)
    sniff_extensionless: bool = True
    exclude_prefixes: tuple[str, ...] = ()
    pending_topic: str = "dicom-pending"
    pending_subscription: str = "dicom-pending-flush"
    operations_topic: str = "dicom-operations"
    failed_topic: str = "dicom-failed"
    results_topic: str = "dicom-results"
    settle_seconds: float = 30.0
    max_wait_seconds: float = 600.0
    max_batch_files: int = 10000
    max_concurrent_operations: int = 5
    blob_storage_class: str | None = None
    stow_leftovers: int = 100
    header_read_bytes: int = 65536
    max_header_bytes: int = 16 * 1024 * 1024
    listing_cap: int = 50000
    flush_lease_seconds: int = 120
    healthcare_api_endpoint: str | None = None
    api_retry_attempts: int = 6
    export_targets: tuple[ExportTarget, ...] = ()
    max_attempts: int = 3
    operation_max_age_seconds: float = 21600.0
    log_level: str = "INFO"

    @property
    def dataset_name(self) -> str:
        return f"projects/{self.project_id}/locations/{self.location}/datasets/{self.dataset}"

    @property
    def store_name(self) -> str:
        return f"{self.dataset_name}/dicomStores/{self.dicom_store}"

    def excluded(self, bucket: str, name: str) -> bool:
        """True for objects the pipeline must never import: configured exclusions and its own state."""
        if bucket == self.state_bucket and name.startswith(self.state_prefix):
            return True
        if any(name.startswith(prefix) for prefix in self.exclude_prefixes):
            return True
        for target in self.export_targets:  # never import our own exports (no loops)
            location = target.gcs_bucket_and_prefix
            if location and location[0] == bucket and name.startswith(location[1]):
                return True
        return False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build and validate from an environment mapping; ConfigurationError lists every problem at once."""
        problems: list[str] = []
        values: dict[str, Any] = {}

        def read(name: str, parse: Callable[[str], Any], attribute: str | None = None) -> None:
            setting = next(s for s in SETTINGS_TABLE if s.env == name)
            raw = env.get(name, "").strip()
            if not raw:
                if setting.default is None:
                    problems.append(f"{name} is required: {setting.description}")
                    return
                raw = setting.default
            try:
                values[attribute or name.lower()] = parse(raw)
            except ValueError as exc:
                problems.append(f"{name}={raw!r}: {exc}")

        read("PROJECT_ID", _pattern(re.compile(r"^[a-z][a-z0-9\-:.]{2,62}$"), "a project id"))
        read("LOCATION", _pattern(re.compile(r"^[a-z0-9\-]{2,63}$"), "a location such as us-central1"))
        read("DATASET", _pattern(_ID, "1-256 letters, digits, '_', '-' or '.'"))
        read("DICOM_STORE", _pattern(_ID, "1-256 letters, digits, '_', '-' or '.'"))
        read("SOURCE_BUCKETS", _list(_pattern(_BUCKET, "bucket names"), allow_empty=False))
        read("STATE_BUCKET", _pattern(_BUCKET, "a bucket name"))
        read("STATE_PREFIX", _prefix)
        read("DICOM_SUFFIXES", _list(lambda s: s.lower(), allow_empty=False))
        read("SNIFF_EXTENSIONLESS", _bool)
        read("EXCLUDE_PREFIXES", _list(str))
        for topic in ("PENDING_TOPIC", "PENDING_SUBSCRIPTION", "OPERATIONS_TOPIC", "FAILED_TOPIC", "RESULTS_TOPIC"):
            read(topic, _pattern(_TOPIC, "a Pub/Sub resource id (3-255 characters, starting with a letter)"))
        read("SETTLE_SECONDS", _number(float, minimum=0))
        read("MAX_WAIT_SECONDS", _number(float, minimum=0))
        read("MAX_BATCH_FILES", _number(int, minimum=1, maximum=1_000_000))
        read("MAX_CONCURRENT_OPERATIONS", _number(int, minimum=1, maximum=100))
        read("BLOB_STORAGE_CLASS", _storage_class)
        read("STOW_LEFTOVERS", _number(int, minimum=0, maximum=10000))
        read("HEADER_READ_BYTES", _number(int, minimum=1024))
        read("MAX_HEADER_BYTES", _number(int, minimum=1024))
        read("LISTING_CAP", _number(int, minimum=100))
        read("FLUSH_LEASE_SECONDS", _number(int, minimum=10, maximum=600))
        read("HEALTHCARE_API_ENDPOINT", _endpoint)
        read("API_RETRY_ATTEMPTS", _number(int, minimum=1, maximum=20))
        read("EXPORT_TARGETS", parse_export_targets)
        read("MAX_ATTEMPTS", _number(int, minimum=1, maximum=100))
        read("OPERATION_MAX_AGE_SECONDS", _number(float, minimum=0))
        read("LOG_LEVEL", _log_level)
        if not problems and values["max_wait_seconds"] < values["settle_seconds"]:
            problems.append("MAX_WAIT_SECONDS must be at least SETTLE_SECONDS")
        if not problems and values["max_header_bytes"] < values["header_read_bytes"]:
            problems.append("MAX_HEADER_BYTES must be at least HEADER_READ_BYTES")
        for target in values.get("export_targets", ()) if not problems else ():
            location = target.gcs_bucket_and_prefix
            if location and location[0] in values["source_buckets"] and not location[1].strip("/"):
                problems.append(f"EXPORT_TARGETS: target {target.name!r} writes to the root of source bucket "
                                f"{location[0]}; give it a prefix so exports are not taken for uploads")  # fmt: skip
        if problems:
            raise ConfigurationError("invalid configuration:\n  - " + "\n  - ".join(problems))
        return cls(**values)


def _pattern(regex: re.Pattern[str], expected: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not regex.match(raw):
            raise ValueError(f"expected {expected}")
        return raw

    return parse


def _list(item: Callable[[str], Any], *, allow_empty: bool = True) -> Callable[[str], tuple[Any, ...]]:
    def parse(raw: str) -> tuple[Any, ...]:
        items = tuple(item(part.strip()) for part in raw.split(",") if part.strip())
        if not items and not allow_empty:
            raise ValueError("expected at least one value")
        return items

    return parse


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _number(kind: Callable[[str], Any], *, minimum: float, maximum: float | None = None) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"expected a number (at least {minimum:g})") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else f"at least {minimum:g}"
            raise ValueError(f"expected a value {bound}")
        return value

    return parse


def _prefix(raw: str) -> str:
    if raw.startswith("/"):
        raise ValueError("must not start with '/'")
    return raw if raw.endswith("/") else raw + "/"


def _storage_class(raw: str) -> str | None:
    if raw in ("", "-"):
        return None
    if raw.upper() not in _STORAGE_CLASSES:
        raise ValueError(f"expected one of {', '.join(_STORAGE_CLASSES)}")
    return raw.upper()


def _endpoint(raw: str) -> str | None:
    if raw in ("", "-"):
        return None
    if not re.match(r"^https?://[^/\s]+/?$", raw):
        raise ValueError("expected a base URL such as http://127.0.0.1:8089")
    return raw.rstrip("/")


def _log_level(raw: str) -> str:
    if raw.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
    return raw.upper()
