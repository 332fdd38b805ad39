"""HealthcareApi on the Cloud Healthcare API: REST through google-api-python-client (bundled discovery
documents), DICOMweb through an HTTP session. Retries 429/5xx/timeouts with exponential backoff and jitter;
other answers become the permanent error of their status (``dicomflow.adapters.errors``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import requests

from dicomflow.adapters import discovery_calls
from dicomflow.adapters.errors import from_status, needs
from dicomflow.adapters.http_pool import pooled
from dicomflow.errors import RetryableError
from dicomflow.retry import RetryPolicy, call_with_retry

_TIMEOUT = 120
_READ = "roles/healthcare.dicomViewer on the DICOM store"  # QIDO-RS, WADO-RS, dicomStores.export
_WRITE = "roles/healthcare.dicomEditor on the DICOM store"  # dicomStores.import, DICOMweb DELETE
_DEIDENTIFY = (
    "healthcare.dicomStores.deidentify on the DICOM store and healthcare.dicomStores.dicomWebWrite on "
    "the research store (the Terraform's research roles)"
)  # dicomStores.deidentify
_OPERATIONS = "roles/healthcare.datasetViewer on the dataset"  # operations.get


_CONNECTIONS = 64  # per host: a connection per concurrent query of reconcile's pool
_QIDO_PAGE = 50_000  # the most instances one QIDO-RS page may hold (limit; studies and series: 5,000)
_DEFAULT_ENDPOINT = "https://healthcare.googleapis.com"


def build_client(endpoint: str | None, version: str = "v1") -> Any:
    """A Healthcare API discovery client; with ``endpoint`` (the local emulator) it sends no credentials."""
    return discovery_calls.build("healthcare", version, endpoint, timeout=_TIMEOUT)


def build_session(endpoint: str | None) -> requests.Session:
    """An HTTP session for DICOMweb: plain for the local emulator, authorized (ADC) for the real API."""
    if endpoint:
        return pooled(requests.Session(), connections=_CONNECTIONS)
    import google.auth  # noqa: PLC0415 - only needed against the real API
    from google.auth.transport.requests import AuthorizedSession  # noqa: PLC0415

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return pooled(AuthorizedSession(credentials), connections=_CONNECTIONS)  # type: ignore[no-untyped-call]  # pragma: no cover


class GoogleHealthcareApi:
    """HealthcareApi for one DICOM store."""

    def __init__(
        self,
        client: Any,
        session: requests.Session,
        store_name: str,
        retry: RetryPolicy,
        base_url: str | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        self._client = client
        self._lock = lock or threading.Lock()  # httplib2 is not thread-safe: one REST call at a time per client
        self._session = session
        self._store = store_name
        self._retry = retry
        self._base_url = (base_url or _DEFAULT_ENDPOINT).rstrip("/")

    def _execute(self, what: str, request: Callable[[], Any], role: str) -> Any:
        return discovery_calls.execute(what, request, self._retry, role=role, lock=self._lock)

    @property
    def store_name(self) -> str:
        return self._store

    def _stores(self) -> Any:
        return self._client.projects().locations().datasets().dicomStores()

    def _operations(self) -> Any:
        return self._client.projects().locations().datasets().operations()

    def start_import(self, uri: str, storage_class: str | None) -> str:
        body: dict[str, Any] = {"gcsSource": {"uri": uri}}
        if storage_class:
            body["blobStorageSettings"] = {"blobStorageClass": storage_class}
        operation = self._execute(f"import {uri}", lambda: self._stores().import_(name=self._store, body=body), _WRITE)
        return str(operation["name"])

    def start_export(self, body: dict[str, Any]) -> str:
        operation = self._execute("export", lambda: self._stores().export(name=self._store, body=body), _READ)
        return str(operation["name"])

    def start_deidentify(self, body: dict[str, Any]) -> str:
        operation = self._execute(
            "deidentify", lambda: self._stores().deidentify(sourceStore=self._store, body=body), _DEIDENTIFY
        )
        return str(operation["name"])

    def series_instances(self, study_uid: str, series_uid: str) -> set[str]:
        """QIDO-RS of one series' instances, paged (the API caps a page)."""
        url = f"{self._base_url}/v1/{self._store}/dicomWeb/studies/{study_uid}/series/{series_uid}/instances"
        return {sop for _series, sop in self._instances(url) if sop}

    def study_instances(self, study_uid: str) -> set[tuple[str, str]]:
        """QIDO-RS of one study's instances (every series at once), paged."""
        url = f"{self._base_url}/v1/{self._store}/dicomWeb/studies/{study_uid}/instances"
        return {(series, sop) for series, sop in self._instances(url) if series and sop}

    def _instances(self, url: str) -> list[tuple[str, str]]:
        """(Series, SOP Instance UID) of every instance an instance-level QIDO-RS ``url`` matches: pages of
        _QIDO_PAGE (the API's most for instances), ``offset`` moved on until a page comes back short."""
        found: list[tuple[str, str]] = []
        offset = 0
        while True:
            params: dict[str, str | list[str]] = {
                "limit": str(_QIDO_PAGE), "offset": str(offset), "includefield": ["0020000E", "00080018"]
            }  # fmt: skip
            page = self._qido(url, params)
            found.extend((_first(item, "0020000E"), _first(item, "00080018")) for item in page)
            if len(page) < _QIDO_PAGE:
                return found
            offset += len(page)

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """WADO-RS of one instance, single part, as stored (``transfer-syntax=*``)."""
        url = (f"{self._base_url}/v1/{self._store}/dicomWeb/studies/{study_uid}/series/{series_uid}"
               f"/instances/{sop_uid}")  # fmt: skip

        def once() -> bytes:
            try:
                response = self._session.get(
                    url, headers={"Accept": "application/dicom; transfer-syntax=*"}, timeout=_TIMEOUT
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise RetryableError(f"WADO-RS: {type(exc).__name__}") from exc
            if response.status_code >= 400:
                raise from_status("WADO-RS", response.status_code, hint=needs(_READ))
            return bytes(response.content)

        return call_with_retry("WADO-RS", once, self._retry)

    def delete_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bool:
        """DICOMweb DELETE of one instance: synchronous (an empty answer, no operation); 404: it was not there."""
        url = (f"{self._base_url}/v1/{self._store}/dicomWeb/studies/{study_uid}/series/{series_uid}"
               f"/instances/{sop_uid}")  # fmt: skip

        def once() -> bool:
            try:
                response = self._session.delete(url, timeout=_TIMEOUT)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise RetryableError(f"DICOMweb DELETE: {type(exc).__name__}") from exc
            if response.status_code == 404:
                return False
            if response.status_code >= 400:
                detail = _response_message(response)
                raise from_status("DICOMweb DELETE", response.status_code, detail, hint=needs(_WRITE))
            return True

        return call_with_retry("DICOMweb DELETE", once, self._retry)

    def _qido(self, url: str, params: dict[str, str | list[str]]) -> list[dict[str, Any]]:
        def once() -> list[dict[str, Any]]:
            try:
                response = self._session.get(
                    url, params=params, headers={"Accept": "application/dicom+json"}, timeout=_TIMEOUT
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise RetryableError(f"QIDO-RS: {type(exc).__name__}") from exc
            if response.status_code in (204, 404):  # no match; 404: the study or series does not exist
                return []
            if response.status_code >= 400:
                raise from_status("QIDO-RS", response.status_code, hint=needs(_READ))
            body = response.json() if response.content else []
            return list(body) if isinstance(body, list) else []

        return call_with_retry("QIDO-RS", once, self._retry)

    def get_operation(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._execute(f"get {name}", lambda: self._operations().get(name=name), _OPERATIONS)
        return result


def _first(item: dict[str, Any], tag: str) -> str:
    """The first value of ``tag`` in a DICOM JSON result ('' when it has none)."""
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def _response_message(response: requests.Response) -> str:
    """The API's error message of a DICOMweb answer (never the request, never tag values)."""
    try:
        return str(response.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return ""
