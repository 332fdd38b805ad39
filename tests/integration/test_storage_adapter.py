"""The Cloud Storage adapter against fake-gcs-server: ranged reads, bounded listings, create-once writes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.cloud import storage

from dicomflow.adapters import http_pool
from dicomflow.adapters.factory import storage_client
from dicomflow.adapters.storage import GcsObjectStore
from dicomflow.errors import NotFoundError, ObjectGoneError
from tests.integration.conftest import PROJECT, LocalServices

pytestmark = pytest.mark.integration


def test_put_json_honours_generation_preconditions(gcs: storage.Client, bucket: storage.Bucket) -> None:
    store = GcsObjectStore(gcs)
    created = store.put_json(bucket.name, "state/a.json", {"n": 1}, if_generation=0)
    assert created is not None
    assert store.put_json(bucket.name, "state/a.json", {"n": 2}, if_generation=0) is None  # exists: create-once
    found = store.read_json(bucket.name, "state/a.json")
    assert found == ({"n": 1}, created)  # put_json returns the generation it wrote
    replaced = store.put_json(bucket.name, "state/a.json", {"n": 3}, if_generation=created)
    assert replaced is not None and replaced != created
    assert store.put_json(bucket.name, "state/a.json", {"n": 4}, if_generation=created) is None  # stale
    assert store.read_json(bucket.name, "missing.json") is None


def test_delete_is_idempotent_and_missing_things_say_what_is_missing(
    gcs: storage.Client, bucket: storage.Bucket
) -> None:
    store = GcsObjectStore(gcs)
    store.write_text(bucket.name, "staging/x", "x")
    assert store.delete(bucket.name, "staging/x") is True
    assert store.delete(bucket.name, "staging/x") is False  # already gone: not an error
    with pytest.raises(NotFoundError, match="bucket no-such-bucket-here does not exist"):
        store.list_objects("no-such-bucket-here", "", recursive=True, limit=10)


def test_read_range_reads_only_what_is_asked(gcs: storage.Client, bucket: storage.Bucket) -> None:
    bucket.blob("r.bin").upload_from_string(bytes(range(256)) * 4)
    store = GcsObjectStore(gcs)
    assert store.read_range(bucket.name, "r.bin", None, 10, 20) == bytes(range(10, 20))
    assert store.read_range(bucket.name, "r.bin", None, 1000, 5000) == (bytes(range(256)) * 4)[1000:]
    with pytest.raises(ObjectGoneError):
        store.read_range(bucket.name, "nope.bin", None, 0, 10)
    generation = str(bucket.get_blob("r.bin").generation)
    bucket.blob("r.bin").upload_from_string(b"new content")
    with pytest.raises(ObjectGoneError):
        store.read_range(bucket.name, "r.bin", generation, 0, 10)  # that generation was replaced


def test_list_objects_direct_children_recursive_and_bounded(gcs: storage.Client, bucket: storage.Bucket) -> None:
    for name in ("d/a.dcm", "d/b.dcm", "d/sub/c.dcm", "d/sub/", "e/x.dcm"):
        bucket.blob(name).upload_from_string(b"x")
    store = GcsObjectStore(gcs)
    assert store.list_objects(bucket.name, "d/", recursive=False, limit=100).names == ("d/a.dcm", "d/b.dcm")
    assert store.list_objects(bucket.name, "d/", recursive=True, limit=100).names == (
        "d/a.dcm",
        "d/b.dcm",
        "d/sub/c.dcm",
    )
    bounded = store.list_objects(bucket.name, "", recursive=True, limit=2)
    assert bounded.truncated and len(bounded.names) == 2


def test_the_storage_client_closes_pooled_connections_left_idle(
    services: LocalServices, bucket: storage.Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_pool, "IDLE_SECONDS", 0.5)
    client = storage_client(PROJECT, {"STORAGE_EMULATOR_HOST": services.storage_host})
    bucket.blob("idle/object.bin").upload_from_string(bytes(256 * 1024))
    blob = client.bucket(bucket.name).blob("idle/object.bin")

    with ThreadPoolExecutor(8) as pool:  # concurrent reads: a connection each while they overlap
        list(pool.map(lambda _: blob.download_as_bytes(), range(64)))
    burst = _open_pooled_connections(client)
    assert burst >= 2, "the reads never overlapped, so the test shows nothing"
    time.sleep(0.7)
    blob.download_as_bytes()
    assert _open_pooled_connections(client) == 1  # the idle ones closed; the read reused or opened one


def _open_pooled_connections(client: storage.Client) -> int:
    pools = client._http.get_adapter(client._connection.API_BASE_URL).poolmanager.pools
    return sum(
        1
        for key in pools.keys()  # noqa: SIM118 - the pool container cannot be iterated itself
        for connection, _ in pools[key].pool.queue
        if connection is not None and connection.sock is not None
    )
