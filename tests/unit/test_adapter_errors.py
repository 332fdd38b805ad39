"""One error policy for every adapter: the same status maps to the same class, whatever the client."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from google.api_core import exceptions as gexc

from dicomflow.adapters.errors import from_google, from_status, translated
from dicomflow.adapters.healthcare import GoogleHealthcareApi
from dicomflow.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermanentError,
    PermissionDeniedError,
    RetryableError,
)
from dicomflow.retry import RetryPolicy


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, InvalidRequestError), (401, PermissionDeniedError), (403, PermissionDeniedError), (404, NotFoundError),
     (409, ConflictError), (412, PermanentError), (408, RetryableError), (429, RetryableError),
     (500, RetryableError), (502, RetryableError), (503, RetryableError), (504, RetryableError)],
)  # fmt: skip
def test_http_status_and_google_exception_map_to_the_same_class(status: int, kind: type[Exception]) -> None:
    by_status = from_status("call", status)
    by_exception = from_google("call", gexc.from_http_status(status, "boom"))
    assert type(by_status) is kind and type(by_exception) is kind
    if isinstance(by_status, PermanentError):
        assert by_status.status == status


def test_a_denied_call_says_which_role_to_grant() -> None:
    error = from_status("import gs://b/**", 403, "denied", hint="grant roles/healthcare.dicomEditor")
    assert isinstance(error, PermissionDeniedError)
    assert str(error) == "import gs://b/**: HTTP 403 denied (grant roles/healthcare.dicomEditor)"


@pytest.mark.parametrize("exc", [gexc.Aborted("x"), gexc.RetryError("x", None), TimeoutError(), ConnectionError()])
def test_transport_failures_are_retryable(exc: BaseException) -> None:
    assert isinstance(from_google("pull", exc), RetryableError)


def test_translated_lets_answers_the_caller_interprets_pass() -> None:
    def precondition() -> None:
        raise gexc.PreconditionFailed("generation mismatch")

    with pytest.raises(gexc.PreconditionFailed):
        translated("write", precondition, passthrough=(gexc.PreconditionFailed,))
    with pytest.raises(PermanentError, match="write: HTTP 412"):
        translated("write", precondition)


class _DeleteAnswers(requests.Session):
    """A DICOMweb session whose DELETEs get the given statuses in turn."""

    def __init__(self, *statuses: int) -> None:
        super().__init__()
        self.statuses = list(statuses)
        self.urls: list[str] = []

    def delete(self, url: str | bytes, **kwargs: Any) -> requests.Response:
        self.urls.append(str(url))
        response = requests.Response()
        response.status_code = self.statuses.pop(0)
        response._content = b'{"error": {"message": "permission denied"}}' if response.status_code == 403 else b"{}"
        return response


def _healthcare(session: requests.Session) -> GoogleHealthcareApi:
    return GoogleHealthcareApi(None, session, "projects/p/locations/l/datasets/d/dicomStores/s",
                               RetryPolicy(attempts=3, initial_delay=0.0), base_url="http://api")  # fmt: skip


def test_an_instance_delete_follows_the_one_error_policy() -> None:
    # 503 then 200: retried, deleted; 404: it was not there (False); 403: permanent, with the role to grant
    session = _DeleteAnswers(503, 200, 404, 403)
    api = _healthcare(session)
    assert api.delete_instance("1.2", "1.2.3", "1.2.3.4") is True
    store = "http://api/v1/projects/p/locations/l/datasets/d/dicomStores/s"
    assert session.urls == [f"{store}/dicomWeb/studies/1.2/series/1.2.3/instances/1.2.3.4"] * 2
    assert api.delete_instance("1.2", "1.2.3", "1.2.3.4") is False
    with pytest.raises(PermissionDeniedError) as denied:
        api.delete_instance("1.2", "1.2.3", "1.2.3.4")
    assert denied.value.status == 403
    assert "HTTP 403 permission denied" in str(denied.value) and "roles/healthcare.dicomEditor" in str(denied.value)
