"""``dicomStores.import``: copy every object a gcsSource URI matches into a store, as an operation job."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from healthcare_emulator.gcs import GcsClient, StorageError, StorageNotFoundError
from healthcare_emulator.instances import InvalidInstanceError, ParsedInstance, parse_instance
from healthcare_emulator.operations import Job, OperationContext, OperationFailedError
from healthcare_emulator.repository import Repository, StoreOutcome
from healthcare_emulator.wildcard import ImportPattern

_READ_PARALLELISM = 8
_CHUNK = 64


OnStored = Callable[[ParsedInstance], None]


def store_bytes(
    repository: Repository, store: str, data: bytes, storage_class: str, on_stored: OnStored | None = None
) -> str | None:
    """Validate and store one file; return None on success (incl. identical duplicates) or the reason it failed.

    ``on_stored`` is called for an instance newly stored (not for an identical duplicate).
    """
    try:
        instance = parse_instance(data)
    except InvalidInstanceError as exc:
        return str(exc)
    outcome = repository.store_instance(store, instance, data, storage_class)
    if outcome is StoreOutcome.CONFLICT:
        return (
            "checksum mismatch: an instance with the same Study/Series/SOP Instance UIDs and different "
            "content already exists"
        )
    if outcome is StoreOutcome.STORED and on_stored is not None:
        on_stored(instance)
    return None


def import_job(
    repository: Repository,
    gcs: GcsClient,
    store: str,
    pattern: ImportPattern,
    storage_class: str,
    fails: Callable[[str], bool] = lambda name: False,
    on_stored: OnStored | None = None,
) -> Job:
    """The background work of one import operation."""

    def run(context: OperationContext) -> dict[str, Any] | None:
        names = _matching_names(gcs, pattern)
        context.set_pending(len(names))
        sizes: list[int] = []

        def one(name: str) -> tuple[str, str | None]:
            uri = f"gs://{pattern.bucket}/{name}"
            if fails(name):
                return uri, "injected import failure"
            try:
                data = gcs.read(pattern.bucket, name)
            except StorageNotFoundError:
                return uri, "object does not exist"
            except StorageError as exc:
                return uri, str(exc)
            sizes.append(len(data))
            return uri, store_bytes(repository, store, data, storage_class, on_stored)

        with ThreadPoolExecutor(max_workers=_READ_PARALLELISM, thread_name_prefix="import-read") as pool:
            for start in range(0, len(names), _CHUNK):
                if context.cancel_requested:
                    raise OperationFailedError("CANCELLED", "operation cancelled by request")
                for uri, failure in pool.map(one, names[start : start + _CHUNK]):
                    if failure is None:
                        context.record_success()
                    else:
                        context.record_failure(uri, failure)
        context.size = sum(sizes)
        return None

    return run


def _matching_names(gcs: GcsClient, pattern: ImportPattern) -> list[str]:
    if not pattern.has_wildcards:
        return [pattern.pattern]
    try:
        names = [
            info.name
            for info in gcs.list_objects(pattern.bucket, pattern.literal_prefix)
            if not info.name.endswith("/") and pattern.matches(info.name)
        ]
    except StorageNotFoundError as exc:
        raise OperationFailedError("NOT_FOUND", str(exc)) from exc
    except StorageError as exc:
        raise OperationFailedError("UNAVAILABLE", str(exc)) from exc
    if not names:
        raise OperationFailedError("NOT_FOUND", f"no objects match {pattern.uri}")
    return names
