"""Staged copies: files that no in-place URI can take are copied, server-side and pinned to the record's
generation, into ``gs://STATE_BUCKET/{STATE_PREFIX}staging/{BATCH_ID}/`` under names the pipeline chooses, so
one ``staging/{BATCH_ID}/**`` import covers them all, whatever the upload layout. Copies run on a bounded pool
with the Healthcare API's retry policy; they are deleted once their import is reconciled (a lifecycle rule
on the prefix is the backstop).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dicomflow.errors import ObjectGoneError, PermanentError, RetryableError
from dicomflow.logs import fields
from dicomflow.messages.records import PendingRecord
from dicomflow.pool import bounded
from dicomflow.ports import ObjectStore
from dicomflow.retry import RetryPolicy, call_with_retry

log = logging.getLogger(__name__)
# Copies (and their deletes) in flight at once. Each rewrite waits on Cloud Storage (tens of milliseconds even
# as a metadata operation), so the pool, not this process, bounds staging: 64 at a time copy 100,000 files in
# ~80 s at 50 ms a rewrite (16 took ~5 min). That is ~1,300 writes/s, above a new bucket's initial capacity of
# ~1,000 object writes/s (Cloud Storage's request-rate guidelines): until the bucket autoscales, the excess is
# answered 429/503 and retried with backoff (the copy's retry policy). The threads wait on sockets; their
# memory is printed by bench/staging.py.
COPY_WORKERS = 64


@dataclass(frozen=True)
class StagingArea:
    """Where one batch's copies go."""

    bucket: str
    prefix: str  # ends with '/'

    @classmethod
    def of(cls, bucket: str, state_prefix: str, batch_id: str) -> StagingArea:
        return cls(bucket, f"{state_prefix}staging/{batch_id}/")

    @property
    def import_uri(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}**"

    def name(self, index: int) -> str:
        return f"{self.prefix}{index:06d}.dcm"


@dataclass
class Staged:
    """What copying a batch's files did: the staged URI of each copied record, the records whose source
    generation is gone, the records a transient copy failure gives back for a later flush, and those whose copy
    was refused for good (403, 400: reported once refused MAX_ATTEMPTS times)."""

    copies: dict[PendingRecord, str] = field(default_factory=dict)
    gone: list[PendingRecord] = field(default_factory=list)
    failed: list[PendingRecord] = field(default_factory=list)
    refused: dict[PendingRecord, PermanentError] = field(default_factory=dict)


def stage(
    store: ObjectStore, area: StagingArea, records: Sequence[PendingRecord], retry: RetryPolicy, *, first_index: int = 0
) -> Staged:
    """Copy ``records`` into ``area`` (names numbered from ``first_index``), concurrently."""

    def copy(item: tuple[int, PendingRecord]) -> tuple[PendingRecord, str | None, Exception | None]:
        index, record = item
        target = area.name(index)
        try:
            call_with_retry(
                f"copying gs://{record.bucket}/{record.name}",
                lambda: store.copy(record.bucket, record.name, record.generation, area.bucket, target),
                retry,
            )
        except (RetryableError, PermanentError) as exc:
            return record, None, exc
        return record, f"gs://{area.bucket}/{target}", None

    staged = Staged()
    for record, uri, error in bounded(copy, enumerate(records, start=first_index), workers=COPY_WORKERS):
        if uri is not None:
            staged.copies[record] = uri
        elif isinstance(error, ObjectGoneError):
            staged.gone.append(record)
        elif isinstance(error, PermanentError):
            staged.refused[record] = error
            log.error("copy into staging refused", extra=fields(object=record.name, status=error.status,
                                                                 error=str(error)))  # fmt: skip
        else:
            staged.failed.append(record)
            log.warning("copy into staging failed; the file waits", extra=fields(object=record.name, error=str(error)))
    return staged


def delete_copies(store: ObjectStore, uris: Iterable[str]) -> int:
    """Delete staged copies (idempotent: what is already gone is not an error); return how many existed."""

    def delete(uri: str) -> bool:
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        return store.delete(bucket, name)

    return sum(1 for existed in bounded(delete, list(uris), workers=COPY_WORKERS) if existed)
