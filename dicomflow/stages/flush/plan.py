"""The plan and stage steps of one flush batch: the in-place URIs of each bucket (``plan``), then copies of the
files no in-place URI takes into the batch's staging area (``Copier``): gone sources reported as deleted,
refused copies retried by later flushes and reported once they were refused MAX_ATTEMPTS times."""

from __future__ import annotations

import time
from dataclasses import dataclass

from dicomflow.batching.planner import Plan, plan_buckets
from dicomflow.batching.selection import Newest
from dicomflow.batching.staging import StagingArea, stage
from dicomflow.errors import PermanentError
from dicomflow.ledger.failures import failure_notes, report_failed
from dicomflow.ledger.manifest import FailureNote, ManifestFile
from dicomflow.messages.records import FailedFile, PendingRecord, Stage
from dicomflow.retry import RetryPolicy
from dicomflow.stages.flush.batch import Batch


def plan(batch: Batch, newest: Newest) -> list[Plan]:
    """The in-place URIs of every bucket (only whole new subtrees unless STAGING=never) and what is left."""
    plans = plan_buckets(newest.by_bucket, batch.store, staging=batch.settings.staging,
                         listing_cap=batch.settings.listing_cap)  # fmt: skip
    batch.report.listing_calls += sum(p.listing_calls for p in plans)
    batch.report.overshoot += sum(p.overshoot for p in plans)
    return plans


@dataclass
class Copier:
    """The batch's copies into its staging area."""

    batch: Batch
    area: StagingArea
    staged_names: int = 0  # staging names used so far (each copy gets its own)

    def stage(self, records: list[PendingRecord]) -> list[ManifestFile]:
        """Copy ``records`` into the batch's staging area; gone sources are settled, failed copies wait."""
        if not records:
            return []
        batch, report = self.batch, self.batch.report
        began = time.monotonic()
        staged = stage(batch.store, self.area, records, RetryPolicy(attempts=batch.settings.api_retry_attempts),
                       first_index=self.staged_names)  # fmt: skip
        self.staged_names += len(records)
        report.stage_seconds = round(report.stage_seconds + time.monotonic() - began, 3)
        report.copies += len(staged.copies)
        batch.wait([r.key for r in staged.failed])
        for record in staged.gone:
            self._fail(record, f"generation {record.generation} was deleted or replaced before it could be imported")
        batch.held.done([r.key for r in staged.gone])
        self._refused(staged.refused)
        return [ManifestFile(r, self.area.import_uri, uri) for r, uri in staged.copies.items()]

    def _refused(self, refused: dict[PendingRecord, PermanentError]) -> None:
        """Copies refused for good (403, 400) wait for a later flush until refused MAX_ATTEMPTS times, then the
        file is reported on dicom-failed (stage staging) with the API's reason, once: a failure note already
        written for it (a crash before the ack) settles it without a second report."""
        batch = self.batch
        notes = failure_notes(batch.settings, batch.store)
        for record, error in refused.items():
            attempts = batch.ledger.note_refusal(record)
            if attempts < batch.settings.max_attempts:
                batch.wait([record.key])
                continue
            noted = notes.read(record.bucket, record.name, record.generation)
            if noted is None or noted.stage != Stage.STAGING:
                self._fail(record, f"copy into staging refused {attempts} times: {error}", Stage.STAGING)
            batch.held.done([record.key])
            batch.ledger.clear_refusal(record)

    def _fail(self, record: PendingRecord, reason: str, stage: Stage = Stage.DELETED) -> None:
        batch = self.batch
        failed = FailedFile(record.bucket, record.name, record.generation, reason, stage, record.attempt,
                            batch.report.batch_id)  # fmt: skip
        report_failed([failed], batch.settings, batch.publisher, batch.store)
        batch.failures.append(FailureNote.of(failed))
        batch.report.failed += 1
