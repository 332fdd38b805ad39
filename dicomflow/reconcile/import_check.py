"""Reconcile one finished import: every file of it checked against the store by its UIDs; what is missing is
settled as deleted when its source generation is gone, else re-driven (attempt + 1) or, after the last
attempt, reported failed with the operation's reason; a file refused for other content is a conflict (what
becomes of it is ``conflicts``' job). Messages always name the source object."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dicomflow.dicom.content import same_content
from dicomflow.errors import ObjectGoneError
from dicomflow.ledger.manifest import Manifest, ManifestFile
from dicomflow.messages import lro
from dicomflow.messages.records import FailedFile, PendingRecord, Stage
from dicomflow.pool import bounded
from dicomflow.ports import HealthcareApi
from dicomflow.reconcile.conflicts import Conflict

InstanceKey = tuple[str, str, str]
_INTERRUPTED_CODES = (4, 10, 14)  # google.rpc.Code DEADLINE_EXCEEDED, ABORTED, UNAVAILABLE: ended, not counted


@dataclass
class Reconciled:
    """The files of one import: how many are present, which to re-drive, which failed for good, which conflict."""

    present: int = 0
    redrive: list[PendingRecord] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)


def present_instances(healthcare: HealthcareApi, records: Iterable[PendingRecord]) -> set[InstanceKey]:
    """The (study, series, SOP) UIDs of ``records`` that the store holds (``stored_instances`` of their series)."""
    wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in records:
        wanted[(record.study_uid, record.series_uid)].add(record.sop_uid)
    stored = stored_instances(healthcare, wanted)
    return {(study, series, sop) for (study, series), sops in wanted.items() for sop in sops & stored[(study, series)]}


def stored_instances(healthcare: HealthcareApi, series: Iterable[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
    """The SOP Instance UIDs the store holds in each (study, series), at the coarsest level that answers in fewer
    calls: one study-level instance query for a study with several of these series (one call up to 50,000 of its
    instances), a series-level query for a study with one; the queries run concurrently on the bounded pool."""
    by_study: dict[str, set[str]] = defaultdict(set)
    for study, one in series:
        by_study[study].add(one)

    def query(study: str) -> dict[tuple[str, str], set[str]]:
        members = by_study[study]
        if len(members) == 1:
            [only] = members
            return {(study, only): healthcare.series_instances(study, only)}
        found: dict[tuple[str, str], set[str]] = {(study, one): set() for one in members}
        for one, sop in healthcare.study_instances(study):
            if one in members:
                found[(study, one)].add(sop)
        return found

    stored: dict[tuple[str, str], set[str]] = {}
    for answer in bounded(query, sorted(by_study)):
        stored.update(answer)
    return stored


@dataclass(frozen=True)
class Sources:
    """What reconcile asks about a file's source object: does its generation still exist, what are its bytes."""

    exists: Callable[[PendingRecord], bool]
    read: Callable[[PendingRecord], bytes]


def reconcile_import(
    manifest: Manifest,
    operation_name: str,
    operation: Mapping[str, Any],
    healthcare: HealthcareApi,
    max_attempts: int,
    sources: Sources,
    logged: Callable[[], Mapping[str, str]] = dict,
) -> Reconciled:
    """What became of each file that ``operation_name`` was to import. A missing file whose source generation
    is gone is settled at once (stage ``deleted``); the other missing ones are re-driven or reported. A file
    whose UIDs are in the store although the import failed it holds other content than the stored instance: a
    conflict (``outcome.conflicts``), never counted as imported. A reported file's reason is the one Cloud
    Logging holds for it (``logged()``, called once, at the first file that needs a reason), else its sample
    error, else the operation's summary."""
    entry = manifest.import_of(operation_name)
    files = manifest.files_via(entry.uri) if entry else []
    present = present_instances(healthcare, (f.record for f in files))
    reasons = _Reasons(lro.sample_errors(operation), logged)
    in_store = [f for f in files if _uids(f.record) in present]
    conflicts = _conflicts(in_store, len(files) - len(in_store), operation, reasons, healthcare, sources)
    outcome = Reconciled()
    for file in files:
        record = file.record
        if file in conflicts:
            why = reasons.get(file.imported_from) or "the import failed it"
            sibling = _sibling_stored(file, conflicts[file], manifest.files, sources)
            outcome.conflicts.append(Conflict(file, why, sibling))
        elif _uids(record) in present:
            outcome.present += 1
        elif not sources.exists(record):
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


def _conflicts(
    in_store: list[ManifestFile],
    missing: int,
    operation: Mapping[str, Any],
    reasons: _Reasons,
    healthcare: HealthcareApi,
    sources: Sources,
) -> dict[ManifestFile, bytes]:
    """Files whose UIDs are in the store but whose content is not the stored instance's (with those bytes).

    The import counts a file it refused as a failure; a refused file whose UIDs are in the store was refused
    for other content (the API ignores an identical duplicate, counting it a success). So only when the
    operation failed more files than are missing is any file compared: its stored instance (WADO-RS) against
    its source, data set by data set, those the operation's sample errors name first, until the surplus is
    found. An import without failures costs nothing here. An import that ended with an error before its counter
    accounted for every file (ABORTED by a restart of the API) says nothing of which it refused: every file is
    compared."""
    surplus = len(in_store) if _uncounted(operation, len(in_store) + missing) else lro.failures(operation) - missing
    if surplus <= 0:
        return {}
    ordered = sorted(in_store, key=lambda f: f.imported_from not in reasons)
    found: dict[ManifestFile, bytes] = {}
    for file in ordered:
        record = file.record
        stored = healthcare.retrieve_instance(record.study_uid, record.series_uid, record.sop_uid)
        if not same_content(stored, sources.read(record)):
            found[file] = stored
            if len(found) >= surplus:
                break
    return found


class _Reasons:
    """Per-file reasons by gs:// URI: Cloud Logging's, read at the first need, over the sample errors."""

    def __init__(self, samples: Mapping[str, str], logged: Callable[[], Mapping[str, str]]) -> None:
        self._samples, self._logged = samples, logged
        self._known: dict[str, str] | None = None

    def get(self, uri: str) -> str | None:
        if self._known is None:
            self._known = {**self._samples, **self._logged()}
        return self._known.get(uri)

    def __contains__(self, uri: str) -> bool:
        return self.get(uri) is not None


def _sibling_stored(file: ManifestFile, stored: bytes, batch: Iterable[ManifestFile], sources: Sources) -> bool:
    """Whether the stored instance is another file of the batch with the same UIDs (read only when there is one)."""
    for other in batch:
        if other.record.key == file.record.key or _uids(other.record) != _uids(file.record):
            continue
        try:
            if same_content(stored, sources.read(other.record)):
                return True
        except ObjectGoneError:
            continue
    return False


def _uncounted(operation: Mapping[str, Any], files: int) -> bool:
    """Whether the import was interrupted (not failed by its files) before its counter accounted for every file."""
    counted = lro.counted(operation, "success") + lro.counted(operation, "failure")
    error = operation.get("error")
    return isinstance(error, Mapping) and error.get("code") in _INTERRUPTED_CODES and counted < files


def _uids(record: PendingRecord) -> InstanceKey:
    return (record.study_uid, record.series_uid, record.sop_uid)
