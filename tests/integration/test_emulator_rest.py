"""The emulator's REST surface through google-api-python-client, with fake-gcs-server as the bucket."""

from __future__ import annotations

import itertools
import json
import urllib.request
from typing import Any

import pytest
from google.cloud import storage
from googleapiclient.errors import HttpError

from devstack.synthetic import generate_dataset, make_instance
from tests.integration.conftest import LOCATION, PROJECT, StoreRef, upload, wait_for_operation

pytestmark = pytest.mark.integration


def _datasets(api: Any) -> Any:
    return api.projects().locations().datasets()


def _stores(api: Any) -> Any:
    return _datasets(api).dicomStores()


def _error(exc: HttpError) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.content)["error"]
    return body


def _import(api: Any, store: StoreRef, uri: str, **extra: Any) -> dict[str, Any]:
    operation = _stores(api).import_(name=store.name, body={"gcsSource": {"uri": uri}, **extra}).execute()
    return wait_for_operation(api, operation["name"])


def _instances(api: Any, store: StoreRef) -> set[str]:
    found = _stores(api).searchForInstances(parent=store.name, dicomWebPath="instances").execute()
    return {item["00080018"]["Value"][0] for item in found}


def _logged_reasons(operation: dict[str, Any]) -> dict[str, str]:
    """Source -> error message of the log entries the operation's logsUrl view shows."""
    with urllib.request.urlopen(operation["metadata"]["logsUrl"], timeout=10) as response:
        entries = json.loads(response.read()).get("entries", [])
    return {e["jsonPayload"]["source"]: e["jsonPayload"]["error"]["message"] for e in entries}


# ----- datasets and stores -----


def test_dataset_lifecycle_create_get_list_delete(api: Any) -> None:
    parent = f"projects/{PROJECT}/locations/{LOCATION}"
    # WHEN a dataset is created
    operation = _datasets(api).create(parent=parent, datasetId="lifecycle-ds", body={"timeZone": "UTC"}).execute()
    try:
        # THEN the answer is a finished operation whose response is the dataset
        assert operation["done"] is True
        assert operation["response"]["name"] == f"{parent}/datasets/lifecycle-ds"
        assert _datasets(api).get(name=f"{parent}/datasets/lifecycle-ds").execute()["timeZone"] == "UTC"
        names = [d["name"] for d in _datasets(api).list(parent=parent).execute()["datasets"]]
        assert f"{parent}/datasets/lifecycle-ds" in names
        # AND a second create with the same id is a 409 ALREADY_EXISTS naming it
        with pytest.raises(HttpError) as conflict:
            _datasets(api).create(parent=parent, datasetId="lifecycle-ds", body={}).execute()
        assert conflict.value.status_code == 409
        assert _error(conflict.value)["status"] == "ALREADY_EXISTS"
        assert "lifecycle-ds" in _error(conflict.value)["message"]
    finally:
        _datasets(api).delete(name=f"{parent}/datasets/lifecycle-ds").execute()
    with pytest.raises(HttpError) as missing:
        _datasets(api).get(name=f"{parent}/datasets/lifecycle-ds").execute()
    assert missing.value.status_code == 404
    assert "lifecycle-ds does not exist" in _error(missing.value)["message"]


def test_dataset_create_rejects_an_invalid_id(api_v1: Any) -> None:
    with pytest.raises(HttpError) as bad:
        _datasets(api_v1).create(parent=f"projects/{PROJECT}/locations/{LOCATION}", datasetId="a/b", body={}).execute()
    assert bad.value.status_code == 400
    assert _error(bad.value)["status"] == "INVALID_ARGUMENT"


def test_dicom_store_lifecycle_create_get_patch_list_delete(api: Any, store: StoreRef) -> None:
    created = (
        _stores(api).create(parent=store.dataset_name, dicomStoreId="second", body={"labels": {"a": "1"}}).execute()
    )
    assert created["name"] == f"{store.dataset_name}/dicomStores/second"
    patched = _stores(api).patch(name=created["name"], updateMask="labels", body={"labels": {"b": "2"}}).execute()
    assert patched["labels"] == {"b": "2"}
    assert _stores(api).get(name=created["name"]).execute()["labels"] == {"b": "2"}
    listed = [s["name"] for s in _stores(api).list(parent=store.dataset_name).execute()["dicomStores"]]
    assert listed == sorted([store.name, created["name"]])
    _stores(api).delete(name=created["name"]).execute()
    with pytest.raises(HttpError) as missing:
        _stores(api).get(name=created["name"]).execute()
    assert missing.value.status_code == 404
    assert "DICOM store" in _error(missing.value)["message"]


def test_unknown_path_answers_googles_error_shape(services: Any) -> None:
    request = urllib.request.Request(f"{services.healthcare_url}/v1/projects/p/nothing-here?alt=json")
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=10)
    body = json.loads(answer.value.read())
    assert answer.value.code == 404
    assert body["error"]["code"] == 404
    assert body["error"]["status"] == "NOT_FOUND"
    assert "/v1/projects/p/nothing-here" in body["error"]["message"]


# ----- import -----


def _uids(count: int, seed: int) -> list[Any]:
    return generate_dataset(1, 1, count, seed=seed)


def test_import_wildcards_match_exactly_what_the_grammar_says(
    api: Any, store: StoreRef, bucket: storage.Bucket
) -> None:
    # GIVEN the objects of DESIGN.md §1's examples plus nested folders and a non-matching extension
    instances = _uids(6, seed=11)
    names = ["Example.dcm", "Example22.dcm", "Example1.dcm", "Example01.dcm", "dir/x/y/a.dcm", "dir/b.txt"]
    upload(bucket, {name: inst.data for name, inst in zip(names, instances, strict=True)})
    by_name = {name: inst.sop_uid for name, inst in zip(names, instances, strict=True)}

    # WHEN importing with `?`
    operation = _import(api, store, f"gs://{bucket.name}/Example?.dcm")
    # THEN only Example1.dcm is imported
    assert operation["response"]["@type"].endswith("ImportDicomDataResponse")
    assert operation["metadata"]["counter"] == {"success": "1"}
    assert _instances(api, store) == {by_name["Example1.dcm"]}

    # WHEN importing with `*` THEN Example.dcm and Example22.dcm join (Example1 again counts as a duplicate)
    operation = _import(api, store, f"gs://{bucket.name}/Example*.dcm")
    assert operation["metadata"]["counter"] == {"success": "4"}
    assert _instances(api, store) == {
        by_name[n] for n in ("Example1.dcm", "Example.dcm", "Example22.dcm", "Example01.dcm")
    }

    # WHEN importing with `**.dcm` below dir THEN the nested .dcm comes, the .txt does not
    operation = _import(api, store, f"gs://{bucket.name}/dir/**.dcm")
    assert operation["metadata"]["counter"] == {"success": "1"}
    assert by_name["dir/x/y/a.dcm"] in _instances(api, store)
    assert by_name["dir/b.txt"] not in _instances(api, store)


@pytest.mark.parametrize("uri_suffix", ["dir/[ab].dcm", "**/a.dcm", "dir/**/*.dcm", "a*/**.dcm", "***.dcm"])
def test_import_rejects_invalid_wildcards_with_400(api_v1: Any, store: StoreRef, uri_suffix: str) -> None:
    with pytest.raises(HttpError) as bad:
        _stores(api_v1).import_(
            name=store.name, body={"gcsSource": {"uri": f"gs://some-bucket/{uri_suffix}"}}
        ).execute()
    assert bad.value.status_code == 400
    assert _error(bad.value)["status"] == "INVALID_ARGUMENT"
    assert "gs://some-bucket/" in _error(bad.value)["message"]


def test_import_records_every_failure_and_serves_it_at_logs_url(
    api: Any, store: StoreRef, bucket: storage.Bucket
) -> None:
    # GIVEN two good instances, a text file named .dcm, an empty file, and a same-UID file with other bytes
    good = _uids(2, seed=21)
    changed = make_instance(
        study_uid=good[0].study_uid, series_uid=good[0].series_uid, sop_uid=good[0].sop_uid, seed=99
    )
    upload(
        bucket,
        {
            "in/a.dcm": good[0].data,
            "in/b.dcm": good[1].data,
            "in/c.dcm": b"hello, not dicom",
            "in/d.dcm": b"",
        },
    )
    assert _import(api, store, f"gs://{bucket.name}/in/*.dcm")["metadata"]["counter"] == {
        "success": "2",
        "failure": "2",
    }
    upload(bucket, {"again/a.dcm": good[0].data, "again/conflict.dcm": changed})

    # WHEN the identical duplicate and the conflicting file are imported
    operation = _import(api, store, f"gs://{bucket.name}/again/**")

    # THEN the duplicate counts as success, the conflict fails, and the operation ends with an error
    assert operation["done"] is True
    assert operation["metadata"]["counter"] == {"success": "1", "failure": "1"}
    assert "1 of 2 items failed" in operation["error"]["message"]
    # AND the per-file reasons are reachable from the operation's logsUrl
    logs = _logged_reasons(operation)
    assert list(logs) == [f"gs://{bucket.name}/again/conflict.dcm"]
    assert "checksum mismatch" in logs[f"gs://{bucket.name}/again/conflict.dcm"]
    # AND the stored instance kept its original bytes
    assert _instances(api, store) == {good[0].sop_uid, good[1].sop_uid}


def test_import_failure_reasons_name_the_problem(api_v1: Any, store: StoreRef, bucket: storage.Bucket) -> None:
    upload(bucket, {"bad/text.dcm": b"hello", "bad/empty.dcm": b""})
    operation = _import(api_v1, store, f"gs://{bucket.name}/bad/*")
    reasons = _logged_reasons(operation)
    assert reasons == {
        f"gs://{bucket.name}/bad/empty.dcm": "empty file",
        f"gs://{bucket.name}/bad/text.dcm": "not a DICOM Part 10 file: no 'DICM' prefix after the 128-byte preamble",
    }
    assert operation["error"]["details"][0]["sampleErrors"][0]["resource"].startswith(f"gs://{bucket.name}/bad/")


def test_import_of_one_named_object_and_of_nothing(api_v1: Any, store: StoreRef, bucket: storage.Bucket) -> None:
    instance = _uids(1, seed=31)[0]
    upload(bucket, {"one.dcm": instance.data, "one.dcm.bak": instance.data})
    # A URI without wildcards names exactly one object (not its look-alikes)...
    assert _import(api_v1, store, f"gs://{bucket.name}/one.dcm")["metadata"]["counter"] == {"success": "1"}
    # ...and a missing one is a failed file with the reason
    missing = _import(api_v1, store, f"gs://{bucket.name}/missing.dcm")
    assert missing["metadata"]["counter"] == {"failure": "1"}
    assert _logged_reasons(missing) == {f"gs://{bucket.name}/missing.dcm": "object does not exist"}
    # A wildcard that matches nothing ends the operation with NOT_FOUND
    nothing = _import(api_v1, store, f"gs://{bucket.name}/nothing/**")
    assert nothing["error"]["code"] == 5
    assert "no objects match" in nothing["error"]["message"]


def test_import_counters_fall_and_rise_while_it_runs(api_v1: Any, store: StoreRef, bucket: storage.Bucket) -> None:
    # GIVEN enough files that the import takes a while
    instances = generate_dataset(4, 3, 25, seed=41)
    upload(bucket, {f"big/{i.relative_path}": i.data for i in instances})
    operation = (
        _stores(api_v1)
        .import_(name=store.name, body={"gcsSource": {"uri": f"gs://{bucket.name}/big/**.dcm"}})
        .execute()
    )
    # WHEN it is polled as fast as a client can
    seen: list[dict[str, int]] = []
    operations = _datasets(api_v1).operations()
    while True:
        current = operations.get(name=operation["name"]).execute()
        counter = current["metadata"].get("counter", {})
        seen.append({k: int(counter.get(k, 0)) for k in ("success", "failure", "pending")})
        if current.get("done"):
            break
    # THEN pending never rises, success never falls, and it ends with all files imported
    assert all(a["pending"] >= b["pending"] or a["pending"] == 0 for a, b in itertools.pairwise(seen))
    assert all(a["success"] <= b["success"] for a, b in itertools.pairwise(seen))
    assert seen[-1] == {"success": len(instances), "failure": 0, "pending": 0}
    # AND the client saw it in progress: files still pending while others were already imported
    assert any(s["pending"] > 0 and s["success"] > 0 for s in seen), seen
    assert "response" in current


def test_import_applies_blob_storage_class(api_v1: Any, store: StoreRef, bucket: storage.Bucket) -> None:
    instance = _uids(1, seed=51)[0]
    upload(bucket, {"cold.dcm": instance.data})
    _import(api_v1, store, f"gs://{bucket.name}/cold.dcm", blobStorageSettings={"blobStorageClass": "COLDLINE"})
    info = (
        _stores(api_v1)
        .dicomWeb()
        .studies()
        .series()
        .instances()
        .getStorageInfo(
            resource=f"{store.name}/dicomWeb/studies/{instance.study_uid}/series/{instance.series_uid}/instances/{instance.sop_uid}"
        )
        .execute()
    )
    assert info["blobStorageInfo"]["storageClass"] == "COLDLINE"
    assert int(info["blobStorageInfo"]["sizeBytes"]) == len(instance.data)
    with pytest.raises(HttpError) as bad:
        _stores(api_v1).import_(
            name=store.name,
            body={
                "gcsSource": {"uri": f"gs://{bucket.name}/cold.dcm"},
                "blobStorageSettings": {"blobStorageClass": "HOT"},
            },
        ).execute()
    assert "blobStorageClass" in _error(bad.value)["message"]


def test_set_blob_storage_settings_on_store_study_and_instance(
    api_v1: Any, store: StoreRef, bucket: storage.Bucket
) -> None:
    instances = generate_dataset(2, 1, 1, seed=61)
    upload(bucket, {i.relative_path: i.data for i in instances})
    _import(api_v1, store, f"gs://{bucket.name}/**")
    web = _stores(api_v1).dicomWeb()

    def storage_class(i: Any) -> str:
        path = f"{store.name}/dicomWeb/studies/{i.study_uid}/series/{i.series_uid}/instances/{i.sop_uid}"
        info = web.studies().series().instances().getStorageInfo(resource=path).execute()
        return str(info["blobStorageInfo"]["storageClass"])

    # store-wide
    op = (
        _stores(api_v1)
        .setBlobStorageSettings(resource=store.name, body={"blobStorageSettings": {"blobStorageClass": "NEARLINE"}})
        .execute()
    )
    wait_for_operation(api_v1, op["name"])
    assert [storage_class(i) for i in instances] == ["NEARLINE", "NEARLINE"]
    # one study
    op = (
        web.studies()
        .setBlobStorageSettings(
            resource=f"{store.name}/dicomWeb/studies/{instances[0].study_uid}",
            body={"blobStorageSettings": {"blobStorageClass": "ARCHIVE"}},
        )
        .execute()
    )
    wait_for_operation(api_v1, op["name"])
    assert [storage_class(i) for i in instances] == ["ARCHIVE", "NEARLINE"]


# ----- operations -----


def test_operations_list_pages_and_cancel(api_v1: Any, store: StoreRef, bucket: storage.Bucket) -> None:
    instance = _uids(1, seed=71)[0]
    upload(bucket, {"op.dcm": instance.data})
    names = [_import(api_v1, store, f"gs://{bucket.name}/op.dcm")["name"] for _ in range(3)]
    operations = _datasets(api_v1).operations()
    first = operations.list(name=store.dataset_name, pageSize=2).execute()
    second = operations.list(name=store.dataset_name, pageSize=2, pageToken=first["nextPageToken"]).execute()
    listed = [o["name"] for o in first["operations"] + second["operations"]]
    assert set(names) <= set(listed)
    assert len(listed) == len(set(listed))
    # cancelling a finished operation is accepted and changes nothing
    operations.cancel(name=names[0], body={}).execute()
    assert operations.get(name=names[0]).execute()["done"] is True
    with pytest.raises(HttpError) as missing:
        operations.get(name=f"{store.dataset_name}/operations/123").execute()
    assert missing.value.status_code == 404
