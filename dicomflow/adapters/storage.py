"""Cloud Storage through google-cloud-storage: ranged reads, bounded listings, small writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import storage

from dicomflow.errors import ObjectGoneError, PermanentError, RetryableError
from dicomflow.planner import Listing

T = TypeVar("T")
_PAGE_SIZE = 1000
_TRANSIENT = (
    gexc.TooManyRequests, gexc.InternalServerError, gexc.BadGateway, gexc.ServiceUnavailable, gexc.GatewayTimeout,
    gexc.RetryError, ConnectionError, TimeoutError,
)  # fmt: skip


class ObjectStore(Protocol):
    def read_range(self, bucket: str, name: str, generation: str | None, start: int, end: int) -> bytes: ...

    def read(self, bucket: str, name: str, generation: str | None = None) -> bytes: ...

    def write_json(self, bucket: str, name: str, body: Any) -> str: ...

    def write_text(self, bucket: str, name: str, text: str) -> str: ...

    def list_objects(self, bucket: str, prefix: str, *, recursive: bool, limit: int) -> Listing: ...

    def read_json(self, bucket: str, name: str) -> tuple[Any, int] | None:
        """(body, generation), or None when the object does not exist."""

    def put_json(self, bucket: str, name: str, body: Any, *, if_generation: int) -> bool:
        """Write only if the object's generation is ``if_generation`` (0 = it must not exist); False if not."""


def _translate(what: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except gexc.NotFound as exc:
        raise ObjectGoneError(f"{what}: not found") from exc
    except (gexc.RequestRangeNotSatisfiable, gexc.PreconditionFailed):
        raise
    except _TRANSIENT as exc:
        raise RetryableError(f"{what}: {type(exc).__name__}") from exc
    except gexc.GoogleAPICallError as exc:
        raise PermanentError(f"{what}: HTTP {exc.code}") from exc


class GcsObjectStore:
    """ObjectStore on a google-cloud-storage client (real GCS, or fake-gcs-server via its endpoint)."""

    def __init__(self, client: storage.Client) -> None:
        self._client = client

    def _blob(self, bucket: str, name: str, generation: str | None) -> storage.Blob:
        return self._client.bucket(bucket).blob(name, generation=int(generation) if generation else None)

    def read_range(self, bucket: str, name: str, generation: str | None, start: int, end: int) -> bytes:
        """Bytes ``start``..``end-1`` (fewer at the end of the object; empty past it)."""
        if end <= start:
            return b""
        blob = self._blob(bucket, name, generation)
        try:
            data: bytes = _translate(
                f"reading gs://{bucket}/{name}", lambda: blob.download_as_bytes(start=start, end=end - 1, checksum=None)
            )
        except gexc.RequestRangeNotSatisfiable:
            return b""
        return data

    def read(self, bucket: str, name: str, generation: str | None = None) -> bytes:
        blob = self._blob(bucket, name, generation)
        data: bytes = _translate(f"reading gs://{bucket}/{name}", blob.download_as_bytes)
        return data

    def write_text(self, bucket: str, name: str, text: str) -> str:
        blob = self._client.bucket(bucket).blob(name)
        _translate(f"writing gs://{bucket}/{name}", lambda: blob.upload_from_string(text, content_type="text/plain"))
        return f"gs://{bucket}/{name}"

    def write_json(self, bucket: str, name: str, body: Any) -> str:
        blob = self._client.bucket(bucket).blob(name)
        payload = json.dumps(body, sort_keys=True, indent=1)
        _translate(
            f"writing gs://{bucket}/{name}", lambda: blob.upload_from_string(payload, content_type="application/json")
        )
        return f"gs://{bucket}/{name}"

    def read_json(self, bucket: str, name: str) -> tuple[Any, int] | None:
        try:
            blob = _translate(f"reading gs://{bucket}/{name}", lambda: self._client.bucket(bucket).get_blob(name))
            if blob is None:
                return None
            data = _translate(
                f"reading gs://{bucket}/{name}", lambda: blob.download_as_bytes(if_generation_match=blob.generation)
            )
        except ObjectGoneError:
            return None
        except gexc.PreconditionFailed as exc:
            raise RetryableError(f"gs://{bucket}/{name} changed while being read") from exc
        try:
            return json.loads(data), int(blob.generation)
        except ValueError as exc:
            raise PermanentError(f"gs://{bucket}/{name} is not JSON") from exc

    def put_json(self, bucket: str, name: str, body: Any, *, if_generation: int) -> bool:
        blob = self._client.bucket(bucket).blob(name)
        payload = json.dumps(body, sort_keys=True, indent=1)
        try:
            _translate(
                f"writing gs://{bucket}/{name}",
                lambda: blob.upload_from_string(
                    payload, content_type="application/json", if_generation_match=if_generation
                ),
            )
        except gexc.PreconditionFailed:
            return False
        return True

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

        return _translate(f"listing gs://{bucket}/{prefix}", run)
