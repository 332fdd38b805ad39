"""Store queries of reconcile, verify and backfill: the coarsest level that answers, concurrently, paged."""

from __future__ import annotations

import json
import threading
from typing import Any

import requests

from dicomflow import pool
from dicomflow.adapters.healthcare import GoogleHealthcareApi
from dicomflow.messages.records import PendingRecord
from dicomflow.reconcile.import_check import present_instances, stored_instances
from dicomflow.retry import RetryPolicy
from tests.fakes.gathering import Gathering
from tests.fakes.services import FakeHealthcare


class CountingHealthcare(FakeHealthcare):
    """A store whose QIDO-RS queries are counted by level and held until ``at_once`` of them are in flight at
    once (1: never held), the most counted."""

    def __init__(self, at_once: int = 1) -> None:
        super().__init__()
        self.calls = {"series": 0, "study": 0}
        self.gathering = Gathering(at_once)
        self._lock = threading.Lock()

    def _query(self, level: str) -> None:
        with self._lock:
            self.calls[level] += 1
        with self.gathering.call():
            pass

    def series_instances(self, study_uid: str, series_uid: str) -> set[str]:
        self._query("series")
        return super().series_instances(study_uid, series_uid)

    def study_instances(self, study_uid: str) -> set[tuple[str, str]]:
        self._query("study")
        return super().study_instances(study_uid)


def _record(study: str, series: str, sop: str) -> PendingRecord:
    return PendingRecord(
        bucket="src", name=f"{study}/{series}/{sop}.dcm", generation="1", size=10, crc32c=None, study_uid=study,
        series_uid=series, sop_uid=sop, transfer_syntax="1.2.840.10008.1.2.1", modality="CT",
        event_time="2026-11-28T11:59:00+00:00",
    )  # fmt: skip


def _batch(studies: int, series_per_study: int, per_series: int) -> list[PendingRecord]:
    return [
        _record(f"1.{st}", f"1.{st}.{se}", f"1.{st}.{se}.{i}")
        for st in range(studies) for se in range(series_per_study) for i in range(per_series)
    ]  # fmt: skip


def test_a_batch_of_1000_series_in_100_studies_costs_one_study_query_each_run_concurrently() -> None:
    # GIVEN 10,000 files over 1,000 series of 100 studies; the store holds every other file, plus instances of
    # other batches in the same studies (a series the batch does not name)
    records = _batch(100, 10, 10)
    healthcare = CountingHealthcare(at_once=2)
    healthcare.stored = {(r.study_uid, r.series_uid, r.sop_uid) for r in records[::2]}
    healthcare.stored |= {(f"1.{st}", f"1.{st}.old", f"1.{st}.old.1") for st in range(100)}
    # WHEN reconcile asks which are present
    present = present_instances(healthcare, records)
    # THEN exactly the stored files of the batch, at one study-level query per study, several at once
    assert present == {(r.study_uid, r.series_uid, r.sop_uid) for r in records[::2]}
    assert healthcare.calls == {"series": 0, "study": 100}
    assert 1 < healthcare.gathering.most <= pool.WORKERS


def test_a_study_with_one_series_of_the_batch_is_asked_at_series_level() -> None:
    # GIVEN one study with one series of the batch and another with two
    healthcare = CountingHealthcare()
    series = [("1.1", "1.1.1"), ("1.2", "1.2.1"), ("1.2", "1.2.2")]
    healthcare.stored = {("1.1", "1.1.1", "a"), ("1.2", "1.2.2", "b"), ("1.2", "1.2.9", "c")}
    # WHEN the stored instances of those series are asked
    stored = stored_instances(healthcare, series)
    # THEN one series query, one study query, and each series' answer (empty for a series the store lacks)
    assert healthcare.calls == {"series": 1, "study": 1}
    assert stored == {("1.1", "1.1.1"): {"a"}, ("1.2", "1.2.1"): set(), ("1.2", "1.2.2"): {"b"}}


class _QidoPages(requests.Session):
    """A DICOMweb session answering instance queries from ``total`` instances, honouring limit and offset."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total = total
        self.asked: list[dict[str, Any]] = []

    def get(self, url: str | bytes, **kwargs: Any) -> requests.Response:
        params = dict(kwargs["params"])
        self.asked.append(params)
        start, limit = int(params["offset"]), int(params["limit"])
        page = [{"0020000E": {"vr": "UI", "Value": [f"1.2.{n % 7}"]}, "00080018": {"vr": "UI", "Value": [f"1.2.3.{n}"]}}
                for n in range(start, min(self.total, start + limit))]  # fmt: skip
        response = requests.Response()
        response.status_code = 200 if page else 204
        response._content = json.dumps(page).encode() if page else b""
        return response


def test_a_study_query_pages_at_the_apis_limit_of_50000_instances() -> None:
    # GIVEN a study of 120,000 stored instances
    session = _QidoPages(120_000)
    api = GoogleHealthcareApi(None, session, "projects/p/locations/l/datasets/d/dicomStores/s",
                              RetryPolicy(attempts=1, initial_delay=0.0), base_url="http://api")  # fmt: skip
    # WHEN its instances are asked
    found = api.study_instances("1.2")
    # THEN three pages of at most 50,000, each from where the last ended, with the series and SOP UIDs asked for
    assert len(found) == 120_000
    assert [(p["limit"], p["offset"]) for p in session.asked] == [("50000", "0"), ("50000", "50000"),
                                                                   ("50000", "100000")]  # fmt: skip
    assert session.asked[0]["includefield"] == ["0020000E", "00080018"]
