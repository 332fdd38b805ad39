"""DICOMweb on a store: STOW-RS, QIDO-RS, WADO-RS (instances, metadata, frames, rendered, bulkdata) and DELETE.

Behaviour follows PS3.18 and the API's DICOM conformance statement
(https://cloud.google.com/healthcare-api/docs/dicom): a search without match is 204 No Content; frames come
as raw octets, or rendered as JPEG/PNG when the Accept header asks for ``image/jpeg`` or ``image/png``
(anything else the emulator cannot produce is 406).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from werkzeug.wrappers import Request, Response

from healthcare_emulator.bulkdata import BulkdataNotFoundError, absolute, element_bytes
from healthcare_emulator.errors import invalid_argument, not_acceptable, not_found
from healthcare_emulator.instances import InvalidInstanceError, parse_instance
from healthcare_emulator.multipart import (
    MultipartError,
    accept_media_type,
    build_multipart_related,
    parse_multipart_related,
)
from healthcare_emulator.names import DatasetName, StoreName
from healthcare_emulator.qido import QueryError, fuzzy_requested, needed_tags, project, search_json
from healthcare_emulator.render import (
    RenderError,
    frame_count,
    raw_frames,
    render_frame,
    transcode,
)
from healthcare_emulator.repository import InstanceRecord, StoreOutcome
from healthcare_emulator.rest import base_url, json_response
from healthcare_emulator.service import Emulator
from healthcare_emulator.transcode import EXPLICIT_VR_LITTLE_ENDIAN

log = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
MULTIPART_DICOM = 'multipart/related; type="application/dicom"'
MULTIPART_OCTETS = 'multipart/related; type="application/octet-stream"'
MULTIPART_JPEG = 'multipart/related; type="image/jpeg"'
MULTIPART_PNG = 'multipart/related; type="image/png"'
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
# RetrieveFrames: raw octets (default), or each frame rendered; single-part types for one frame.
_FRAME_TYPES = [
    MULTIPART_OCTETS,
    MULTIPART_JPEG,
    MULTIPART_PNG,
    "application/octet-stream",
    "image/jpeg",
    "image/png",
]

# PS3.18 FailureReason values used in STOW-RS responses.
_PROCESSING_FAILURE = 0x0110
_DUPLICATE_SOP_INSTANCE = 0x0111
_CANNOT_UNDERSTAND = 0xC000


def _store(groups: dict[str, str]) -> StoreName:
    return StoreName(DatasetName(groups["project"], groups["location"], groups["dataset"]), groups["store"])


def _dicom_json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype=DICOM_JSON)


def _element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)}


# ----- STOW-RS -----


def store_instances(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    name = _store(groups)
    emulator.require_store(name)
    content_type = request.headers.get("Content-Type", "")
    body = request.get_data()
    if content_type.split(";")[0].strip().lower() == "application/dicom":
        parts = [body]
    else:
        try:
            parts = [data for _, data in parse_multipart_related(body, content_type)]
        except MultipartError as exc:
            raise invalid_argument(f"STOW-RS body: {exc}") from exc
    root = f"{base_url(emulator, request)}/{version}/{name}/dicomWeb"
    stored: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    path_study = groups.get("study")
    for data in parts:
        outcome, reason, uids = _store_part(emulator, str(name), data, path_study)
        item: dict[str, Any] = {}
        if uids:
            item["00081150"] = _element("UI", uids[3])
            item["00081155"] = _element("UI", uids[2])
        if outcome is None and uids:
            item["00081190"] = _element("UR", f"{root}/studies/{uids[0]}/series/{uids[1]}/instances/{uids[2]}")
            stored.append(item)
        else:
            item["00081197"] = _element("US", outcome)
            failed.append(item)
            log.info("STOW-RS part rejected in %s: %s", name, reason)
    response: dict[str, Any] = {}
    if path_study:
        response["00081190"] = _element("UR", f"{root}/studies/{path_study}")
    if stored:
        response["00081199"] = _element("SQ", *stored)
    if failed:
        response["00081198"] = _element("SQ", *failed)
    status = 200 if not failed else (202 if stored else 409)
    return _dicom_json(response, status)


def _store_part(
    emulator: Emulator, store: str, data: bytes, path_study: str | None
) -> tuple[int | None, str, tuple[str, str, str, str] | None]:
    """(failure reason code or None, reason text, (study, series, sop, sop class) when parseable)."""
    try:
        instance = parse_instance(data)
    except InvalidInstanceError as exc:
        return _CANNOT_UNDERSTAND, str(exc), None
    uids = (instance.study_uid, instance.series_uid, instance.sop_uid, instance.sop_class_uid)
    if path_study and instance.study_uid != path_study:
        return _PROCESSING_FAILURE, "StudyInstanceUID differs from the study in the request path", uids
    outcome = emulator.repository.store_instance(store, instance, data, "STANDARD")
    if outcome is StoreOutcome.CONFLICT:
        return _DUPLICATE_SOP_INSTANCE, "same UIDs, different content", uids
    if outcome is StoreOutcome.STORED:
        emulator.notify_stored(store, instance, "STANDARD", "StoreInstances")
    return None, "", uids


# ----- QIDO-RS -----


def search_resources(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    """QIDO-RS. Each instance's metadata is read from the index a chunk at a time and cut down to what the
    search needs as it is parsed; the answer is encoded a result at a time; and searches of a whole store
    (no study in the path) run one at a time (``Emulator.store_searches``). Several whole-store listings
    at once used to hold several copies of the store's metadata as Python objects at once (about 230 MiB
    for 6,200 instances each), and the process kept that peak, times the listings running together."""
    name = _store(groups)
    emulator.require_store(name)
    level = groups["level"]
    study, series = groups.get("study"), groups.get("series")
    params = {key: values for key, values in request.args.to_dict(flat=False).items() if key != "alt"}
    try:
        fuzzy = fuzzy_requested(params)
        tags = needed_tags(level, params, study_uid=study, series_uid=series)  # type: ignore[arg-type]
        with emulator.store_searches if study is None else contextlib.nullcontext():
            # narrow to the path's study in the index first (study-level attributes still see the whole study)
            metadata = (project(json.loads(text), tags) for text in emulator.repository.iter_metadata(str(name), study))
            body = search_json(
                level,  # type: ignore[arg-type]
                metadata,
                params,
                study_uid=study,
                series_uid=series,
                fuzzy=emulator.fuzzy_matching,
            )
    except QueryError as exc:
        raise invalid_argument(str(exc)) from exc
    # PS3.18 10.6.3: no match is 204 No Content (the API answers so too)
    response = Response(body, mimetype=DICOM_JSON) if body is not None else Response(status=204)
    if fuzzy and not emulator.fuzzy_matching:
        # PS3.18 8.3.4.2: a server that does not do fuzzy matching says so, and matches literally
        response.headers["Warning"] = (
            f"299 {base_url(emulator, request)}: The fuzzymatching parameter is not supported. "
            "Only literal matching has been performed."
        )
    return response


# ----- WADO-RS -----


def _records(emulator: Emulator, groups: dict[str, str]) -> list[InstanceRecord]:
    name = _store(groups)
    emulator.require_store(name)
    study, series, sop = groups["study"], groups.get("series"), groups.get("instance")
    records = emulator.repository.find_instances(str(name), study, series, sop)
    if not records:
        path = f"/studies/{study}" + (f"/series/{series}" if series else "") + (f"/instances/{sop}" if sop else "")
        raise not_found(f"{path} does not exist in {name}")
    return records


def _accept(request: Request, offered: list[str], default: str) -> tuple[str, dict[str, str]]:
    try:
        return accept_media_type(request.headers.get("Accept"), offered, default)
    except MultipartError as exc:
        raise not_acceptable(str(exc)) from exc


def _in_transfer_syntax(data: bytes, stored_syntax: str, requested: str | None) -> bytes:
    """Stored bytes for ``*`` or the stored syntax; else transcode (default: Explicit VR Little Endian)."""
    target = requested or EXPLICIT_VR_LITTLE_ENDIAN
    if target in ("*", stored_syntax):
        return data
    try:
        return transcode(data, target)
    except RenderError as exc:
        raise not_acceptable(f"cannot return transfer syntax {target}: {exc}") from exc


def retrieve(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    records = _records(emulator, groups)
    offered = [MULTIPART_DICOM]
    if groups.get("instance"):
        offered.append("application/dicom")
    media_type, params = _accept(request, offered, MULTIPART_DICOM)
    syntax = params.get("transfer-syntax")
    payloads = [
        _in_transfer_syntax(emulator.repository.read_instance(record), record.transfer_syntax, syntax)
        for record in records
    ]
    if media_type == "application/dicom":
        return Response(payloads[0], mimetype="application/dicom")
    content_type, body = build_multipart_related(
        [("application/dicom", data) for data in payloads], "application/dicom"
    )
    return Response(body, content_type=content_type)


def retrieve_metadata(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    """Instance metadata; bulk data (pixel data, binary values over 1 KiB) as absolute ``BulkDataURI``."""
    root = f"{base_url(emulator, request)}/{version}/{_store(groups)}/dicomWeb"
    return _dicom_json(
        [
            absolute(record.metadata, f"{root}/studies/{record.study}/series/{record.series}/instances/{record.sop}")
            for record in _records(emulator, groups)
        ]
    )


def retrieve_bulkdata(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    """RetrieveBulkdata: the value a ``BulkDataURI`` names, uncompressed little endian."""
    record = _records(emulator, groups)[0]
    media_type, _ = _accept(request, [MULTIPART_OCTETS, "application/octet-stream"], MULTIPART_OCTETS)
    try:
        value = element_bytes(emulator.repository.read_instance(record), groups["bulkdata"])
    except BulkdataNotFoundError as exc:
        raise not_found(str(exc)) from exc
    if media_type == "application/octet-stream":
        return Response(value, mimetype="application/octet-stream")
    content_type, body = build_multipart_related([("application/octet-stream", value)], "application/octet-stream")
    return Response(body, content_type=content_type)


def retrieve_frames(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    """Raw frames (``application/octet-stream``) or frames rendered as ``image/jpeg`` / ``image/png``."""
    record = _records(emulator, groups)[0]
    numbers = _frame_numbers(groups["frames"])
    media_type, params = _accept(request, _FRAME_TYPES, MULTIPART_OCTETS)
    part_type = _part_type(media_type)
    multipart = media_type.startswith("multipart/")
    if not multipart and len(numbers) > 1:
        raise not_acceptable(f"{media_type} carries one frame; ask for {numbers} as multipart/related")
    data = emulator.repository.read_instance(record)
    try:
        count = frame_count(data)
    except RenderError as exc:
        raise invalid_argument(str(exc)) from exc
    for number in numbers:
        if number > count:
            raise not_found(f"frame {number} does not exist: the instance has {count} frame(s)")
    if part_type == "application/octet-stream":
        data = _in_transfer_syntax(data, record.transfer_syntax, params.get("transfer-syntax"))
        try:
            frames = raw_frames(data)
        except RenderError as exc:
            raise invalid_argument(str(exc)) from exc
        payloads = [frames[number - 1] for number in numbers]
    else:
        syntax = params.get("transfer-syntax")
        if part_type == "image/jpeg" and syntax not in (None, "*", JPEG_BASELINE):
            raise not_acceptable(f"image/jpeg frames are JPEG Baseline ({JPEG_BASELINE}), not {syntax}")
        try:
            payloads = [render_frame(data, number, part_type.split("/")[1]) for number in numbers]
        except RenderError as exc:
            raise invalid_argument(str(exc)) from exc
    if not multipart:
        return Response(payloads[0], mimetype=part_type)
    content_type, body = build_multipart_related([(part_type, payload) for payload in payloads], part_type)
    return Response(body, content_type=content_type)


def _part_type(media_type: str) -> str:
    """``multipart/related; type="X"`` -> X; a single-part type as it is."""
    if media_type.startswith("multipart/"):
        return media_type.split('type="', 1)[1].rstrip('"')
    return media_type


def retrieve_rendered(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    record = _records(emulator, groups)[0]
    media_type, _ = _accept(request, ["image/jpeg", "image/png"], "image/jpeg")
    frame = _frame_numbers(groups["frames"])[0] if groups.get("frames") else 1
    data = emulator.repository.read_instance(record)
    try:
        if frame > frame_count(data):
            raise not_found(f"frame {frame} does not exist")
        image = render_frame(data, frame, media_type.split("/")[1])
    except RenderError as exc:
        raise invalid_argument(str(exc)) from exc
    return Response(image, mimetype=media_type)


def _frame_numbers(text: str) -> list[int]:
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise invalid_argument(f"frame list {text!r} must be comma-separated positive integers") from exc
    if not numbers or min(numbers) < 1:
        raise invalid_argument(f"frame list {text!r} must be comma-separated positive integers")
    return numbers


# ----- DELETE -----


def delete_resource(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    """Delete an instance (empty answer) or a series/study (an operation, as the API does)."""
    name = _store(groups)
    _records(emulator, groups)
    study, series, sop = groups["study"], groups.get("series"), groups.get("instance")
    if sop:
        emulator.repository.delete_instances(str(name), study, series, sop)
        return json_response({})

    def run(context: Any) -> dict[str, Any] | None:
        context.record_success(emulator.repository.delete_instances(str(name), study, series))
        return None

    method = "DeleteSeries" if series else "DeleteStudy"
    return json_response(
        emulator.operations.start(name.dataset, version, method, None, base_url(emulator, request), run)
    )
