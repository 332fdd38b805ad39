"""What the emulator holds per request, and the allocator trimming that gives freed heap memory back.

The soak's emulator RSS grew within each life while its live Python objects stayed flat: the requests' peaks
(whole-store QIDO-RS listings, entries:list reading the whole log) grow with the store and the log, and
glibc keeps each thread arena's high-water mark. Counts of objects alive and of entries read, no RSS, no
wall clock.
"""

from __future__ import annotations

import json
import platform
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from devstack.synthetic import generate_dataset
from healthcare_emulator import debug_memory
from healthcare_emulator.allocator import Trimmer, find_malloc_trim, limit_arenas
from healthcare_emulator.app import create_app
from healthcare_emulator.gcs import GcsClient
from healthcare_emulator.instances import parse_instance
from healthcare_emulator.log_entries import LogSource, error_entry
from healthcare_emulator.qido import search, search_json
from healthcare_emulator.repository import Repository
from healthcare_emulator.service import Emulator

DATASET = "projects/p/locations/l/datasets/d"
STORE = f"{DATASET}/dicomStores/s"


class _Tracked(dict[str, Any]):
    """A metadata dict that can be watched with a weak reference."""


@pytest.fixture(scope="module")
def metadata() -> list[dict[str, Any]]:
    """6 studies x 2 series x 5 instances, in the index's order (a study's instances together)."""
    made = generate_dataset(6, 2, 5, seed=11)
    items = [parse_instance(item.data).metadata for item in made]
    return sorted(items, key=lambda item: item["0020000D"]["Value"][0])


def test_search_json_holds_one_studys_instances_at_a_time(metadata: list[dict[str, Any]]) -> None:
    alive: list[weakref.ref[_Tracked]] = []
    most = 0

    def instances() -> Iterator[dict[str, Any]]:
        nonlocal most
        for item in metadata:
            most = max(most, sum(1 for ref in alive if ref() is not None))
            tracked = _Tracked(json.loads(json.dumps(item)))  # a copy only the search holds
            alive.append(weakref.ref(tracked))
            yield tracked

    body = search_json("instances", instances(), {"includefield": ["00080018"]})
    assert body is not None and len(json.loads(body)) == 60
    # the store's 60 instances were never alive at once: one study of 10 (and the next one's first)
    assert most <= 11


@pytest.mark.parametrize("level", ["studies", "series", "instances"])
@pytest.mark.parametrize(
    "params",
    [{}, {"includefield": ["all"]}, {"Modality": ["CT"], "limit": ["4"], "offset": ["2"]}, {"offset": ["7"]}],
)
def test_search_json_answers_what_search_answers(
    metadata: list[dict[str, Any]], level: str, params: dict[str, list[str]]
) -> None:
    expected = search(level, metadata, params)  # type: ignore[arg-type]
    body = search_json(level, iter(metadata), params)  # type: ignore[arg-type]
    assert (json.loads(body) if body else []) == expected


def test_search_json_refuses_a_study_that_comes_back(metadata: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="do not come together"):
        search_json("studies", [*metadata, metadata[0]], {})


def _entries(count: int) -> list[dict[str, Any]]:
    source = LogSource(f"{DATASET}/operations/9", "ImportDicomData", STORE)
    # three timestamps only: equal timestamps keep insertion order, across the chunks of a read too
    return [error_entry(source, n, f"gs://b/{n}.dcm", "not DICOM", 3, f"2026-01-01T00:00:0{n % 3}Z", "r")
            for n in range(1, count + 1)]  # fmt: skip


def test_log_entries_are_read_in_chunks_in_timestamp_then_insertion_order(tmp_path: Path) -> None:
    repository = Repository(tmp_path)
    entries = _entries(20)
    repository.add_log_entries("p", entries)
    expected = sorted(entries, key=lambda entry: entry["timestamp"])  # stable: insertion order within a timestamp
    assert list(repository.iter_log_entries(["p"], chunk=3)) == expected
    assert list(repository.iter_log_entries(["p"], newest_first=True, chunk=3)) == expected[::-1]
    assert repository.log_entries(["p"]) == expected
    repository.close()


def test_entries_list_reads_one_page_of_the_log_not_all_of_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = Emulator.open(tmp_path, GcsClient.for_endpoint(None))
    entries = _entries(300)
    emulator.repository.add_log_entries("p", entries)
    read = 0
    real = emulator.repository.iter_log_entries

    def counting(*args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        nonlocal read
        for entry in real(*args, **kwargs):
            read += 1
            yield entry

    monkeypatch.setattr(emulator.repository, "iter_log_entries", counting)
    client = Client(create_app(emulator))
    pages: list[dict[str, Any]] = []
    body: dict[str, Any] = {"resourceNames": ["projects/p"], "pageSize": 40, "orderBy": "timestamp desc"}
    while True:
        read = 0
        answer = client.post("/v2/entries:list", json=body).get_json()
        pages += answer.get("entries", [])
        assert read <= int(body.get("pageToken") or 0) + 41  # the entries before the page, the page, one more
        if "nextPageToken" not in answer:
            break
        body["pageToken"] = answer["nextPageToken"]
    assert pages == sorted(entries, key=lambda entry: entry["timestamp"])[::-1]
    emulator.close()


def test_the_trimmer_calls_trim_until_stopped() -> None:
    called = threading.Event()
    arguments: list[int] = []

    def trim(pad: int) -> int:
        arguments.append(pad)
        called.set()
        return 1

    trimmer = Trimmer(0.01, trim=trim).start()
    assert called.wait(30)
    trimmer.stop()
    count = trimmer.trims
    trimmer.trim_now()
    assert trimmer.trims == count + 1 and set(arguments) == {0}


def test_a_trimmer_of_zero_seconds_never_trims_on_its_own() -> None:
    trimmer = Trimmer(0, trim=lambda pad: pytest.fail("trimmed"))
    trimmer.start()
    trimmer.stop()
    assert trimmer.trims == 0


def test_malloc_trim_is_found_on_glibc() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    trim = find_malloc_trim()
    assert trim is not None
    trim(0)
    assert limit_arenas(8)  # harmless for the other tests: 8 arenas still
    assert not limit_arenas(0)


def test_the_memory_endpoint_is_served_only_when_asked_for(tmp_path: Path) -> None:
    emulator = Emulator.open(tmp_path, GcsClient.for_endpoint(None))
    client = Client(create_app(emulator))
    assert client.get("/emulator/memory").status_code == 404
    emulator.debug_memory = True
    answer = client.post("/emulator/memory", json={"trim": True}).get_json()
    assert answer["threads"] >= 1 and "rssKiBAfterTrim" in answer
    assert debug_memory.report(tmp_path)["rssKiB"] > 0
    emulator.close()
