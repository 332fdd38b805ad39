"""Cloud Storage access for imports, exports and filter files (the GCS JSON API).

With ``STORAGE_EMULATOR_HOST`` set (fake-gcs-server), google-cloud-storage talks to it anonymously;
otherwise it uses Application Default Credentials against real Cloud Storage.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage


class StorageError(Exception):
    """A Cloud Storage call failed; the message names the bucket/object and the cause."""


class StorageNotFoundError(StorageError):
    """The bucket or object does not exist."""


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int


class GcsClient:
    """The few Cloud Storage calls the emulator needs."""

    def __init__(self, client: storage.Client) -> None:
        self._client = client

    @classmethod
    def for_endpoint(cls, emulator_host: str | None) -> GcsClient:
        if emulator_host:
            return cls(storage.Client(project="emulator", credentials=AnonymousCredentials()))  # type: ignore[no-untyped-call]
        return cls(storage.Client())  # pragma: no cover - real GCS needs credentials

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            for blob in self._client.list_blobs(bucket, prefix=prefix or None):
                yield ObjectInfo(name=blob.name, size=int(blob.size or 0))
        except gexc.NotFound as exc:
            raise StorageNotFoundError(f"bucket gs://{bucket} does not exist") from exc
        except gexc.GoogleAPICallError as exc:
            raise StorageError(f"listing gs://{bucket}/{prefix} failed: {exc.code}") from exc

    def read(self, bucket: str, name: str) -> bytes:
        try:
            data: bytes = self._client.bucket(bucket).blob(name).download_as_bytes()
        except gexc.NotFound as exc:
            raise StorageNotFoundError(f"gs://{bucket}/{name} does not exist") from exc
        except gexc.GoogleAPICallError as exc:
            raise StorageError(f"reading gs://{bucket}/{name} failed: {exc.code}") from exc
        return data

    def write(self, bucket: str, name: str, data: bytes, content_type: str) -> None:
        try:
            self._client.bucket(bucket).blob(name).upload_from_string(data, content_type=content_type)
        except gexc.NotFound as exc:
            raise StorageNotFoundError(f"bucket gs://{bucket} does not exist") from exc
        except gexc.GoogleAPICallError as exc:
            raise StorageError(f"writing gs://{bucket}/{name} failed: {exc.code}") from exc

    def bucket_exists(self, bucket: str) -> bool:
        try:
            self._client.get_bucket(bucket)
        except gexc.NotFound:
            return False
        return True
