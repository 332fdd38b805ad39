"""What the demo shows of the research store: the de-identified copy of what the pipeline imported.

Read through DICOMweb like a research user would (QIDO-RS studies, WADO-RS study metadata), compared with the
source store: how many instances and studies, whether a patient's name or ID or an original UID is left
anywhere in the copy's metadata. Counts only: no value is printed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from devstack.client import get_json

_PATIENT_NAME, _PATIENT_ID = "00100010", "00100020"
_STUDY, _SERIES, _SOP = "0020000D", "0020000E", "00080018"


@dataclass(frozen=True)
class ResearchCopy:
    instances: int
    studies: int
    source_studies: int
    with_patient_name: int  # instances whose PatientName has a value
    identifying_values_left: int  # instances holding a source patient name or ID anywhere in their metadata
    original_uids_left: int  # instances holding a source Study, Series or SOP Instance UID anywhere

    @property
    def clean(self) -> bool:
        return not (self.with_patient_name or self.identifying_values_left or self.original_uids_left)


def _values(item: dict[str, Any], tag: str) -> list[str]:
    values = (item.get(tag) or {}).get("Value") or []
    return [str(v.get("Alphabetic", "")) if isinstance(v, dict) else str(v) for v in values]


def _metadata(healthcare_url: str, store: str) -> list[dict[str, Any]]:
    studies = get_json(f"{healthcare_url}/v1/{store}/dicomWeb/studies") or []
    found: list[dict[str, Any]] = []
    for study in studies:
        for uid in _values(study, _STUDY):
            found.extend(get_json(f"{healthcare_url}/v1/{store}/dicomWeb/studies/{uid}/metadata") or [])
    return found


def research_copy(healthcare_url: str, source_store: str, research_store: str) -> ResearchCopy:
    """Compare the research store with the source store."""
    source = _metadata(healthcare_url, source_store)
    copy = _metadata(healthcare_url, research_store)
    identifying = {v for item in source for tag in (_PATIENT_NAME, _PATIENT_ID) for v in _values(item, tag) if v}
    originals = {v for item in source for tag in (_STUDY, _SERIES, _SOP) for v in _values(item, tag)}
    texts = [json.dumps(item) for item in copy]
    return ResearchCopy(
        instances=len(copy),
        studies=len({v for item in copy for v in _values(item, _STUDY)}),
        source_studies=len({v for item in source for v in _values(item, _STUDY)}),
        with_patient_name=sum(1 for item in copy if any(_values(item, _PATIENT_NAME))),
        identifying_values_left=sum(1 for text in texts if any(value in text for value in identifying)),
        original_uids_left=sum(1 for text in texts if any(f'"{uid}"' in text for uid in originals)),
    )
