"""What the follow-up's steps share: the context one batch is followed up in (``FollowContext``: its settings,
ports and ledger) and what one watch message led to (``FollowResult`` and its ``FollowState``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from dicomflow.config.settings import Settings
from dicomflow.ledger.manifest import ImportMarker, Manifest
from dicomflow.ledger.store import BatchLedger
from dicomflow.ports import HealthcareApi, ObjectStore, Publisher


class FollowState(StrEnum):
    RECONCILED = "reconciled"
    IMPORTED = "imported"
    EXPORTING = "exporting"
    EXPORTED = "exported"
    FINISHED = "finished"


@dataclass
class FollowResult:
    """What one watch message led to (for logs and tests)."""

    state: FollowState
    redriven: int = 0
    failed: int = 0
    exports_started: list[str] = field(default_factory=list)
    result_published: bool = False
    polls: int = 0  # operations.get calls this delivery made


@dataclass(frozen=True)
class FollowContext:
    """The settings, ports and ledger the steps act through; ``healthcare`` is the store of the batch's route."""

    settings: Settings
    store: ObjectStore
    healthcare: HealthcareApi
    publisher: Publisher
    now: Callable[[], datetime]
    ledger: BatchLedger

    def import_markers(self, manifest: Manifest) -> list[ImportMarker] | None:
        """Every import's marker, or None while one is not reconciled yet."""
        markers = [self.ledger.import_marker(manifest.batch_id, entry.operation) for entry in manifest.imports]
        return None if any(m is None for m in markers) else [m for m in markers if m is not None]
