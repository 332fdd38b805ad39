"""The one error policy of every adapter: third-party errors in, ``dicomflow.errors`` out.

Transient (408, 429, 5xx, timeouts, connection failures) -> RetryableError. Otherwise by status:
400 -> InvalidRequestError, 401/403 -> PermissionDeniedError, 404 -> NotFoundError, 409 -> ConflictError,
anything else -> PermanentError; each carries the status and a message naming what failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from google.api_core import exceptions as gexc

from dicomflow.errors import (
    ConflictError,
    DicomflowError,
    InvalidRequestError,
    NotFoundError,
    PermanentError,
    PermissionDeniedError,
    RetryableError,
)

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_BY_STATUS: dict[int, type[PermanentError]] = {
    400: InvalidRequestError,
    401: PermissionDeniedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
}
# Errors without an HTTP status that a retry can cure (grpc/transport level).
TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    gexc.RetryError, gexc.DeadlineExceeded, gexc.ServiceUnavailable, gexc.Aborted, gexc.Unknown,
    TimeoutError, ConnectionError,
)  # fmt: skip


def needs(role: str) -> str:
    """The hint of a 401/403 answer: the role, and whose it must be."""
    return f"the caller (the function's service account, or whoever runs the dicomflow CLI) needs {role}"


def from_status(what: str, status: int, detail: str = "", *, hint: str = "") -> DicomflowError:
    """The error for an HTTP answer ``status`` to the call described by ``what``."""
    message = f"{what}: HTTP {status}" + (f" {detail}" if detail else "")
    if status in RETRYABLE_STATUSES:
        return RetryableError(message)
    if status in (401, 403) and hint:
        message += f" ({hint})"
    return _BY_STATUS.get(status, PermanentError)(message, status)


def from_google(what: str, exc: BaseException, *, hint: str = "") -> DicomflowError:
    """Translate a google-api-core (or transport) exception raised by ``what``."""
    if isinstance(exc, DicomflowError):
        return exc
    if isinstance(exc, TRANSIENT_EXCEPTIONS):  # before the status: gRPC ABORTED maps to 409 but is transient
        return RetryableError(f"{what}: {type(exc).__name__}")
    if isinstance(exc, gexc.GoogleAPICallError) and isinstance(exc.code, int):
        return from_status(what, int(exc.code), type(exc).__name__, hint=hint)
    return PermanentError(f"{what}: {type(exc).__name__}")


def translated(
    what: str, call: Callable[[], T], *, hint: str = "", passthrough: tuple[type[BaseException], ...] = ()
) -> T:
    """Run ``call``, translating google-api-core and transport errors with ``from_google``; exceptions of the
    ``passthrough`` types are answers the caller interprets (e.g. 412 on a conditional write) and stay as they are."""
    caught: tuple[type[BaseException], ...] = (gexc.GoogleAPICallError, *TRANSIENT_EXCEPTIONS)
    try:
        return call()
    except caught as exc:
        if isinstance(exc, passthrough):
            raise
        raise from_google(what, exc, hint=hint) from exc
