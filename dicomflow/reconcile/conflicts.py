"""What becomes of a content conflict, a file whose UIDs the store holds with other content (CONFLICT_POLICY).

    report (default) -> the file goes to dicom-failed (stage ``conflict``); the stored instance stays
    replace          -> the stored instance is deleted through DICOMweb (synchronous for one instance) and the file
                        re-driven (attempt + 1, ``replaced``), so the next flush imports it; its batch counts it
                        re-driven

A file is replaced at most once: conflicting again (another file with the same UIDs was stored first) it is
reported. An instance that another file of the same batch has just stored is not replaced either (which of the
two is newer is unknown), nor one whose deletion the API refuses (the reason is reported). Each replacement is
noted in the ledger before the delete: a follow-up that dies before the re-drive went out finds the file
missing on redelivery and re-drives it, still marked replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from dicomflow.errors import PermanentError
from dicomflow.ledger.manifest import ManifestFile
from dicomflow.logs import fields
from dicomflow.messages.records import FailedFile, PendingRecord, Stage
from dicomflow.ports import HealthcareApi

log = logging.getLogger(__name__)
REPORT = "report"
REPLACE = "replace"
InstanceKey = tuple[str, str, str]


@dataclass(frozen=True)
class Conflict:
    """A file the import refused because the store holds its UIDs with other content."""

    file: ManifestFile
    why: str  # the import's per-file reason
    batch_sibling_stored: bool = False  # the stored instance is another file of the same batch (its content)


@dataclass
class Settled:
    """The conflicts of one import: re-driven after their stored instance was deleted, or reported."""

    redrive: list[PendingRecord] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)


def settle_conflicts(
    conflicts: Iterable[Conflict], policy: str, healthcare: HealthcareApi, batch_id: str,
    before_delete: Callable[[PendingRecord], None] = lambda _record: None,
) -> Settled:  # fmt: skip
    """Report every conflict, or (``replace``) delete each stored instance once and re-drive its files, calling
    ``before_delete`` first (the ledger notes the replacement, for a watch redelivered after a crash).
    A transient API failure propagates: the watch is redelivered and reconcile runs again."""
    settled = Settled()
    refusals: dict[InstanceKey, str | None] = {}  # per instance: None once deleted (or gone), else why not
    for conflict in conflicts:
        record = conflict.file.record
        if policy != REPLACE:
            settled.failed.append(_failed(conflict, batch_id))
            continue
        refusal = _refusal(conflict)
        if refusal is None:
            key = (record.study_uid, record.series_uid, record.sop_uid)
            if key not in refusals:
                before_delete(record)
                refusals[key] = _delete(healthcare, record, batch_id)
            refusal = refusals[key]
        if refusal is None:
            settled.redrive.append(replace(record, attempt=record.attempt + 1, replaced=True))
        else:
            settled.failed.append(_failed(conflict, batch_id, f"; not replaced: {refusal}"))
    return settled


def _refusal(conflict: Conflict) -> str | None:
    if conflict.file.record.replaced:
        return ("it conflicted again after the stored instance was replaced for it once (another file with these "
                "UIDs was stored first)")  # fmt: skip
    if conflict.batch_sibling_stored:
        return "the stored instance is another file of the same batch with these UIDs"
    return None


def _delete(healthcare: HealthcareApi, record: PendingRecord, batch_id: str) -> str | None:
    """Delete the stored instance; None when it is gone (deleted now, or already), else why it could not be."""
    uids = {"batch_id": batch_id, "bucket": record.bucket, "object": record.name, "generation": record.generation,
            "study_uid": record.study_uid, "series_uid": record.series_uid, "sop_uid": record.sop_uid}  # fmt: skip
    try:
        existed = healthcare.delete_instance(record.study_uid, record.series_uid, record.sop_uid)
    except PermanentError as exc:
        log.error("conflicting instance not replaced: delete refused", extra=fields(**uids, error=str(exc)))
        return f"deleting the stored instance failed: {exc}"
    log.info("conflicting instance deleted to replace it; file re-driven",
             extra=fields(**uids, already_gone=not existed))  # fmt: skip
    return None


def _failed(conflict: Conflict, batch_id: str, suffix: str = "") -> FailedFile:
    record = conflict.file.record
    reason = ("content conflict: the store already holds an instance with these Study/Series/SOP Instance UIDs "
              f"({record.sop_uid}) and other content; this file was not stored ({conflict.why}){suffix}")  # fmt: skip
    return FailedFile(record.bucket, record.name, record.generation, reason, Stage.CONFLICT, record.attempt, batch_id)
