"""QIDO-RS search over the DICOM JSON metadata of a store's instances (PS3.18 §10.6, PS3.4 C.2).

Pure functions: the caller hands in the metadata of every instance of the store (``dataset_to_metadata``) and
the query parameters; ``search`` groups, matches, orders, pages and shapes the answer.

Matching (PS3.4 C.2.2.2), chosen per the key's VR:

- UI: single value or UID list (``,`` or ``\\`` separated);
- DA: ``YYYYMMDD``, ``A-B``, ``-B``, ``A-`` (ranges inclusive); TM likewise, a partial time covering its span;
- PN: whole value, case-insensitive, against the Alphabetic group, ``*``/``?`` wildcards; with
  ``fuzzymatching=true``, each word of the value matches the start of any word of the name, in any order,
  case-insensitive (``jan`` finds ``DOE^JANE``), as PS3.4 C.2.2.2.1.1 leaves the rule to the implementation;
- numbers (IS, DS, US, ...): numeric equality;
- other strings: exact, or ``*``/``?`` wildcards (case-sensitive);
- an empty value or a lone ``*``: universal matching (no filter, the attribute is returned);
- a key given several times: any of its values matches.

An entity matches when one of its instances satisfies every key at once; the computed attributes
(ModalitiesInStudy, Number of ... Related ...) are those of the instance's study and series.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset

Level = Literal["studies", "series", "instances"]

Element = dict[str, Any]
Metadata = dict[str, Element]

# ----- tags (8 upper-case hex digits, as in DICOM JSON) -----

_SPECIFIC_CHARACTER_SET = "00080005"
_STUDY_DATE, _STUDY_TIME = "00080020", "00080030"
_SOP_CLASS_UID, _SOP_INSTANCE_UID = "00080016", "00080018"
_MODALITY, _MODALITIES_IN_STUDY = "00080060", "00080061"
_STUDY_UID, _SERIES_UID = "0020000D", "0020000E"
_SERIES_NUMBER, _INSTANCE_NUMBER = "00200011", "00200013"
_STUDY_SERIES_COUNT, _STUDY_INSTANCE_COUNT = "00201206", "00201208"
_SERIES_INSTANCE_COUNT = "00201209"
_PIXEL_DATA_TAGS = frozenset({"7FE00008", "7FE00009", "7FE00010"})
# What grouping, ordering and the computed attributes read of every instance.
_STRUCTURAL = (_STUDY_UID, _SERIES_UID, _SOP_INSTANCE_UID, _SERIES_NUMBER, _INSTANCE_NUMBER, _MODALITY, _STUDY_DATE)

# Returned by default (when present), per level: Google's defaults, after PS3.18 Table 6.7.1-2.
_STUDY_DEFAULTS = (
    _SPECIFIC_CHARACTER_SET, _STUDY_DATE, _STUDY_TIME, "00080050", "00080090", "00080201", "00081030",
    "00100010", "00100020", "00100030", "00100040", _STUDY_UID, "00200010",
)  # fmt: skip
_SERIES_DEFAULTS = (_MODALITY, "0008103E", _SERIES_UID, _SERIES_NUMBER, "00400244", "00400245", _STUDY_UID)
_INSTANCE_DEFAULTS = (
    _SOP_CLASS_UID, _SOP_INSTANCE_UID, _INSTANCE_NUMBER, "00280008", "00280010", "00280011", "00280100",
    _STUDY_UID, _SERIES_UID,
)  # fmt: skip

# Which attributes belong to the study or the series (for includefield=all and returned matching keys);
# the Patient IE (group 0010) counts as study level, anything not listed is instance level.
_STUDY_LEVEL = frozenset(
    {
        _SPECIFIC_CHARACTER_SET, _STUDY_DATE, _STUDY_TIME, "00080050", "00080051", "00080090", "00080096",
        "00080201", "00081030", "00081032", "00081048", "00081049", "00081060", "00081062", "00081080",
        "00081084", _STUDY_UID, "00200010", "00321060", "00380010", "00380500", _MODALITIES_IN_STUDY, "00080062",
        _STUDY_SERIES_COUNT, _STUDY_INSTANCE_COUNT,
    }
)  # fmt: skip
_SERIES_LEVEL = frozenset(
    {
        "00080021", "00080031", _MODALITY, "00080070", "00080080", "00080081", "0008103E", "0008103F",
        "00081010", "00081040", "00081050", "00081052", "00081070", "00081072", "00081090", "00081111",
        "00081250", "00180015", "00181000", "00181020", "00181030", "00185100", _SERIES_UID, _SERIES_NUMBER,
        "00200052", "00200060", "00201040", "00280108", "00280109", "00400244", "00400245", "00400253",
        "00400254", "00400260", "00400275", _SERIES_INSTANCE_COUNT,
    }
)  # fmt: skip

_CONTROL_PARAMETERS = frozenset({"limit", "offset", "includefield", "fuzzymatching"})
# Google's system parameters, accepted on every method and never matching keys.
_SYSTEM_PARAMETERS = frozenset(
    {
        "$.xgafv", "access_token", "alt", "callback", "fields", "key", "oauth_token", "prettyprint",
        "quotauser", "upload_protocol", "uploadtype",
    }
)  # fmt: skip

_HEX_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_NUMERIC_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "US or SS"})
_UNMATCHABLE_VRS = frozenset({"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"})
_BULK_LIMIT = 1024
_DATE = re.compile(r"\d{8}")
_TIME = re.compile(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?")


class QueryError(Exception):
    """A bad query parameter (a 400 in the API); the message names the parameter."""


# ----- metadata -----


BULKDATA_PREFIX = "bulkdata/"


def dataset_to_metadata(dataset: Dataset, pixel_data_vr: str | None = None) -> Metadata:
    """DICOM JSON (PS3.18 F.2) of ``dataset`` with bulk data as ``BulkDataURI`` references.

    Binary elements (OB, OD, OF, OL, OV, OW and UN) over 1 KiB, at any depth (inside sequences too), and the
    pixel data become ``{"vr": VR, "BulkDataURI": "bulkdata/<tag path>"}`` where the tag path is the tag, or
    ``SEQTAG/ITEM/.../TAG`` inside sequences (items from 0); the server makes it absolute when it answers.
    Smaller binary values stay inline (``InlineBinary``). ``pixel_data_vr`` adds the pixel data reference
    for a header read without its pixels. Undecodable elements are left out. Keys come out sorted.
    """
    marks: list[tuple[list[str], str]] = []
    kept = _without_bulk_data(dataset, [], marks)
    if pixel_data_vr:
        marks.append((["7FE00010"], pixel_data_vr))
    result: Metadata = kept.to_json_dict(suppress_invalid_tags=True)
    for path, vr in marks:
        _place(result, path, {"vr": vr, "BulkDataURI": BULKDATA_PREFIX + "/".join(path)})
    return dict(sorted(result.items()))


def _without_bulk_data(dataset: Dataset, path: list[str], marks: list[tuple[list[str], str]]) -> Dataset:
    kept = Dataset()
    for tag in sorted(dataset.keys()):
        key = f"{tag:08X}"
        try:
            element = dataset[tag]
        except Exception:  # an undecodable raw element: left out, as to_json_dict(suppress_invalid_tags) does
            continue
        if key in _PIXEL_DATA_TAGS:
            if element.value is not None:
                marks.append(([*path, key], _single_vr(element.VR)))
        elif element.VR == "SQ":
            items = [
                _without_bulk_data(item, [*path, key, str(number)], marks)
                for number, item in enumerate(element.value or [])
            ]
            kept.add_new(element.tag, "SQ", items)
        elif _is_bulk(element.VR, element.value):
            marks.append(([*path, key], _single_vr(element.VR)))
        else:
            kept.add(element)
    return kept


def _single_vr(vr: str) -> str:
    """An ambiguous VR (``OB or OW``) as one VR for DICOM JSON."""
    return "OB" if " or " in vr else vr


def _place(metadata: Metadata, path: list[str], element: Element) -> None:
    """Put ``element`` at a tag path (``TAG`` or ``SEQ/ITEM/.../TAG``) of DICOM JSON."""
    target: dict[str, Any] = metadata
    for tag, item in zip(path[:-1:2], path[1:-1:2], strict=True):
        items = target.get(tag, {}).get("Value") or []
        if int(item) >= len(items):
            return
        target = items[int(item)]
    target[path[-1]] = element


def _is_bulk(vr: str, value: Any) -> bool:
    binary = vr in _BINARY_VRS or isinstance(value, bytes | bytearray)  # bytes: an ambiguous VR left unresolved
    return binary and value is not None and len(value) > _BULK_LIMIT


# ----- search -----


def search(
    level: Level,
    instances: Iterable[Metadata],
    params: Mapping[str, list[str]],
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    fuzzy: bool = False,
) -> list[Metadata]:
    """The studies, series or instances matching ``params``, as DICOM JSON, ordered deterministically.

    ``instances`` is the metadata of every instance of the store; ``study_uid``/``series_uid`` are those of
    the request path (``/studies/{study}/series``, ``/studies/{study}/series/{series}/instances``).
    Raises QueryError for an unknown attribute, a malformed value, limit or offset.
    """
    found = _found(level, instances, params, study_uid=study_uid, series_uid=series_uid, fuzzy=fuzzy)
    return [copy.deepcopy(entity) for entity in found]


def search_json(
    level: Level,
    instances: Iterable[Metadata],
    params: Mapping[str, list[str]],
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    fuzzy: bool = False,
) -> bytes | None:
    """``search``'s answer as the JSON text of the response body (None when nothing matches).

    ``instances`` must come a study at a time (every instance of a study next to each other: the index's
    order, ``Repository.iter_metadata``). Each study is grouped, matched and its results encoded on its own,
    then dropped: a whole-store listing holds one study's metadata and the encoded results (with ``limit``,
    only the best ``offset + limit`` of them), never the whole store's metadata as Python objects.
    Raises QueryError as ``search`` does, ValueError when a study comes back after another one.
    """
    query = _parse_query(params, fuzzy=fuzzy and fuzzy_requested(params))
    encoded = _encoded(level, instances, query, study_uid=study_uid, series_uid=series_uid)
    if query.limit is None:
        ranked = sorted(encoded, key=_by_rank)[query.offset :]
    else:  # a heap of offset + limit results at most (nsmallest is stable, as sorted is)
        ranked = heapq.nsmallest(query.offset + query.limit, encoded, key=_by_rank)[query.offset :]
    return b"[" + b", ".join(text for _, text in ranked) + b"]" if ranked else None


def _by_rank(result: tuple[tuple[Any, ...], bytes]) -> tuple[Any, ...]:
    return result[0]


def _encoded(
    level: Level, instances: Iterable[Metadata], query: _Query, *, study_uid: str | None, series_uid: str | None
) -> Iterator[tuple[tuple[Any, ...], bytes]]:
    """(sort key, JSON) of every matching entity, a study at a time: an entity (and every attribute computed
    for it) lies within one study, so a study's own index answers for it as the whole store's would."""
    seen: set[str] = set()
    for study, members in itertools.groupby(instances, key=_study_of):
        if study in seen:
            raise ValueError(f"search_json: the instances of study {study} do not come together")
        seen.add(study)
        yield from _study_encoded(level, _Index(members), query, study_uid=study_uid, series_uid=series_uid)


def _study_encoded(
    level: Level, index: _Index, query: _Query, *, study_uid: str | None, series_uid: str | None
) -> list[tuple[tuple[Any, ...], bytes]]:
    """``_encoded``'s results of one study (a list: the study's index is dropped before the next is built)."""
    return [
        (key, json.dumps(_entity(level, members, index, query, study_uid=study_uid, series_uid=series_uid)).encode())
        for key, members in _matching(level, index, query, study_uid, series_uid)
    ]


def needed_tags(
    level: Level, params: Mapping[str, list[str]], *, study_uid: str | None = None, series_uid: str | None = None
) -> frozenset[str] | None:
    """The tags of an instance's metadata that ``search`` with these parameters can look at (its matching
    keys, the returned attributes, what grouping, ordering and the computed attributes read); None when it
    may need any of them (``includefield=all``). Raises QueryError as ``search`` does."""
    query = _parse_query(params)
    if query.include_all:
        return None
    return frozenset(
        {
            *_STRUCTURAL, *_STUDY_DEFAULTS, *_SERIES_DEFAULTS, *_INSTANCE_DEFAULTS,
            *(tag for tag, _ in query.filters), *query.returned_keys, *query.include,
        }
    )  # fmt: skip


def project(metadata: Metadata, tags: frozenset[str] | None) -> Metadata:
    """``metadata`` with only ``tags`` (all of it for None): what a search keeps of each instance."""
    return metadata if tags is None else {tag: element for tag, element in metadata.items() if tag in tags}


def _found(
    level: Level,
    instances: Iterable[Metadata],
    params: Mapping[str, list[str]],
    *,
    study_uid: str | None,
    series_uid: str | None,
    fuzzy: bool,
) -> Iterator[Metadata]:
    """The matching entities of the requested page, in order, each built when it is asked for (its
    elements are the instances' own: callers copy or serialise them)."""
    query = _parse_query(params, fuzzy=fuzzy and fuzzy_requested(params))
    index = _Index(instances)
    matching = sorted(_matching(level, index, query, study_uid, series_uid), key=lambda result: result[0])
    end = None if query.limit is None else query.offset + query.limit
    for _, members in matching[query.offset : end]:
        yield _entity(level, members, index, query, study_uid=study_uid, series_uid=series_uid)


def _matching(
    level: Level, index: _Index, query: _Query, study_uid: str | None, series_uid: str | None
) -> Iterator[tuple[tuple[Any, ...], list[Metadata]]]:
    """(sort key, instances) of each entity of ``index`` that matches the query, in the index's order."""
    for members in index.entities(level, study_uid, series_uid):
        if not any(all(test(index.element(item, tag)) for tag, test in query.filters) for item in members):
            continue
        # the entity's sort key read from its representative instance (the entity's values are its values)
        yield _sort_key(level, {**members[0], **index.computed(members[0])}), members


# ----- the query -----

_Matcher = Callable[[Element | None], bool]


@dataclass(frozen=True)
class _Query:
    filters: list[tuple[str, _Matcher]]
    returned_keys: list[str]  # matching keys, returned with the results (universal matching included)
    include: list[str]
    include_all: bool
    limit: int | None
    offset: int


def fuzzy_requested(params: Mapping[str, list[str]]) -> bool:
    """``fuzzymatching=true`` (``false`` or absent: False); QueryError for any other value."""
    values = [value for name, values in params.items() if name.lower() == "fuzzymatching" for value in values]
    if not values:
        return False
    if len(values) != 1 or values[0].strip().lower() not in ("true", "false"):
        raise QueryError(f"fuzzymatching must be true or false, got {', '.join(values)!r}")
    return values[0].strip().lower() == "true"


def _parse_query(params: Mapping[str, list[str]], *, fuzzy: bool = False) -> _Query:
    filters: list[tuple[str, _Matcher]] = []
    returned: list[str] = []
    include: list[str] = []
    include_all = False
    limit: int | None = None
    offset = 0
    for name, values in params.items():
        lowered = name.lower()
        if lowered == "limit":
            limit = _non_negative(name, values)
        elif lowered == "offset":
            offset = _non_negative(name, values)
        elif lowered == "includefield":
            fields = [field.strip() for value in values for field in value.split(",") if field.strip()]
            include_all = include_all or "all" in fields
            include += [_tag(field, "includefield") for field in fields if field != "all"]
        elif lowered in _CONTROL_PARAMETERS or lowered in _SYSTEM_PARAMETERS:
            continue
        else:
            tag = _tag(name, None)
            returned.append(tag)
            wanted = [value.strip() for value in values if value.strip() not in ("", "*")]
            if wanted:
                filters.append((tag, _any_of([_test(name, tag, value, fuzzy) for value in wanted])))
    return _Query(filters, returned, include, include_all, limit, offset)


def _non_negative(name: str, values: list[str]) -> int:
    if len(values) != 1:
        raise QueryError(f"{name} must be given once, got {len(values)} values")
    value = values[0].strip()
    if not value.isascii() or not value.isdigit():
        raise QueryError(f"{name} must be a non-negative integer, got {values[0]!r}")
    return int(value)


def _tag(key: str, parameter: str | None) -> str:
    """A keyword or 8-hex-digit tag as the 8-hex-digit tag; QueryError naming ``key`` when unknown."""
    if _HEX_TAG.fullmatch(key):
        return key.upper()
    tag = tag_for_keyword(key)
    if tag is None:
        where = f" in {parameter}" if parameter else ""
        raise QueryError(f"unknown attribute {key!r}{where}: not a DICOM keyword or an 8-hex-digit tag")
    return f"{tag:08X}"


def _vr(tag: str) -> str | None:
    try:
        return dictionary_VR(int(tag, 16))
    except KeyError:
        return None  # private or unknown: matched as a string


def _any_of(tests: list[_Matcher]) -> _Matcher:
    if len(tests) == 1:
        return tests[0]
    return lambda element: any(test(element) for test in tests)


def _test(name: str, tag: str, value: str, fuzzy: bool = False) -> _Matcher:
    """The test of one key value against an element (None when the instance lacks the attribute)."""
    vr = _vr(tag)
    if vr in _UNMATCHABLE_VRS:
        raise QueryError(f"{name} cannot be used as a matching key (VR {vr})")
    if vr == "UI":
        uids = {uid.strip() for uid in re.split(r"[,\\]", value) if uid.strip()}
        return _values_test(lambda stored: str(stored) in uids)
    if vr == "DA":
        low, high = _range(name, value, _date_bounds)
        return _values_test(lambda stored: low <= str(stored) <= high)
    if vr == "TM":
        low, high = _range(name, value, _time_bounds)
        return _values_test(lambda stored: _time_in(str(stored), low, high))
    if vr in _NUMERIC_VRS:
        number = _number(value)
        if number is None:
            raise QueryError(f"{name} must be a number, got {value!r}")
        return _values_test(lambda stored: _number(stored) == number)
    if vr == "PN" and fuzzy and not any(char in value for char in "*?"):
        match = _fuzzy_name_matcher(value)
        return _values_test(lambda stored: match(_text(stored)))
    if vr == "PN":
        match = _string_matcher(_normalize_name(value), ignore_case=True)
        return _values_test(lambda stored: match(_normalize_name(_text(stored))))
    match = _string_matcher(value, ignore_case=False)
    return _values_test(lambda stored: match(_text(stored)))


def _values_test(predicate: Callable[[Any], bool]) -> _Matcher:
    return lambda element: element is not None and any(predicate(value) for value in _values(element))


def _string_matcher(value: str, *, ignore_case: bool) -> Callable[[str], bool]:
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    if "*" in value or "?" in value:
        pattern = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in value)
        compiled = re.compile(pattern, flags)
        return lambda text: compiled.fullmatch(text) is not None
    if ignore_case:
        folded = value.casefold()
        return lambda text: text.casefold() == folded
    return lambda text: text == value


_NAME_WORD = re.compile(r"[^\s\^=,.\-]+")


def _fuzzy_name_matcher(value: str) -> Callable[[str], bool]:
    """Every word of ``value`` starts some word of the name (components and groups split alike)."""
    wanted = [word.casefold() for word in _NAME_WORD.findall(value)]

    def match(text: str) -> bool:
        words = [word.casefold() for word in _NAME_WORD.findall(text)]
        return all(any(word.startswith(part) for word in words) for part in wanted)

    return match


def _normalize_name(name: str) -> str:
    """``DOE^JANE^^^`` and ``DOE^JANE`` are the same name (trailing empty components are insignificant)."""
    return name.strip().rstrip("^ ")


def _range(name: str, value: str, bounds: Callable[[str], tuple[str, str] | None]) -> tuple[str, str]:
    """(lowest, highest) comparable form of a single value or a ``low-high`` / ``-high`` / ``low-`` range."""
    low_text, dash, high_text = value.partition("-")
    if not dash:
        high_text = low_text
    low_bounds = bounds(low_text) if low_text else ("", "")
    high_bounds = bounds(high_text) if high_text else ("", "\uffff")
    if low_bounds is None or high_bounds is None or not (low_text or high_text):
        kind = "date (YYYYMMDD)" if bounds is _date_bounds else "time (HHMMSS.FFFFFF)"
        raise QueryError(f"{name} must be a {kind} or a range of them (A-B, -B, A-), got {value!r}")
    return low_bounds[0], high_bounds[1]


def _date_bounds(text: str) -> tuple[str, str] | None:
    text = text.strip()
    return (text, text) if _DATE.fullmatch(text) else None


def _time_bounds(text: str) -> tuple[str, str] | None:
    """A (partial) time as the first and last instant it covers: ``10`` is 100000.000000-105959.999999."""
    found = _TIME.fullmatch(text.strip().replace(":", ""))
    if found is None:
        return None
    hours, minutes, seconds, fraction = found.groups()
    low = f"{hours}{minutes or '00'}{seconds or '00'}.{(fraction or '').ljust(6, '0')}"
    high = f"{hours}{minutes or '59'}{seconds or '59'}.{(fraction or '').ljust(6, '9')}"
    return low, high


def _time_in(text: str, low: str, high: str) -> bool:
    bounds = _time_bounds(text)
    return bounds is not None and low <= bounds[0] <= high


# ----- grouping -----


class _Index:
    """The instances grouped by study and series, with the attributes computed from the groups."""

    def __init__(self, instances: Iterable[Metadata]) -> None:
        # Sorted so that a group's first instance (whose values stand for the group) never depends on input order.
        self.instances = sorted(instances, key=_member_key)
        self.studies: dict[str, list[Metadata]] = {}
        self.series: dict[tuple[str, str], list[Metadata]] = {}
        for item in self.instances:
            self.studies.setdefault(_study_of(item), []).append(item)
            self.series.setdefault((_study_of(item), _series_of(item)), []).append(item)
        self.study_computed = {uid: _study_computed(members) for uid, members in self.studies.items()}
        self.series_computed = {
            key: {_SERIES_INSTANCE_COUNT: _element("IS", len(members))} for key, members in self.series.items()
        }

    def entities(self, level: Level, study_uid: str | None, series_uid: str | None) -> list[list[Metadata]]:
        """Each study, series or instance in the scope of the request path, as its list of instances."""
        if level == "studies":
            return [members for uid, members in self.studies.items() if study_uid in (None, uid)]
        scoped = [
            members
            for (study, series), members in self.series.items()
            if study_uid in (None, study) and series_uid in (None, series)
        ]
        return scoped if level == "series" else [[item] for members in scoped for item in members]

    def computed(self, item: Metadata) -> Metadata:
        study = _study_of(item)
        return {**self.study_computed[study], **self.series_computed[(study, _series_of(item))]}

    def element(self, item: Metadata, tag: str) -> Element | None:
        """The instance's element ``tag``, the computed attributes of its study and series included."""
        study = _study_of(item)
        computed = self.study_computed[study].get(tag) or self.series_computed[(study, _series_of(item))].get(tag)
        return computed if computed is not None else item.get(tag)


def _study_computed(members: list[Metadata]) -> Metadata:
    modalities = sorted({str(value) for item in members for value in _values(item.get(_MODALITY))})
    computed: Metadata = {
        _STUDY_SERIES_COUNT: _element("IS", len({_series_of(item) for item in members})),
        _STUDY_INSTANCE_COUNT: _element("IS", len(members)),
    }
    if modalities:
        computed[_MODALITIES_IN_STUDY] = _element("CS", *modalities)
    return computed


def _entity(
    level: Level,
    members: list[Metadata],
    index: _Index,
    query: _Query,
    *,
    study_uid: str | None,
    series_uid: str | None,
) -> Metadata:
    """The answer for one study, series or instance (``members``: its instances, first one representative)."""
    first = members[0]
    available = {**first, **index.computed(first)}
    with_study = level == "studies" or study_uid is None
    with_series = level == "series" or (level == "instances" and series_uid is None)
    tags: list[str] = []
    if with_study:
        tags += [*_STUDY_DEFAULTS, _MODALITIES_IN_STUDY, _STUDY_SERIES_COUNT, _STUDY_INSTANCE_COUNT]
    if with_series:
        tags += [*_SERIES_DEFAULTS, _SERIES_INSTANCE_COUNT]
    if level == "instances":
        tags += _INSTANCE_DEFAULTS
    rank = _RANKS[level]
    tags += [tag for tag in query.returned_keys if _level_of(tag) <= rank]
    tags += query.include
    if query.include_all:
        lowest = 0 if with_study else _RANKS["series"]
        tags += [tag for tag in available if lowest <= _level_of(tag) <= rank or level == "instances"]
    return {tag: available[tag] for tag in sorted(set(tags)) if tag in available and _is_plain(tag, available[tag])}


_RANKS: dict[Level, int] = {"studies": 0, "series": 1, "instances": 2}


def _level_of(tag: str) -> int:
    """0 for a study (or patient) attribute, 1 for a series attribute, 2 for anything else."""
    if tag in _STUDY_LEVEL or tag.startswith("0010"):
        return 0
    return 1 if tag in _SERIES_LEVEL else 2


def _is_plain(tag: str, element: Element) -> bool:
    return tag not in _PIXEL_DATA_TAGS and "BulkDataURI" not in element


# ----- ordering and values -----


def _member_key(item: Metadata) -> tuple[Any, ...]:
    return (*_number_key(item, _SERIES_NUMBER), _series_of(item), *_number_key(item, _INSTANCE_NUMBER), _sop_of(item))


def _sort_key(level: Level, entity: Metadata) -> tuple[Any, ...]:
    if level == "studies":
        date = _first(entity.get(_STUDY_DATE))
        return (date is None, str(date or ""), _study_of(entity))
    if level == "series":
        return (*_number_key(entity, _SERIES_NUMBER), _series_of(entity), _study_of(entity))
    return (*_number_key(entity, _INSTANCE_NUMBER), _sop_of(entity), _series_of(entity), _study_of(entity))


def _number_key(item: Metadata, tag: str) -> tuple[bool, float]:
    """Sorts numbers ascending, missing or non-numeric values last."""
    number = _number(_first(item.get(tag)))
    return (number is None, number if number is not None else 0.0)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _study_of(item: Metadata) -> str:
    return str(_first(item.get(_STUDY_UID)) or "")


def _series_of(item: Metadata) -> str:
    return str(_first(item.get(_SERIES_UID)) or "")


def _sop_of(item: Metadata) -> str:
    return str(_first(item.get(_SOP_INSTANCE_UID)) or "")


def _element(vr: str, *values: Any) -> Element:
    return {"vr": vr, "Value": list(values)}


def _values(element: Element | None) -> Sequence[Any]:
    values = element.get("Value") if element else None
    return values if isinstance(values, list) else []


def _first(element: Element | None) -> Any:
    values = _values(element)
    return values[0] if values else None


def _text(value: Any) -> str:
    if isinstance(value, dict):  # PN: {"Alphabetic": ..., "Ideographic": ..., "Phonetic": ...}
        return str(value.get("Alphabetic", ""))
    return str(value)
