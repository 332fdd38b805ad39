"""Cloud Storage access for imports, exports and filter files (the GCS JSON API).

With ``STORAGE_EMULATOR_HOST`` set (fake-gcs-server), google-cloud-storage talks to it anonymously;
otherwise it uses Application Default Credentials against real Cloud Storage. The client is created on
first use, so the emulator starts (and serves datasets, stores and DICOMweb) without either: only an
import or export then fails, with :class:`StorageUnavailableError` saying what to set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import GoogleAuthError
from google.cloud import storage

UNCONFIGURED = (
    "Cloud Storage is not configured for the emulator: set STORAGE_EMULATOR_HOST to a fake-gcs-server "
    "(for example http://127.0.0.1:4443) before starting it, or give it Application Default Credentials "
    "(GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth application-default login`) for real Cloud Storage"
)


class StorageError(Exception):
    """A Cloud Storage call failed; the message names the bucket/object and the cause."""


class StorageNotFoundError(StorageError):
    """The bucket or object does not exist."""


class StorageUnavailableError(StorageError):
    """No Cloud Storage is reachable: neither STORAGE_EMULATOR_HOST nor credentials are set."""


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int


def _default_client() -> storage.Client:
    return storage.Client()  # pragma: no cover - real GCS needs credentials


class GcsClient:
    """The few Cloud Storage calls the emulator needs; the storage client is made on first use."""

    def __init__(self, factory: Callable[[], storage.Client]) -> None:
        self._factory = factory
        self._client: storage.Client | None = None
        self._failure: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_endpoint(cls, emulator_host: str | None) -> GcsClient:
        if emulator_host:
            return cls(lambda: storage.Client(project="emulator", credentials=AnonymousCredentials()))  # type: ignore[no-untyped-call]
        return cls(_default_client)

    def client(self) -> storage.Client:
        """The storage client; StorageUnavailableError (remembered) when it cannot be made."""
        with self._lock:
            if self._client is None and self._failure is None:
                try:
                    self._client = self._factory()
                except (GoogleAuthError, OSError) as exc:
                    self._failure = f"{UNCONFIGURED} ({type(exc).__name__})"
            if self._client is None:
                raise StorageUnavailableError(self._failure or UNCONFIGURED)
            return self._client

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        client = self.client()
        try:
            for blob in client.list_blobs(bucket, prefix=prefix or None):
                yield ObjectInfo(name=blob.name, size=int(blob.size or 0))
        except gexc.NotFound as exc:
            raise StorageNotFoundError(f"bucket gs://{bucket} does not exist") from exc
        except gexc.GoogleAPICallError as exc:
            raise StorageError(f"listing gs://{bucket}/{prefix} failed: {exc.code}") from exc

    def read(self, bucket: str, name: str) -> bytes:
        client = self.client()
        try:
            data: bytes = client.bucket(bucket).blob(name).download_as_bytes()
        except gexc.NotFound as exc:
            raise StorageNotFoundError(f"gs://{bucket}/{name} does not exist") from exc
        except gexc.GoogleAPICallError as exc:
            raise StorageError(f"reading gs://{bucket}/{name} failed: {exc.code}") from exc
        return data

    def write(self, bucket: str, name: str, data: bytes, content_type: str) -> None:
        client = self.client()
        try:
            client.bucket(bucket).blob(name).upload_from_string(data, content_type=content_type)
        except gexc.NotFound as exc:
            raise StorageNotFoundError(f"bucket gs://{bucket} does not exist") from exc
        except gexc.GoogleAPICallError as exc:
            raise StorageError(f"writing gs://{bucket}/{name} failed: {exc.code}") from exc

    def bucket_exists(self, bucket: str) -> bool:
        client = self.client()
        try:
            client.get_bucket(bucket)
        except gexc.NotFound:
            return False
        return True
