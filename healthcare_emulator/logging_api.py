"""The Cloud Logging v2 read surface on the emulator's port: ``POST /v2/entries:list`` and the logsUrl view.

``entries:list`` takes ``resourceNames`` (``projects/P``; the deprecated ``projectIds`` too), ``filter`` (the
subset in ``log_filter``), ``orderBy`` (``timestamp asc`` default, ``timestamp desc``), ``pageSize`` (default
50, at most 1000; more or negative is 400 as the API reference says) and ``pageToken``.
"""

from __future__ import annotations

import itertools
from typing import Any

from werkzeug.wrappers import Request, Response

from healthcare_emulator.errors import invalid_argument
from healthcare_emulator.log_filter import FilterError, parse_filter
from healthcare_emulator.rest import json_body, json_response
from healthcare_emulator.service import Emulator

_DEFAULT_PAGE_SIZE = 50
_MAX_PAGE_SIZE = 1000
_ORDERS = {"timestamp asc": False, "timestamp desc": True}


def list_entries(emulator: Emulator, request: Request) -> Response:
    body = json_body(request)
    return json_response(_entries(emulator, body))


def logs_view(emulator: Emulator, request: Request, query: str) -> Response:
    """What an operation's logsUrl opens: the entries its query matches, as entries:list answers them."""
    project = request.args.get("project")
    if not project:
        raise invalid_argument("the logs view needs ?project=")
    return json_response(_entries(emulator, {"resourceNames": [f"projects/{project}"], "filter": query}))


def _entries(emulator: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    projects = _projects(body)
    try:
        predicate = parse_filter(str(body.get("filter") or ""))
    except FilterError as exc:
        raise invalid_argument(f"Unparseable filter: {exc}") from exc
    order = str(body.get("orderBy") or "timestamp asc").strip().lower()
    if order not in _ORDERS:
        raise invalid_argument('orderBy must be "timestamp asc" or "timestamp desc"')
    size, offset = _page(body)
    # read from the index a chunk at a time, keeping the page only: the log grows with every failed file
    matching = (e for e in emulator.repository.iter_log_entries(projects, newest_first=_ORDERS[order]) if predicate(e))
    page = list(itertools.islice(matching, offset, offset + size + 1))
    answer: dict[str, Any] = {"entries": page[:size]} if page[:size] else {}
    if len(page) > size:
        answer["nextPageToken"] = str(offset + size)
    return answer


def _projects(body: dict[str, Any]) -> list[str]:
    names = body.get("resourceNames") or []
    ids = body.get("projectIds") or []
    if not isinstance(names, list) or not isinstance(ids, list):
        raise invalid_argument("resourceNames and projectIds must be lists")
    projects = [str(project) for project in ids]
    for name in names:
        parts = str(name).split("/")
        if len(parts) < 2 or parts[0] != "projects" or not parts[1]:
            raise invalid_argument(f"resourceNames: the emulator serves projects/PROJECT_ID only, got {name!r}")
        projects.append(parts[1])
    if not projects:
        raise invalid_argument("resourceNames is required")
    return projects


def _page(body: dict[str, Any]) -> tuple[int, int]:
    try:
        size = int(body.get("pageSize") or _DEFAULT_PAGE_SIZE)
        offset = int(body.get("pageToken") or 0)
    except (TypeError, ValueError) as exc:
        raise invalid_argument("pageSize must be an integer and pageToken one this API returned") from exc
    if size < 0 or size > _MAX_PAGE_SIZE:
        raise invalid_argument(f"pageSize must be between 0 and {_MAX_PAGE_SIZE}")
    if offset < 0:
        raise invalid_argument("pageToken is not one this API returned")
    return size or _DEFAULT_PAGE_SIZE, offset
