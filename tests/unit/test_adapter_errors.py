"""One error policy for every adapter: the same status maps to the same class, whatever the client."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc

from dicomflow.adapters.errors import from_google, from_status, translated
from dicomflow.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermanentError,
    PermissionDeniedError,
    RetryableError,
)


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
