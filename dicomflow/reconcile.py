"""Reconcile one finished import: every file of it checked against the store by its UIDs; what is missing is
settled as deleted when its source generation is gone, else re-driven (attempt + 1) or, after the last
attempt, reported failed with the operation's reason. Messages always name the source object."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dicomflow import lro
from dicomflow.ledger import Manifest
from dicomflow.ports import HealthcareApi
from dicomflow.records import FailedFile, PendingRecord, Stage

InstanceKey = tuple[str, str, str]


@dataclass
class Reconciled:
    """The files of one import: how many are present, which to re-drive, which failed for good."""

    present: int = 0
    redrive: list[PendingRecord] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)


def present_instances(healthcare: HealthcareApi, records: Iterable[PendingRecord]) -> set[InstanceKey]:
    """The (study, series, SOP) UIDs of ``records`` that the store holds: one QIDO-RS query per series."""
    by_series: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in records:
        by_series[(record.study_uid, record.series_uid)].add(record.sop_uid)
    present: set[InstanceKey] = set()
    for (study, series), wanted in by_series.items():
        stored = healthcare.series_instances(study, series)
        present.update((study, series, sop) for sop in wanted & stored)
    return present


def reconcile_import(
    manifest: Manifest,
    operation_name: str,
    operation: Mapping[str, Any],
    healthcare: HealthcareApi,
    max_attempts: int,
    exists: Callable[[PendingRecord], bool],
) -> Reconciled:
    """What became of each file that ``operation_name`` was to import. A missing file whose source generation
    no longer ``exists`` is settled at once (stage ``deleted``); the others are re-driven or reported."""
    entry = manifest.import_of(operation_name)
    files = manifest.files_via(entry.uri) if entry else []
    present = present_instances(healthcare, (f.record for f in files))
    reasons = lro.sample_errors(operation)
    outcome = Reconciled()
    for file in files:
        record = file.record
        if (record.study_uid, record.series_uid, record.sop_uid) in present:
            outcome.present += 1
        elif not exists(record):
            outcome.failed.append(FailedFile(
                record.bucket, record.name, record.generation,
                f"generation {record.generation} was deleted or replaced before it was imported; not retried",
                Stage.DELETED, record.attempt, manifest.batch_id,
            ))  # fmt: skip
        elif record.attempt < max_attempts:
            outcome.redrive.append(replace(record, attempt=record.attempt + 1))
        else:
            why = reasons.get(file.imported_from) or lro.reason(operation)
            outcome.failed.append(FailedFile(
                record.bucket, record.name, record.generation,
                f"not in the store after {record.attempt} attempt(s): {why}", Stage.RECONCILE, record.attempt,
                manifest.batch_id,
            ))  # fmt: skip
    return outcome
