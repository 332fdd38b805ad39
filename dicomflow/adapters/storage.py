"""ObjectStore on google-cloud-storage: ranged reads, bounded listings, small conditional writes, deletes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import storage

from dicomflow.adapters.errors import needs, translated
from dicomflow.errors import NotFoundError, ObjectGoneError, PermanentError, RetryableError
from dicomflow.parsing import MAX_STATE_BYTES, load_json
from dicomflow.ports import Listing, ObjectInfo

T = TypeVar("T")

_PAGE_SIZE = 1000
_ANSWERS = (gexc.PreconditionFailed, gexc.RequestRangeNotSatisfiable)
_HINT = needs("roles/storage.objectViewer on the source buckets and roles/storage.objectUser on the state bucket")


class GcsObjectStore:
    """ObjectStore on a google-cloud-storage client (real GCS, or fake-gcs-server via its endpoint)."""

    def __init__(self, client: storage.Client) -> None:
        self._client = client

    def _blob(self, bucket: str, name: str, generation: str | None = None) -> storage.Blob:
        return self._client.bucket(bucket).blob(name, generation=int(generation) if generation else None)

    def read_range(self, bucket: str, name: str, generation: str | None, start: int, end: int) -> bytes:
        """Bytes ``start``..``end-1`` (fewer at the end of the object; empty past it)."""
        if end <= start:
            return b""
        blob = self._blob(bucket, name, generation)
        try:
            data: bytes = _object_call(
                bucket, name, "reading", lambda: blob.download_as_bytes(start=start, end=end - 1, checksum=None)
            )
        except gexc.RequestRangeNotSatisfiable:
            return b""
        return data

    def read(self, bucket: str, name: str, generation: str | None = None) -> bytes:
        blob = self._blob(bucket, name, generation)
        data: bytes = _object_call(bucket, name, "reading", blob.download_as_bytes)
        return data

    def write_text(self, bucket: str, name: str, text: str) -> str:
        blob = self._blob(bucket, name)
        _object_call(bucket, name, "writing", lambda: blob.upload_from_string(text, content_type="text/plain"))
        return f"gs://{bucket}/{name}"

    def write_json(self, bucket: str, name: str, body: Any) -> str:
        blob = self._blob(bucket, name)
        payload = json.dumps(body, sort_keys=True, indent=1)
        _object_call(bucket, name, "writing", lambda: blob.upload_from_string(payload, content_type="application/json"))
        return f"gs://{bucket}/{name}"

    def read_json(self, bucket: str, name: str) -> tuple[Any, int] | None:
        try:
            blob = _object_call(bucket, name, "reading", lambda: self._client.bucket(bucket).get_blob(name))
            if blob is None:
                return None
            if blob.size is not None and blob.size > MAX_STATE_BYTES:
                raise PermanentError(f"gs://{bucket}/{name} is larger than {MAX_STATE_BYTES} bytes")
            data = _object_call(
                bucket, name, "reading", lambda: blob.download_as_bytes(if_generation_match=blob.generation)
            )
        except ObjectGoneError:
            return None
        except gexc.PreconditionFailed as exc:
            raise RetryableError(f"gs://{bucket}/{name} changed while being read") from exc
        return load_json(data, f"gs://{bucket}/{name}", max_bytes=MAX_STATE_BYTES), int(blob.generation)

    def put_json(self, bucket: str, name: str, body: Any, *, if_generation: int) -> int | None:
        blob = self._blob(bucket, name)
        payload = json.dumps(body, sort_keys=True, indent=1)
        try:
            _object_call(
                bucket, name, "writing",
                lambda: blob.upload_from_string(
                    payload, content_type="application/json", if_generation_match=if_generation
                ),
            )  # fmt: skip
        except gexc.PreconditionFailed:
            return None
        return int(blob.generation)

    def stat(self, bucket: str, name: str) -> ObjectInfo | None:
        blob = _object_call(bucket, name, "reading", lambda: self._client.bucket(bucket).get_blob(name))
        return None if blob is None else _info(bucket, blob)

    def iterate(self, bucket: str, prefix: str, *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Pages of 1,000, resuming at ``start_after`` (``startOffset`` is inclusive: that name is skipped)."""
        pages = _listed(bucket, prefix, lambda: self._client.list_blobs(
            bucket, prefix=prefix or None, start_offset=start_after, page_size=_PAGE_SIZE).pages)  # fmt: skip
        while True:
            page = _listed(bucket, prefix, lambda: next(pages, None))
            if page is None:
                return
            for blob in page:
                if blob.name != start_after and not blob.name.endswith("/"):
                    yield _info(bucket, blob)

    def delete(self, bucket: str, name: str) -> bool:
        try:
            _object_call(bucket, name, "deleting", lambda: self._blob(bucket, name).delete())
        except ObjectGoneError:
            return False
        return True

    def copy(self, bucket: str, name: str, generation: str, to_bucket: str, to_name: str) -> None:
        """``objects.rewrite`` pinned to ``sourceGeneration``: a metadata operation within one location and
        storage class; otherwise it takes several calls, each resuming with the previous call's token."""
        source = self._blob(bucket, name, generation)
        target = self._blob(to_bucket, to_name)

        def run() -> None:
            token, _, _ = target.rewrite(source)
            while token is not None:
                token, _, _ = target.rewrite(source, token=token)

        _object_call(bucket, name, "copying", run)

    def list_objects(self, bucket: str, prefix: str, *, recursive: bool, limit: int) -> Listing:
        """Up to ``limit`` names under ``prefix`` (direct children only unless ``recursive``), client-side
        filtered: fake-gcs-server ignores ``match_glob``, and a delimiter keeps non-recursive listings small."""

        def run() -> Listing:
            iterator = self._client.list_blobs(
                bucket, prefix=prefix or None, delimiter=None if recursive else "/", page_size=_PAGE_SIZE,
                fields="items(name),nextPageToken,prefixes",
            )  # fmt: skip
            names: list[str] = []
            calls = 0
            for page in iterator.pages:
                calls += 1
                for blob in page:
                    if blob.name.endswith("/"):  # folder marker, never an instance
                        continue
                    if not recursive and "/" in blob.name[len(prefix) :]:
                        continue
                    names.append(blob.name)
                if len(names) > limit:
                    break
            return Listing(tuple(names[:limit]), len(names) > limit, max(calls, 1))

        return _listed(bucket, prefix, run)


def _listed(bucket: str, prefix: str, call: Callable[[], T]) -> T:
    """A listing call: a 404 means the bucket does not exist (a prefix without objects lists nothing)."""
    try:
        return translated(f"listing gs://{bucket}/{prefix}", call, hint=_HINT)
    except NotFoundError as exc:
        raise NotFoundError(f"bucket {bucket} does not exist", exc.status) from exc


def _object_call(bucket: str, name: str, verb: str, call: Any) -> Any:
    """One call on an object: 404 is ObjectGoneError; 412 and 416 are answers the callers interpret."""
    try:
        return translated(f"{verb} gs://{bucket}/{name}", call, hint=_HINT, passthrough=_ANSWERS)
    except NotFoundError as exc:
        raise ObjectGoneError(str(exc), exc.status) from exc


def _info(bucket: str, blob: storage.Blob) -> ObjectInfo:
    updated = blob.updated or blob.time_created
    return ObjectInfo(bucket, blob.name, str(blob.generation), blob.size, blob.crc32c,
                      updated.isoformat() if updated else "")  # fmt: skip
