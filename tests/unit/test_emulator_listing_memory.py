"""Whole-store QIDO-RS listings: what one holds at its peak, and how many run at once.

Several listings at once each held the whole store's metadata as Python objects (records, parsed DICOM JSON,
the results and their deep copies: about 230 MiB at the peak for 6,200 instances), and the emulator's RSS
kept the highest sum (the soak's +77 %). Measured with tracemalloc (deterministic allocation counts), against
the size of the parsed metadata in the same test: no RSS, no wall clock.
"""

from __future__ import annotations

import json
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from devstack.synthetic import generate_dataset
from healthcare_emulator import dicomweb, qido
from healthcare_emulator.app import create_app
from healthcare_emulator.gcs import GcsClient
from healthcare_emulator.instances import parse_instance
from healthcare_emulator.qido import search
from healthcare_emulator.service import Emulator

DATASET = "projects/p/locations/l/datasets/d"
STORE = f"{DATASET}/dicomStores/s"
LISTING = f"/v1/{STORE}/dicomWeb/instances?includefield=00080018"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = Emulator.open(Path(tmp_path_factory.mktemp("listing")), GcsClient.for_endpoint(None))
    emulator.repository.insert_resource("datasets", DATASET, "projects/p/locations/l", {"name": DATASET})
    emulator.repository.insert_resource("stores", STORE, DATASET, {"name": STORE})
    for item in generate_dataset(6, 5, 10, seed=3):  # 300 instances
        emulator.repository.store_instance(STORE, parse_instance(item.data), item.data, "STANDARD")
    yield emulator
    emulator.close()


def _every_metadata(emulator: Emulator) -> list[dict[str, Any]]:
    return [record.metadata for record in emulator.repository.find_instances(STORE)]


def test_a_whole_store_listing_answers_what_search_over_the_whole_metadata_answers(emulator: Emulator) -> None:
    client = Client(create_app(emulator))
    for query in (
        "includefield=00080018",
        "includefield=all",
        "Modality=MR&limit=7&offset=3",
        "Modality=MR&offset=3",
        "PatientName=*",
    ):
        for level in ("studies", "series", "instances"):
            params = {key: [value] for key, _, value in (pair.partition("=") for pair in query.split("&"))}
            expected = search(level, _every_metadata(emulator), params)
            response = client.get(f"/v1/{STORE}/dicomWeb/{level}?{query}")
            assert response.status_code == (200 if expected else 204), (level, query)
            assert (json.loads(response.data) if expected else []) == expected, (level, query)


def test_a_whole_store_listing_holds_far_less_than_the_stores_metadata_at_its_peak(emulator: Emulator) -> None:
    client = Client(create_app(emulator))
    client.get(LISTING)  # warm-up: imports, caches of pydicom's dictionary
    tracemalloc.start(1)
    try:
        start = tracemalloc.get_traced_memory()[0]
        metadata = _every_metadata(emulator)
        whole = tracemalloc.get_traced_memory()[0] - start  # the parsed metadata of every instance
        del metadata
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        response = client.get(LISTING)
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    assert response.status_code == 200 and len(json.loads(response.data)) == 300
    # before: records + all the metadata + results + their copies, 1.6x the metadata; now about 0.5x
    assert peak < whole * 0.8, f"listing peak {peak} bytes, the store's metadata {whole} bytes"


def test_whole_store_listings_run_one_at_a_time_while_study_searches_do_not_wait(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    running, most = 0, 0
    lock = threading.Lock()
    arrived = threading.Event()
    real = qido.search_json

    def counting(*args: Any, **kwargs: Any) -> bytes | None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            if running > 1:
                arrived.set()
        arrived.wait(0.5)  # gives a second listing the chance to come in (it never can with the bound)
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(dicomweb, "search_json", counting)
    app = create_app(emulator)
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(Client(app).get(LISTING).status_code)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 4
    assert most == 1
    # a study's search does not take the whole-store permit: it answers while a listing holds it
    study = _every_metadata(emulator)[0]["0020000D"]["Value"][0]
    with emulator.store_searches:
        assert Client(app).get(f"/v1/{STORE}/dicomWeb/studies/{study}/series").status_code == 200


def test_the_index_is_read_a_chunk_at_a_time_and_writes_go_on_between_chunks(emulator: Emulator) -> None:
    texts = emulator.repository.iter_metadata(STORE, chunk=7)
    first = next(texts)
    # WHEN another thread writes while the listing is between chunks, it does not wait for the listing
    written = threading.Event()

    def write() -> None:
        emulator.repository.set_storage_class(STORE, "STANDARD")
        written.set()

    writer = threading.Thread(target=write)
    writer.start()
    writer.join(timeout=30)
    assert written.is_set()
    # THEN the listing still yields every instance once, in index order
    sops = [json.loads(text)["00080018"]["Value"][0] for text in [first, *texts]]
    assert sops == [record.sop for record in emulator.repository.find_instances(STORE)]
