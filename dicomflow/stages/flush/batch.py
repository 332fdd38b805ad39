"""What the steps of a flush share: the pass's ``FlushReport`` they count into, and ``Batch``, one batch's
route, services and records (what it puts back for a later flush, the files it settled as failed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dicomflow.batching.held import Held, Key
from dicomflow.config.routes import Route
from dicomflow.config.settings import Settings
from dicomflow.ledger.manifest import FailureNote
from dicomflow.ledger.store import BatchLedger
from dicomflow.ports import HealthcareApi, ObjectStore, Publisher


@dataclass
class FlushReport:
    """What one flush did; logged as one line and returned to tests and benchmarks."""

    batch_id: str | None = None  # the last batch formed (one per route with ready files)
    batch_ids: list[str] = field(default_factory=list)
    pulled: int = 0
    malformed: int = 0
    redelivered: int = 0
    duplicates: int = 0
    deferred: int = 0
    running_before: int = 0
    imports_started: int = 0
    imported_files: int = 0
    copies: int = 0
    failed: int = 0
    skipped: int = 0  # DICOMDIRs counted in this pass's batches
    listing_calls: int = 0
    overshoot: int = 0
    plan_seconds: float = 0.0
    stage_seconds: float = 0.0
    next_ready_seconds: float | None = None  # until the first folder that is still settling is ready
    manifest_uri: str | None = None
    operations: list[str] = field(default_factory=list)


@dataclass
class Batch:
    """One flush's batch for one route: the ready records of that route, as its steps plan, stage, start and
    record them."""

    settings: Settings
    held: Held
    report: FlushReport
    ledger: BatchLedger
    publisher: Publisher
    store: ObjectStore
    healthcare: HealthcareApi  # the route's store
    now: datetime
    route: Route
    failures: list[FailureNote] = field(default_factory=list)  # files of the batch settled on dicom-failed

    def wait(self, keys: list[Key]) -> None:
        """These records go back for a later flush."""
        self.held.give_back(keys)
        self.report.deferred += len(keys)
