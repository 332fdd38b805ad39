"""The WSGI application: routes ``/v1/``, ``/v1beta1/`` and ``/v1alpha2/`` paths to the API handlers.

``v1alpha2`` is what ``gcloud alpha healthcare`` calls; it is served like ``v1``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from healthcare_emulator import debug_memory, deidentify_api, dicomweb, logging_api, metrics, rest, rest_iam
from healthcare_emulator.errors import ApiError
from healthcare_emulator.service import Emulator
from healthcare_emulator.timing import TimingProfile

log = logging.getLogger(__name__)

Handler = Callable[[Emulator, Request, str, dict[str, str]], Response]

_SEGMENT = r"[^/:]+"
_UID = r"[0-9.]+"
_LOCATION = rf"projects/(?P<project>{_SEGMENT})/locations/(?P<location>{_SEGMENT})"
_DATASET = rf"{_LOCATION}/datasets/(?P<dataset>{_SEGMENT})"
_STORE = rf"{_DATASET}/dicomStores/(?P<store>{_SEGMENT})"
_WEB = rf"{_STORE}/dicomWeb"
_STUDY = rf"{_WEB}/studies/(?P<study>{_UID})"
_SERIES = rf"{_STUDY}/series/(?P<series>{_UID})"
_INSTANCE = rf"{_SERIES}/instances/(?P<instance>{_UID})"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


def _route(method: str, path: str, handler: Handler) -> Route:
    return Route(method, re.compile(rf"^/(?P<version>v1|v1beta1|v1alpha2)/{path}/?$"), handler)


ROUTES: tuple[Route, ...] = (
    _route("POST", rf"{_LOCATION}/datasets", rest.create_dataset),
    _route("GET", rf"{_LOCATION}/datasets", rest.list_datasets),
    _route("GET", _DATASET, rest.get_dataset),
    _route("PATCH", _DATASET, rest.patch_dataset),
    _route("DELETE", _DATASET, rest.delete_dataset),
    _route("GET", rf"{_DATASET}:getIamPolicy", rest_iam.get_iam_policy),
    _route("POST", rf"{_DATASET}:setIamPolicy", rest_iam.set_iam_policy),
    _route("POST", rf"{_DATASET}:testIamPermissions", rest_iam.check_iam_permissions),
    _route("POST", rf"{_DATASET}:deidentify", deidentify_api.deidentify_dataset),
    _route("GET", rf"{_DATASET}/operations", rest.list_operations),
    _route("GET", rf"{_DATASET}/operations/(?P<operation>{_SEGMENT})", rest.get_operation),
    _route("POST", rf"{_DATASET}/operations/(?P<operation>{_SEGMENT}):cancel", rest.cancel_operation),
    _route("POST", rf"{_DATASET}/dicomStores", rest.create_store),
    _route("GET", rf"{_DATASET}/dicomStores", rest.list_stores),
    _route("GET", _STORE, rest.get_store),
    _route("PATCH", _STORE, rest.patch_store),
    _route("DELETE", _STORE, rest.delete_store),
    _route("GET", rf"{_STORE}:getIamPolicy", rest_iam.get_iam_policy),
    _route("POST", rf"{_STORE}:setIamPolicy", rest_iam.set_iam_policy),
    _route("POST", rf"{_STORE}:testIamPermissions", rest_iam.check_iam_permissions),
    _route("POST", rf"{_STORE}:deidentify", deidentify_api.deidentify_store),
    _route("GET", rf"{_STORE}:getDICOMStoreMetrics", metrics.store_metrics),
    _route("GET", rf"{_STUDY}:getStudyMetrics", metrics.study_metrics),
    _route("GET", rf"{_SERIES}:getSeriesMetrics", metrics.series_metrics),
    _route("POST", rf"{_STORE}:import", rest.import_data),
    _route("POST", rf"{_STORE}:export", rest.export_data),
    _route("POST", rf"{_STORE}:setBlobStorageSettings", rest.set_blob_storage_settings),
    _route("POST", rf"{_STUDY}:setBlobStorageSettings", rest.set_blob_storage_settings),
    _route("POST", rf"{_SERIES}:setBlobStorageSettings", rest.set_blob_storage_settings),
    _route("POST", rf"{_INSTANCE}:setBlobStorageSettings", rest.set_blob_storage_settings),
    _route("GET", rf"{_INSTANCE}:getStorageInfo", rest.get_storage_info),
    # DICOMweb
    _route("POST", rf"{_WEB}/studies", dicomweb.store_instances),
    _route("POST", _STUDY, dicomweb.store_instances),
    _route("GET", rf"{_WEB}/(?P<level>studies|series|instances)", dicomweb.search_resources),
    _route("GET", rf"{_STUDY}/(?P<level>series|instances)", dicomweb.search_resources),
    _route("GET", rf"{_SERIES}/(?P<level>instances)", dicomweb.search_resources),
    _route("GET", _STUDY, dicomweb.retrieve),
    _route("GET", _SERIES, dicomweb.retrieve),
    _route("GET", _INSTANCE, dicomweb.retrieve),
    _route("GET", rf"{_STUDY}/metadata", dicomweb.retrieve_metadata),
    _route("GET", rf"{_SERIES}/metadata", dicomweb.retrieve_metadata),
    _route("GET", rf"{_INSTANCE}/metadata", dicomweb.retrieve_metadata),
    _route("GET", rf"{_INSTANCE}/rendered", dicomweb.retrieve_rendered),
    _route("GET", rf"{_INSTANCE}/frames/(?P<frames>[0-9,]+)", dicomweb.retrieve_frames),
    _route("GET", rf"{_INSTANCE}/frames/(?P<frames>[0-9,]+)/rendered", dicomweb.retrieve_rendered),
    _route("GET", rf"{_INSTANCE}/bulkdata/(?P<bulkdata>[0-9A-Fa-f/]+)", dicomweb.retrieve_bulkdata),
    _route("DELETE", _STUDY, dicomweb.delete_resource),
    _route("DELETE", _SERIES, dicomweb.delete_resource),
    _route("DELETE", _INSTANCE, dicomweb.delete_resource),
)

_LOGS = re.compile(r"^/logs/(?P<name>projects/.+/operations/[^/]+)$")
_LOGS_VIEW = re.compile(r"^/logs/query;query=(?P<query>.*)$")


def _error(error: ApiError) -> Response:
    return rest.json_response(error.to_json(), status=error.http_status)


def _faults(emulator: Emulator, request: Request) -> Response:
    if request.method == "POST":
        emulator.faults.add(rest.json_body(request))
    elif request.method == "DELETE":
        emulator.faults.clear()
    return rest.json_response({"rules": emulator.faults.rules()})


def _timing(emulator: Emulator, request: Request) -> Response:
    if request.method == "POST":
        emulator.clocks.set(TimingProfile.from_json(rest.json_body(request)))
    elif request.method == "DELETE":
        emulator.clocks.set(None)
    profile = emulator.clocks.profile
    return rest.json_response({"timing": profile.to_json() if profile else None})


def _memory(emulator: Emulator, request: Request) -> Response:
    if not emulator.debug_memory:
        raise ApiError(404, "NOT_FOUND", f"no such API path: {request.method} {request.path}")
    body = rest.json_body(request) if request.method == "POST" else {}
    try:
        trace = int(body.get("trace") or 0)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, "INVALID_ARGUMENT", "trace must be a number of frames") from exc
    snapshot, trim = bool(body.get("snapshot")), bool(body.get("trim"))
    report = debug_memory.report(emulator.data_dir, trace=trace, snapshot=snapshot, trim=trim)
    return rest.json_response(report)


def dispatch(emulator: Emulator, request: Request) -> Response:
    """Find the route for a request and run it, answering errors in Google's JSON shape."""
    path = request.path
    if path == "/healthz":
        return Response("ok", mimetype="text/plain")
    if path == "/emulator/faults":
        return _faults(emulator, request)
    if path == "/emulator/timing":
        return _timing(emulator, request)
    if path == "/emulator/memory":
        return _memory(emulator, request)
    emulator.faults.check(request.method, path)
    emulator.clocks.wait_request(request.method, path)
    if path == "/v2/entries:list" and request.method == "POST":
        return logging_api.list_entries(emulator, request)
    view = _LOGS_VIEW.match(path)
    if view and request.method == "GET":
        return logging_api.logs_view(emulator, request, view["query"])
    logs = _LOGS.match(path)
    if logs and request.method == "GET":
        return rest.operation_logs(emulator, request, logs["name"])
    allowed: list[str] = []
    for route in ROUTES:
        match = route.pattern.match(path)
        if not match:
            continue
        if route.method != request.method:
            allowed.append(route.method)
            continue
        groups = {key: value for key, value in match.groupdict().items() if value is not None}
        version = groups.pop("version")
        return route.handler(emulator, request, version, groups)
    if allowed:
        raise ApiError(405, "UNIMPLEMENTED", f"method {request.method} is not allowed on {path}")
    raise ApiError(404, "NOT_FOUND", f"no such API path: {request.method} {path}")


def create_app(emulator: Emulator) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """A WSGI app serving ``emulator``."""

    @Request.application
    def app(request: Request) -> Response:
        try:
            response = dispatch(emulator, request)
        except ApiError as exc:
            response = _error(exc)
        except Exception as exc:
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = _error(ApiError(500, "INTERNAL", f"internal emulator error: {type(exc).__name__}"))
        log.debug("%s %s -> %s", request.method, request.path, response.status_code)
        return response

    return app
