"""ErrorLog on the Cloud Logging v2 API (google-api-python-client, bundled discovery document).

One bounded, paged ``entries.list`` per operation: resource type ``healthcare_dicom_store`` and the operation's
id, severity ERROR, pages of up to 1000 (the API's maximum) until ``limit`` entries. Errors follow the one
policy (``dicomflow.adapters.errors``); a 403 names the role to grant (``roles/logging.viewer``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dicomflow.adapters import discovery_calls
from dicomflow.ports import FileError
from dicomflow.retry import RetryPolicy

_TIMEOUT = 60
_MAX_PAGE = 1000
_ROLE = "roles/logging.viewer on the project"


def build_logging_client(endpoint: str | None) -> Any:
    """A Cloud Logging v2 discovery client; with ``endpoint`` (the local emulator) it sends no credentials."""
    return discovery_calls.build("logging", "v2", endpoint, timeout=_TIMEOUT)


def operation_filter(operation_name: str) -> str:
    """The query selecting one Healthcare operation's per-item errors."""
    operation_id = operation_name.rsplit("/", 1)[1]
    return f'resource.type="healthcare_dicom_store" AND operation.id="{operation_id}" AND severity>=ERROR'


class GoogleErrorLog:
    """ErrorLog reading Cloud Logging entries."""

    def __init__(self, client: Any, retry: RetryPolicy) -> None:
        self._client = client
        self._retry = retry

    def operation_errors(self, operation_name: str, limit: int) -> list[FileError]:
        project = operation_name.split("/")[1]
        body: dict[str, Any] = {
            "resourceNames": [f"projects/{project}"],
            "filter": operation_filter(operation_name),
            "orderBy": "timestamp asc",
        }
        found: list[FileError] = []
        while len(found) < limit:
            body["pageSize"] = min(_MAX_PAGE, limit - len(found))
            page = self._execute(lambda: self._client.entries().list(body=dict(body)))
            found.extend(_file_error(entry) for entry in page.get("entries", []))
            token = page.get("nextPageToken")
            if not token:
                break
            body["pageToken"] = token
        return found[:limit]

    def _execute(self, request: Callable[[], Any]) -> dict[str, Any]:
        answer: dict[str, Any] = discovery_calls.execute("Cloud Logging entries.list", request, self._retry, role=_ROLE)
        return answer


def _file_error(entry: dict[str, Any]) -> FileError:
    payload = entry.get("jsonPayload") or {}
    error = payload.get("error") or {}
    source = payload.get("source") or payload.get("resourceName") or ""
    return FileError(str(source), int(error.get("code", 2)), str(error.get("message", "")))
