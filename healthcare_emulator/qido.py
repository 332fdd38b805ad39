"""QIDO-RS search over the DICOM JSON metadata of a store's instances (PS3.18 §10.6, PS3.4 C.2)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

Level = Literal["studies", "series", "instances"]

_BULK_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}
_BULK_LIMIT = 1024

# Attributes returned by default per level (tags as 8 hex digits).
_STUDY_ATTRIBUTES = (
    "00080005", "00080020", "00080030", "00080050", "00080090", "00100010", "00100020", "00100030",
    "00100040", "0020000D", "00200010", "00081030",
)  # fmt: skip
_SERIES_ATTRIBUTES = ("00080060", "0008103E", "0020000E", "00200011", "00400244", "00400245")
_INSTANCE_ATTRIBUTES = ("00080016", "00080018", "00200013", "00280010", "00280011", "00280100", "00280008")

_STUDY_UID, _SERIES_UID, _SOP_UID = "0020000D", "0020000E", "00080018"
_MODALITY, _MODALITIES_IN_STUDY = "00080060", "00080061"
_STUDY_SERIES_COUNT, _STUDY_INSTANCE_COUNT, _SERIES_INSTANCE_COUNT = "00201206", "00201208", "00201209"
_CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}
_UID_KEYS = {_STUDY_UID, _SERIES_UID, _SOP_UID, "00080016"}
_DATE_KEYS = {"00080020", "00080021", "00080022", "00080023", "00100030"}


class QueryError(Exception):
    """A bad query parameter (a 400); the message names the parameter."""


def dataset_to_metadata(dataset: Dataset) -> dict[str, Any]:
    """DICOM JSON of the header: no PixelData, and no binary element larger than 1 KiB."""
    result: dict[str, Any] = dataset.to_json_dict(bulk_data_threshold=_BULK_LIMIT, bulk_data_element_handler=_drop)
    return {tag: value for tag, value in sorted(result.items()) if tag != "7FE00010" and "BulkDataURI" not in value}


def _drop(element: Any) -> str:
    return ""


def search(
    level: Level,
    instances: Iterable[dict[str, Any]],
    params: Mapping[str, list[str]],
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> list[dict[str, Any]]:
    """The studies, series or instances matching ``params``, as DICOM JSON, ordered deterministically."""
    limit, offset = _int_param(params, "limit"), _int_param(params, "offset") or 0
    include_all, include = _include_fields(params)
    filters = _filters(params)
    scoped = [
        item
        for item in instances
        if (study_uid is None or _first(item, _STUDY_UID) == study_uid)
        and (series_uid is None or _first(item, _SERIES_UID) == series_uid)
    ]
    groups = _group(level, scoped)
    results: list[dict[str, Any]] = []
    for members in groups:
        if not all(_matches_any(members, tag, matcher) for tag, matcher in filters):
            continue
        results.append(_entity(level, members, cross_study=study_uid is None, include=include, include_all=include_all))
    results.sort(key=lambda item: _sort_key(level, item))
    end = None if limit is None else offset + limit
    return results[offset:end]


# ----- parameters -----


def _int_param(params: Mapping[str, list[str]], name: str) -> int | None:
    values = params.get(name)
    if not values or values[0] == "":
        return None
    try:
        value = int(values[0])
    except ValueError as exc:
        raise QueryError(f"{name} must be a non-negative integer, got {values[0]!r}") from exc
    if value < 0:
        raise QueryError(f"{name} must be a non-negative integer, got {values[0]!r}")
    return value


def _tag(key: str) -> str:
    """A keyword or 8-hex-digit tag as the 8-hex-digit tag; QueryError when unknown."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", key):
        return key.upper()
    tag = tag_for_keyword(key)
    if tag is None:
        raise QueryError(f"unknown attribute {key!r} in the query")
    return f"{tag:08X}"


def _include_fields(params: Mapping[str, list[str]]) -> tuple[bool, list[str]]:
    fields = [part.strip() for value in params.get("includefield", []) for part in value.split(",") if part.strip()]
    if "all" in fields:
        return True, []
    return False, [_tag(field) for field in fields]


Matcher = Callable[[dict[str, Any]], bool]


def _filters(params: Mapping[str, list[str]]) -> list[tuple[str, Matcher]]:
    filters: list[tuple[str, Matcher]] = []
    for key, values in params.items():
        if key.lower() in _CONTROL or key in _CONTROL:
            continue
        tag = _tag(key)
        value = values[0] if values else ""
        if value == "":
            continue  # universal matching
        filters.append((tag, _matcher(tag, value)))
    return filters


def _matcher(tag: str, value: str) -> Matcher:
    if tag in _UID_KEYS:
        wanted = {uid.strip() for uid in value.replace("\\", ",").split(",") if uid.strip()}
        return lambda element: any(str(v) in wanted for v in _values(element))
    if tag in _DATE_KEYS:
        low, dash, high = value.partition("-")
        if not dash:
            high = low
        return lambda element: any(
            (not low or str(v) >= low) and (not high or str(v) <= high) for v in _values(element)
        )
    if "*" in value or "?" in value:
        pattern = re.compile(
            "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value), re.IGNORECASE | re.DOTALL
        )
        return lambda element: any(pattern.fullmatch(_text(v)) for v in _values(element))
    if tag == "00100010":
        return lambda element: any(_text(v).lower() == value.lower() for v in _values(element))
    return lambda element: any(_text(v) == value for v in _values(element))


def _matches_any(members: list[dict[str, Any]], tag: str, matcher: Matcher) -> bool:
    if tag == _MODALITIES_IN_STUDY:
        tag = _MODALITY
    return any(tag in item and matcher(item[tag]) for item in members)


# ----- grouping and output -----


def _group(level: Level, instances: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    if level == "instances":
        return [[item] for item in instances]
    key = _STUDY_UID if level == "studies" else _SERIES_UID
    grouped: dict[str, list[dict[str, Any]]] = {}
    for item in instances:
        grouped.setdefault(str(_first(item, key)), []).append(item)
    return list(grouped.values())


def _entity(
    level: Level, members: list[dict[str, Any]], *, cross_study: bool, include: list[str], include_all: bool
) -> dict[str, Any]:
    first = members[0]
    tags: list[str] = []
    if level == "studies" or cross_study:
        tags += _STUDY_ATTRIBUTES
    if level in ("series", "instances"):
        tags += [*_SERIES_ATTRIBUTES, _STUDY_UID]
    if level == "instances":
        tags += [*_INSTANCE_ATTRIBUTES, _SERIES_UID]
    tags += include
    if include_all:
        tags += list(first)
    entity = {tag: first[tag] for tag in tags if tag in first}
    if level == "studies":
        modalities = sorted({str(_first(item, _MODALITY)) for item in members if _MODALITY in item})
        if modalities:
            entity[_MODALITIES_IN_STUDY] = {"vr": "CS", "Value": modalities}
        series = {str(_first(item, _SERIES_UID)) for item in members}
        entity[_STUDY_SERIES_COUNT] = {"vr": "IS", "Value": [len(series)]}
        entity[_STUDY_INSTANCE_COUNT] = {"vr": "IS", "Value": [len(members)]}
    elif level == "series":
        entity[_SERIES_INSTANCE_COUNT] = {"vr": "IS", "Value": [len(members)]}
    return dict(sorted(entity.items()))


def _sort_key(level: Level, item: dict[str, Any]) -> tuple[Any, ...]:
    if level == "studies":
        return (str(_first(item, "00080020") or ""), str(_first(item, _STUDY_UID)))
    if level == "series":
        return (_number(_first(item, "00200011")), str(_first(item, _SERIES_UID)))
    return (_number(_first(item, "00200013")), str(_first(item, _SOP_UID)))


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def _values(element: dict[str, Any]) -> list[Any]:
    values = element.get("Value")
    return list(values) if isinstance(values, list) else []


def _first(item: dict[str, Any], tag: str) -> Any:
    values = _values(item.get(tag, {}))
    return values[0] if values else None


def _text(value: Any) -> str:
    if isinstance(value, dict):  # PN: {"Alphabetic": "..."}
        return str(value.get("Alphabetic", ""))
    return str(value)
