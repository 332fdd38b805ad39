"""One error hierarchy for the whole pipeline.

Adapters translate every third-party error into one of these at the boundary (``dicomflow.adapters.errors``),
with one policy: transient answers (408, 429, 5xx, timeouts, connection resets) are ``RetryableError``;
everything else is a ``PermanentError`` subclass carrying the HTTP status. Handlers map the two families to
"redeliver" (raise) and "acknowledge and report" (return).
"""

from __future__ import annotations


class DicomflowError(Exception):
    """Base of every error the core raises."""


class RetryableError(DicomflowError):
    """A transient failure (429, 5xx, timeout, unavailable): the trigger should redeliver."""


class OperationPendingError(RetryableError):
    """The watched operation is not done yet: the watch message is redelivered with the subscription's backoff."""


class PermanentError(DicomflowError):
    """A failure that will not go away by retrying; the item is reported and acknowledged."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConfigurationError(DicomflowError):
    """A setting is missing or invalid; the message names the variable and what is expected. Neither retryable
    nor permanent: a function that cannot configure itself fails every event, so none is acknowledged unseen."""


class MalformedEventError(PermanentError):
    """An event or message that cannot be parsed; the message never echoes the payload."""


class NotDicomError(PermanentError):
    """An object that is not a storable DICOM Part-10 file; the message says why."""


class InvalidRequestError(PermanentError):
    """The API refused the request as invalid (HTTP 400), e.g. an import URI it cannot parse."""


class PermissionDeniedError(PermanentError):
    """The caller lacks a permission (HTTP 401/403); the message says which role to grant where it can."""


class NotFoundError(PermanentError):
    """The resource does not exist (HTTP 404): a topic, subscription, store, bucket or object."""


class ObjectGoneError(NotFoundError):
    """The object (or that generation of it) no longer exists."""


class ConflictError(PermanentError):
    """The resource exists with other content (HTTP 409), e.g. same UIDs with other bytes."""
