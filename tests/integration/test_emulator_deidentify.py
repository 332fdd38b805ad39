"""datasets.deidentify and dicomStores.deidentify through google-api-python-client and gcloud."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from google.cloud import storage
from googleapiclient.errors import HttpError
from pydicom._uid_dict import UID_dictionary

from devstack.synthetic import SyntheticInstance, generate_dataset
from tests.integration.conftest import LOCATION, PROJECT, StoreRef, wait_for_operation

pytestmark = pytest.mark.integration

STUDY, SERIES, SOP, PATIENT_NAME, PATIENT_ID = "0020000D", "0020000E", "00080018", "00100010", "00100020"


def _stores(api: Any) -> Any:
    return api.projects().locations().datasets().dicomStores()


def _web(services: Any, store: str) -> DICOMwebClient:
    return DICOMwebClient(url=f"{services.healthcare_url}/v1/{store}/dicomWeb")


def _fill(services: Any, store: StoreRef, seed: int) -> list[SyntheticInstance]:
    instances = generate_dataset(2, 2, 2, seed=seed)
    _web(services, store.name).store_instances([pydicom.dcmread(io.BytesIO(i.data)) for i in instances])
    return instances


def _instances(services: Any, store: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = _web(services, store).search_for_instances(fields=["00100010", "00100020"])
    return found


def _value(item: dict[str, Any], tag: str) -> Any:
    return (item.get(tag, {}).get("Value") or [None])[0]


def _new_store(api: Any, store: StoreRef, store_id: str) -> str:
    _stores(api).create(parent=store.dataset_name, dicomStoreId=store_id, body={}).execute()
    return f"{store.dataset_name}/dicomStores/{store_id}"


def test_store_deidentify_keeps_structure_replaces_uids_and_counts(api: Any, services: Any, store: StoreRef) -> None:
    # GIVEN 2 studies x 2 series x 2 instances and an empty destination store
    instances = _fill(services, store, seed=2101)
    destination = _new_store(api, store, "deid")
    # WHEN the store is de-identified with the Basic Profile
    config = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
    operation = (
        _stores(api)
        .deidentify(sourceStore=store.name, body={"destinationStore": destination, "config": config})
        .execute()
    )
    done = wait_for_operation(api, operation["name"])
    # THEN the operation counts every instance and ends with the summary
    assert done["metadata"]["counter"] == {"success": "8"}
    assert done["metadata"]["apiMethodName"].endswith("DicomService.DeidentifyDicomStore")
    assert done["response"]["@type"].endswith("DeidentifySummary")
    # AND the copy has the same shape (2 studies, 2 series each, 2 instances each) under new UIDs
    copied = _instances(services, destination)
    assert len(copied) == 8
    per_series = Counter((_value(i, STUDY), _value(i, SERIES)) for i in copied)
    assert sorted(per_series.values()) == [2, 2, 2, 2]
    assert len({study for study, _ in per_series}) == 2
    originals = {i.study_uid for i in instances} | {i.series_uid for i in instances} | {i.sop_uid for i in instances}
    assert not originals & {_value(i, tag) for i in copied for tag in (STUDY, SERIES, SOP)}
    # AND the patient's name and ID are empty
    assert {_value(i, PATIENT_NAME) for i in copied} == {None}
    assert {_value(i, PATIENT_ID) for i in copied} == {None}
    # AND the source is unchanged
    assert {_value(i, SOP) for i in _instances(services, store.name)} == {i.sop_uid for i in instances}


def test_store_deidentify_refuses_a_missing_destination_and_what_is_not_emulated(api_v1: Any, store: StoreRef) -> None:
    with pytest.raises(HttpError) as missing:
        _stores(api_v1).deidentify(
            sourceStore=store.name, body={"destinationStore": f"{store.dataset_name}/dicomStores/absent"}
        ).execute()
    assert missing.value.status_code == 404
    assert "absent does not exist" in json.loads(missing.value.content)["error"]["message"]
    destination = _new_store(api_v1, store, "deid-501")
    with pytest.raises(HttpError) as unsupported:
        _stores(api_v1).deidentify(
            sourceStore=store.name,
            body={"destinationStore": destination, "config": {"dicom": {"filterProfile": "DEIDENTIFY_TAG_CONTENTS"}}},
        ).execute()
    assert unsupported.value.status_code == 501
    assert "not emulated" in json.loads(unsupported.value.content)["error"]["message"]


def test_store_deidentify_with_a_filter_file_copies_only_what_it_lists(
    api_v1: Any, services: Any, store: StoreRef, bucket: storage.Bucket
) -> None:
    instances = _fill(services, store, seed=2102)
    chosen = instances[0]
    bucket.blob("deid-filter.txt").upload_from_string(f"/studies/{chosen.study_uid}/series/{chosen.series_uid}\n")
    destination = _new_store(api_v1, store, "deid-filtered")
    operation = (
        _stores(api_v1)
        .deidentify(
            sourceStore=store.name,
            body={
                "destinationStore": destination,
                "config": {"dicom": {"keepList": {"tags": ["PatientID"]}}},
                "filterConfig": {"resourcePathsGcsUri": f"gs://{bucket.name}/deid-filter.txt"},
            },
        )
        .execute()
    )
    assert wait_for_operation(api_v1, operation["name"])["metadata"]["counter"] == {"success": "2"}
    copied = _instances(services, destination)
    assert len(copied) == 2
    assert {_value(i, PATIENT_ID) for i in copied} == {chosen.patient_id}  # kept by the keep list
    assert {_value(i, PATIENT_NAME) for i in copied} == {None}


def test_dataset_deidentify_creates_the_destination_with_every_store(api: Any, services: Any, store: StoreRef) -> None:
    _fill(services, store, seed=2103)
    _new_store(api, store, "empty-one")
    datasets = api.projects().locations().datasets()
    destination = f"projects/{PROJECT}/locations/{LOCATION}/datasets/deid-{uuid.uuid4().hex[:8]}"
    operation = datasets.deidentify(
        sourceDataset=store.dataset_name, body={"destinationDataset": destination}
    ).execute()
    done = wait_for_operation(api, operation["name"])
    assert done["metadata"]["apiMethodName"].endswith("DatasetService.DeidentifyDataset")
    assert done["metadata"]["counter"] == {"success": "8"}
    stores = sorted(s["name"] for s in _stores(api).list(parent=destination).execute()["dicomStores"])
    assert stores == [f"{destination}/dicomStores/empty-one", f"{destination}/dicomStores/{store.store}"]
    assert len(_instances(services, f"{destination}/dicomStores/{store.store}")) == 8
    # AND a destination that exists is refused
    with pytest.raises(HttpError) as exists:
        datasets.deidentify(sourceDataset=store.dataset_name, body={"destinationDataset": destination}).execute()
    assert exists.value.status_code == 409


@pytest.mark.gcloud
@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud (Cloud SDK) is not installed")
def test_gcloud_deidentifies_a_store_with_filter_tags(
    tmp_path: Path, api_v1: Any, services: Any, store: StoreRef
) -> None:
    instances = _fill(services, store, seed=2104)
    destination = _new_store(api_v1, store, "deid-gcloud")
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_HEALTHCARE": f"{services.healthcare_url}/",
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
        "CLOUDSDK_CORE_PROJECT": PROJECT,
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
    }
    # WHEN gcloud de-identifies keeping PatientID (it waits for the operation)
    result = subprocess.run(
        [
            "gcloud",
            "healthcare",
            "dicom-stores",
            "deidentify",
            store.store,
            f"--dataset={store.dataset}",
            f"--location={LOCATION}",
            f"--destination-store={destination}",
            "--dicom-filter-tags=PatientID",
            "--format=json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # THEN the destination holds every instance with PatientID and without PatientName
    copied = _instances(services, destination)
    assert len(copied) == len(instances)
    assert {_value(i, PATIENT_ID) for i in copied} == {i.patient_id for i in instances}
    assert {_value(i, PATIENT_NAME) for i in copied} == {None}


@pytest.mark.gcloud
@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud (Cloud SDK) is not installed")
def test_gcloud_alpha_deidentifies_a_dataset_through_v1alpha2(
    tmp_path: Path, api_v1: Any, services: Any, store: StoreRef
) -> None:
    instances = _fill(services, store, seed=2105)
    destination = f"projects/{PROJECT}/locations/{LOCATION}/datasets/deid-alpha-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_HEALTHCARE": f"{services.healthcare_url}/",
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
        "CLOUDSDK_CORE_PROJECT": PROJECT,
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
    }
    # WHEN gcloud alpha (v1alpha2) de-identifies the dataset, waiting for the operation
    result = subprocess.run(
        [
            "gcloud",
            "alpha",
            "healthcare",
            "datasets",
            "deidentify",
            store.dataset,
            f"--location={LOCATION}",
            f"--destination-dataset={destination}",
            "--dicom-filter-tags=PatientID",
            "--format=json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # THEN the new dataset holds the store with every instance, PatientID kept
    copied = _instances(services, f"{destination}/dicomStores/{store.store}")
    assert len(copied) == len(instances)
    assert {_value(i, PATIENT_ID) for i in copied} == {i.patient_id for i in instances}


def _deidentify(api: Any, store: StoreRef, destination: str, config: dict[str, Any], filter_uri: str) -> dict[str, Any]:
    body = {"destinationStore": destination, "config": config, "filterConfig": {"resourcePathsGcsUri": filter_uri}}
    operation = _stores(api).deidentify(sourceStore=store.name, body=body).execute()
    return wait_for_operation(api, operation["name"])


def _filter_file(instances: list[SyntheticInstance]) -> str:
    return "".join(f"/studies/{i.study_uid}/series/{i.series_uid}/instances/{i.sop_uid}\n" for i in instances)


def _uid_values(dataset: pydicom.Dataset) -> set[str]:
    found: set[str] = set()
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                found |= _uid_values(item)
        elif element.VR == "UI" and not element.is_empty:
            found |= {str(v) for v in (element.value if element.VM > 1 else [element.value])}
    return found


def test_store_deidentify_keeps_one_study_across_two_operations_into_one_destination(
    api_v1: Any, services: Any, store: StoreRef, bucket: storage.Bucket
) -> None:
    # GIVEN one study of 2 series x 2 instances, and two filter files that split it across the series
    instances = generate_dataset(1, 2, 2, seed=2106)
    _web(services, store.name).store_instances([pydicom.dcmread(io.BytesIO(i.data)) for i in instances])
    lines = [f"/studies/{i.study_uid}/series/{i.series_uid}/instances/{i.sop_uid}" for i in instances]
    halves = {"deid-batch-1.txt": [lines[0], lines[2]], "deid-batch-2.txt": [lines[1], lines[3]]}
    for name, half in halves.items():
        bucket.blob(name).upload_from_string("\n".join(half) + "\n")
    destination = _new_store(api_v1, store, "deid-batches")
    config = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
    # WHEN each half is de-identified by its own operation into the same destination
    for name in halves:
        done = _deidentify(api_v1, store, destination, config, f"gs://{bucket.name}/{name}")
        assert done["metadata"]["counter"] == {"success": "2"}
    # THEN the destination holds one study with the two series of two instances each
    copied = _instances(services, destination)
    assert len({_value(i, STUDY) for i in copied}) == 1
    assert sorted(Counter(_value(i, SERIES) for i in copied).values()) == [2, 2]
    # AND no original UID is left anywhere in the stored instances (file meta and sequences included)
    web = _web(services, destination)
    stored = [web.retrieve_instance(_value(i, STUDY), _value(i, SERIES), _value(i, SOP)) for i in copied]
    sources = [pydicom.dcmread(io.BytesIO(i.data)) for i in instances]
    # every UID but the registered ones and the writer's ImplementationClassUID (software, not a patient: K)
    software = {str(d.file_meta.ImplementationClassUID) for d in sources}
    originals = {uid for d in sources for uid in _uid_values(d) | _uid_values(d.file_meta) if uid not in UID_dictionary}
    originals -= software
    assert not originals & {uid for d in stored for uid in _uid_values(d) | _uid_values(d.file_meta)}
    # AND what the originals shared they still share (frames of reference)
    assert len({str(d.FrameOfReferenceUID) for d in stored}) == len({str(d.FrameOfReferenceUID) for d in sources})


def test_store_deidentify_counts_and_logs_each_failed_instance(
    api_v1: Any, services: Any, store: StoreRef, bucket: storage.Bucket
) -> None:
    # GIVEN a study already de-identified into a destination with every tag kept
    *instances, new = _fill(services, store, seed=2107)[:3]
    bucket.blob("deid-two.txt").upload_from_string(_filter_file(instances))
    bucket.blob("deid-three.txt").upload_from_string(_filter_file([*instances, new]))
    destination = _new_store(api_v1, store, "deid-conflict")
    uri = f"gs://{bucket.name}/deid-two.txt"
    assert _deidentify(api_v1, store, destination, {"dicom": {"filterProfile": "KEEP_ALL_PROFILE"}}, uri)["metadata"][
        "counter"
    ] == {"success": "2"}
    # WHEN the same instances go again with another profile (same new UIDs, other bytes), with one more
    config = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
    done = _deidentify(api_v1, store, destination, config, f"gs://{bucket.name}/deid-three.txt")
    # THEN the operation succeeds (one instance stored), both others fail, counted in the metadata, and each
    # is one DeidentifyLogEntry naming the instance
    assert "error" not in done and "response" in done
    assert done["metadata"]["counter"] == {"success": "1", "failure": "2"}
    operation_id = done["name"].rsplit("/", 1)[1]
    request = urllib.request.Request(
        f"{services.healthcare_url}/v2/entries:list",
        data=json.dumps(
            {"resourceNames": [f"projects/{PROJECT}"], "filter": f'operation.id="{operation_id}"'}
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        entries = json.load(answer)["entries"]
    assert len(entries) == 2
    assert {e["logName"] for e in entries} == {f"projects/{PROJECT}/logs/healthcare.googleapis.com%2Fdeidentify"}
    assert {e["operation"]["producer"] for e in entries} == {"healthcare.googleapis.com/DeidentifyDicomStore"}
    payloads = [e["jsonPayload"] for e in entries]
    assert {p["@type"] for p in payloads} == {"type.googleapis.com/google.cloud.healthcare.logging.DeidentifyLogEntry"}
    assert {p["resourceName"].rsplit("/", 1)[1] for p in payloads} == {i.sop_uid for i in instances}
    assert all("other content under the new UIDs" in p["error"]["message"] for p in payloads)
    names = {str(pydicom.dcmread(io.BytesIO(i.data)).PatientName) for i in instances}
    assert not [n for n in names if any(n in json.dumps(e) for e in entries)]  # no tag value in the logs
