"""google-api-python-client (Discovery) calls under the one error policy: how a client is built, and how a
request is executed, retried and its errors translated. Shared by every REST adapter (Healthcare, Logging)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httplib2
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from dicomflow.adapters.errors import from_status, needs
from dicomflow.errors import RetryableError
from dicomflow.retry import RetryPolicy, call_with_retry


def build(api: str, version: str, endpoint: str | None, *, timeout: float) -> Any:
    """A client from the bundled discovery document; with ``endpoint`` (a local stand-in) it sends no credentials."""
    if endpoint:
        return discovery.build(
            api, version, http=httplib2.Http(timeout=timeout), client_options={"api_endpoint": endpoint},
            static_discovery=True, cache_discovery=False,
        )  # fmt: skip
    return discovery.build(api, version, static_discovery=True, cache_discovery=False)  # pragma: no cover


def execute(
    what: str, request: Callable[[], Any], retry: RetryPolicy, *, role: str, lock: threading.Lock | None = None
) -> Any:
    """Execute the request ``request()`` builds, retried under ``retry``; a 401/403 names ``role``.

    ``lock`` serializes calls on a client shared between threads (httplib2 is not thread-safe).
    """

    def once() -> Any:
        try:
            if lock is None:
                return request().execute(num_retries=0)
            with lock:
                return request().execute(num_retries=0)
        except HttpError as exc:
            raise from_status(what, int(exc.resp.status), error_message(exc), hint=needs(role)) from exc
        except (TimeoutError, ConnectionError, httplib2.HttpLib2Error) as exc:
            raise RetryableError(f"{what}: {type(exc).__name__}") from exc

    return call_with_retry(what, once, retry)


def error_message(exc: HttpError) -> str:
    """The API's own message of an error answer (at most 300 characters), or "" when it has none."""
    try:
        return str(json.loads(exc.content)["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return ""
