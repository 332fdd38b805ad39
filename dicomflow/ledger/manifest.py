"""A batch's typed records, each with one JSON form and a version: the manifest (its files and the imports that
cover them), the import, export and result markers, the failure note, and the claim on a one-shot effect.
``dicomflow.ledger.store`` reads and writes them in the state bucket."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from dicomflow import parsing
from dicomflow.errors import MalformedEventError
from dicomflow.messages.records import BATCH_ID, FailedFile, PendingRecord
from dicomflow.parsing import guarded

LEDGER_VERSION = 1


class ExportStatus(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    DONE = "done"


class ExportOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STUCK = "stuck"
    SKIPPED = "skipped"


class ResultStatus(StrEnum):
    PUBLISHING = "publishing"
    PUBLISHED = "published"


@dataclass(frozen=True)
class ManifestFile:
    """One file of a batch (its source record) and how it travels: the import URI that covers it, and the
    staged copy that import reads when the file was staged."""

    record: PendingRecord
    via: str
    staged: str | None = None

    @property
    def imported_from(self) -> str:
        """The gs:// URI the import reads for this file (what its per-file errors name)."""
        return self.staged or f"gs://{self.record.bucket}/{self.record.name}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.record.to_dict(), "via": self.via, "staged": self.staged}

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> ManifestFile:
        what = "manifest file"
        with guarded(what):
            body = parsing.obj(body, what)
            return cls(PendingRecord.from_dict(body), parsing.text(body, "via", what, max_chars=2048),
                       parsing.optional_text(body, "staged", what, max_chars=2048))  # fmt: skip


@dataclass(frozen=True)
class FailureNote:
    """A file of the batch reported on dicom-failed: which source object, at which stage, why."""

    bucket: str
    name: str
    stage: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "name": self.name, "stage": self.stage, "reason": self.reason}

    @classmethod
    def of(cls, failed: FailedFile) -> FailureNote:
        return cls(failed.bucket, failed.name, str(failed.stage), failed.reason)

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> FailureNote:
        what = "failure note"
        with guarded(what):
            body = parsing.obj(body, what)
            return cls(parsing.text(body, "bucket", what, max_chars=256), parsing.text(body, "name", what),
                       parsing.text(body, "stage", what, max_chars=32), parsing.text(body, "reason", what))  # fmt: skip


@dataclass(frozen=True)
class ImportEntry:
    """One import operation of a batch."""

    uri: str
    operation: str
    files: int

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "operation": self.operation, "files": self.files}

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> ImportEntry:
        what = "manifest import"
        with guarded(what):
            body = parsing.obj(body, what)
            return cls(parsing.text(body, "uri", what, max_chars=2048),
                       parsing.text(body, "operation", what, max_chars=1100),
                       parsing.integer(body, "files", what, minimum=0, maximum=10**9, default=0))  # fmt: skip


@dataclass(frozen=True)
class Manifest:
    """What one flush decided for one batch. ``skipped``: the DICOMDIRs of its file-sets (gs:// URIs), never
    imported and not among ``files``."""

    batch_id: str
    created: str
    store: str
    imports: tuple[ImportEntry, ...]
    files: tuple[ManifestFile, ...]
    failures: tuple[FailureNote, ...] = ()
    duplicates: int = 0
    route: str = "default"
    listing_calls: int = 0
    overshoot: int = 0
    skipped: tuple[str, ...] = ()

    @property
    def failed(self) -> int:
        """Files settled on dicom-failed by flush itself (their source was gone before the copy): not in ``files``."""
        return len(self.failures)

    @property
    def taken(self) -> int:
        """Every record the batch took: the files it imports, those settled at flush, the older generations."""
        return len(self.files) + self.failed + self.duplicates

    @property
    def copies(self) -> int:
        return sum(1 for f in self.files if f.staged)

    def files_via(self, uri: str) -> list[ManifestFile]:
        return [f for f in self.files if f.via == uri]

    def import_of(self, operation: str) -> ImportEntry | None:
        return next((i for i in self.imports if i.operation == operation), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": LEDGER_VERSION,
            "batch_id": self.batch_id,
            "created": self.created,
            "store": self.store,
            "route": self.route,
            "imports": [i.to_dict() for i in self.imports],
            "files": [f.to_dict() for f in self.files],
            "failures": [f.to_dict() for f in self.failures],
            "counts": {
                "files": len(self.files),
                "imports": len(self.imports),
                "copies": self.copies,
                "failed": self.failed,
                "skipped": len(self.skipped),
            },
            "duplicates": self.duplicates,
            "skipped": list(self.skipped),
            "planner": {"listing_calls": self.listing_calls, "overshoot": self.overshoot},
        }

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> Manifest:
        what = "manifest"
        with guarded(what):
            body = parsing.obj(body, what)
            check_version(body, what)
            planner = parsing.obj(body.get("planner", {}), "manifest planner")
            count = {"minimum": 0, "maximum": 10**9, "default": 0}
            return cls(
                batch_id=parsing.text(body, "batch_id", what, max_chars=128, pattern=BATCH_ID),
                created=parsing.text(body, "created", what, max_chars=64),
                store=parsing.text(body, "store", what, max_chars=1024),
                imports=tuple(ImportEntry.from_dict(i) for i in parsing.items(body, "imports", what)),
                files=tuple(ManifestFile.from_dict(f) for f in parsing.items(body, "files", what)),
                failures=tuple(FailureNote.from_dict(f) for f in parsing.items(body, "failures", what)),
                duplicates=parsing.integer(body, "duplicates", what, **count),
                route=parsing.optional_text(body, "route", what, max_chars=256) or "default",
                listing_calls=parsing.integer(planner, "listing_calls", what, **count),
                overshoot=parsing.integer(planner, "overshoot", what, **count),
                skipped=tuple(
                    parsing.text({"skipped": s}, "skipped", what) for s in parsing.items(body, "skipped", what)
                ),
            )


@dataclass(frozen=True)
class ImportMarker:
    """An import of the batch was reconciled: what the operation said and what reconcile did."""

    operation: str
    finished: str
    counter: Mapping[str, Any] = field(default_factory=dict)
    error: Mapping[str, Any] | None = None
    stuck: bool = False
    redriven: int = 0
    failures: tuple[FailureNote, ...] = ()

    @property
    def failed(self) -> int:
        return len(self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {"version": LEDGER_VERSION, "operation": self.operation, "finished": self.finished,
                "counter": dict(self.counter), "error": self.error, "stuck": self.stuck,
                "redriven": self.redriven, "failed": self.failed,
                "failures": [f.to_dict() for f in self.failures]}  # fmt: skip

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> ImportMarker:
        what = "import marker"
        with guarded(what):
            body = parsing.obj(body, what)
            error = body.get("error")
            return cls(
                parsing.text(body, "operation", what, max_chars=1100),
                parsing.optional_text(body, "finished", what, max_chars=64) or "",
                dict(parsing.obj(body.get("counter") or {}, "import marker counter")),
                None if error is None else parsing.obj(error, "import marker error"), parsing.flag(body, "stuck"),
                parsing.integer(body, "redriven", what, minimum=0, maximum=10**9, default=0),
                tuple(FailureNote.from_dict(f) for f in parsing.items(body, "failures", what)),
            )  # fmt: skip


@dataclass(frozen=True)
class ExportMarker:
    """One export target of the batch: claimed, running, or done with an outcome."""

    target: str
    status: ExportStatus
    claimed: str | None = None
    operation: str | None = None
    started: str | None = None
    finished: str | None = None
    outcome: ExportOutcome | None = None
    counter: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None
    attempts: int = 1  # export operations started for this target (an interrupted one is started again)
    failed_instances: tuple[Mapping[str, str], ...] = ()  # de-id: {"instance": /studies/..., "reason"}, bounded

    def done(self, outcome: ExportOutcome, finished: str, reason: str | None = None, **extra: Any) -> ExportMarker:
        return replace(self, status=ExportStatus.DONE, outcome=outcome, finished=finished, reason=reason, **extra)

    def to_dict(self) -> dict[str, Any]:
        return {"version": LEDGER_VERSION, "target": self.target, "status": self.status, "claimed": self.claimed,
                "operation": self.operation, "started": self.started, "finished": self.finished,
                "outcome": self.outcome, "counter": dict(self.counter), "reason": self.reason,
                "attempts": self.attempts, "failed_instances": [dict(f) for f in self.failed_instances]}  # fmt: skip

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> ExportMarker:
        what = "export marker"
        with guarded(what):
            body = parsing.obj(body, what)
            outcome = parsing.optional_text(body, "outcome", what, max_chars=32)
            return cls(
                parsing.text(body, "target", what, max_chars=256),
                ExportStatus(parsing.text(body, "status", what, max_chars=32)),
                parsing.optional_text(body, "claimed", what, max_chars=64),
                parsing.optional_text(body, "operation", what, max_chars=1100),
                parsing.optional_text(body, "started", what, max_chars=64),
                parsing.optional_text(body, "finished", what, max_chars=64),
                ExportOutcome(outcome) if outcome else None,
                dict(parsing.obj(body.get("counter") or {}, "export marker counter")),
                parsing.optional_text(body, "reason", what),
                parsing.integer(body, "attempts", what, minimum=1, maximum=1000, default=1),
                _failed_instances(body.get("failed_instances") or []),
            )  # fmt: skip


def _failed_instances(items: Any) -> tuple[Mapping[str, str], ...]:
    what = "export marker failed_instances"
    if not isinstance(items, list):
        raise MalformedEventError(f"{what} must be a list")
    return tuple(
        {"instance": parsing.text(parsing.obj(i, what), "instance", what, max_chars=400),
         "reason": parsing.text(i, "reason", what, max_chars=1000)}
        for i in items
    )  # fmt: skip


@dataclass(frozen=True)
class ResultMarker:
    """The batch's result: being published (claimed at a time), or published (with the summary)."""

    status: ResultStatus
    claimed: str | None = None
    summary: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**(self.summary or {}), "status": self.status, "claimed": self.claimed}

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> ResultMarker:
        what = "result marker"
        with guarded(what):
            body = parsing.obj(body, what)
            status = ResultStatus(parsing.text(body, "status", what, max_chars=32))
            summary = {k: v for k, v in body.items() if k not in ("status", "claimed")} or None
            return cls(status, parsing.optional_text(body, "claimed", what, max_chars=64), summary)


@dataclass(frozen=True)
class Claim:
    """The right to perform one effect: the generation of our claim marker, for the completing write."""

    batch_id: str
    path: str
    generation: int


def check_version(body: Mapping[str, Any], what: str) -> None:
    """Refuse a state object of another schema version than this code writes."""
    version = body.get("version", LEDGER_VERSION)
    if version != LEDGER_VERSION:
        raise MalformedEventError(f"{what} has unsupported version {version!r}")
