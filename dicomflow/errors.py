"""One error hierarchy: retryable errors make a handler fail (Pub/Sub redelivers); permanent ones are acked."""

from __future__ import annotations


class DicomflowError(Exception):
    """Base of every error the core raises."""


class RetryableError(DicomflowError):
    """A transient failure (429, 5xx, timeout, unavailable): the trigger should redeliver."""


class PermanentError(DicomflowError):
    """A failure that will not go away by retrying; the item is reported and acknowledged."""


class ConfigurationError(DicomflowError):
    """A setting is missing or invalid; the message names the variable and what is expected."""


class MalformedEventError(PermanentError):
    """An event or message that cannot be parsed; the message never echoes the payload."""


class NotDicomError(PermanentError):
    """An object that is not a storable DICOM Part-10 file; the message says why."""


class ObjectGoneError(PermanentError):
    """The object (or that generation of it) no longer exists."""


class ApiError(DicomflowError):
    """A non-retryable answer from a Google API, with its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class OperationPendingError(RetryableError):
    """The watched operation is not done yet: the watch message is redelivered with the subscription's backoff."""
