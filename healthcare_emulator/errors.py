"""API errors in Google's shape: ``{"error": {"code", "message", "status"}}``."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered to the client with an HTTP status and a google.rpc status name."""

    def __init__(self, http_status: int, status: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status = status
        self.message = message

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.http_status, "message": self.message, "status": self.status}}


def invalid_argument(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def failed_precondition(message: str) -> ApiError:
    return ApiError(400, "FAILED_PRECONDITION", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def already_exists(message: str) -> ApiError:
    return ApiError(409, "ALREADY_EXISTS", message)


def not_acceptable(message: str) -> ApiError:
    return ApiError(406, "INVALID_ARGUMENT", message)


def unimplemented(message: str) -> ApiError:
    return ApiError(501, "UNIMPLEMENTED", message)


# google.rpc.Code numbers used in operation errors (google.rpc.Status inside an Operation).
RPC_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
}
