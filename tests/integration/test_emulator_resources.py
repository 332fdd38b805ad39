"""Dataset PATCH, nested store update masks, IAM policies, store/study/series metrics and the v1alpha2 prefix,
through google-api-python-client, gcloud (skipped where absent) and raw HTTP."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from googleapiclient.errors import HttpError

from devstack.synthetic import generate_dataset
from tests.integration.conftest import LOCATION, PROJECT, StoreRef

pytestmark = pytest.mark.integration

needs_gcloud = pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud (Cloud SDK) is not installed")


def _datasets(api: Any) -> Any:
    return api.projects().locations().datasets()


def _error(exc: HttpError) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.content)["error"]
    return body


@pytest.fixture
def gcloud(tmp_path: Path, services: Any) -> Any:
    """gcloud against the emulator with a throwaway configuration and no credentials."""
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_HEALTHCARE": f"{services.healthcare_url}/",
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
        "CLOUDSDK_CORE_PROJECT": PROJECT,
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
    }

    def run(*args: str) -> Any:
        result = subprocess.run(
            ["gcloud", *args, "--format=json"], env=env, capture_output=True, text=True, timeout=180, check=False
        )
        if result.returncode != 0:
            raise AssertionError(f"gcloud {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
        return json.loads(result.stdout) if result.stdout.strip() else None

    return run


def _stow(services: Any, store: StoreRef, count: int, seed: int) -> list[Any]:
    instances = generate_dataset(1, 2, count, seed=seed)
    web = DICOMwebClient(url=f"{services.healthcare_url}/v1/{store.name}/dicomWeb")
    web.store_instances([pydicom.dcmread(io.BytesIO(i.data)) for i in instances])
    return instances


# ----- datasets.patch -----


def test_dataset_patch_updates_the_time_zone(api: Any, store: StoreRef) -> None:
    datasets = _datasets(api)
    patched = datasets.patch(
        name=store.dataset_name, updateMask="timeZone", body={"timeZone": "Europe/Paris"}
    ).execute()
    assert patched == {"name": store.dataset_name, "timeZone": "Europe/Paris"}
    assert datasets.get(name=store.dataset_name).execute()["timeZone"] == "Europe/Paris"
    with pytest.raises(HttpError) as bad:
        datasets.patch(name=store.dataset_name, updateMask="timeZone", body={"timeZone": "Mars/Olympus"}).execute()
    assert bad.value.status_code == 400
    assert "Mars/Olympus" in _error(bad.value)["message"]
    with pytest.raises(HttpError) as frozen:
        datasets.patch(name=store.dataset_name, updateMask="name", body={"name": "x"}).execute()
    assert "'name' cannot be updated" in _error(frozen.value)["message"]


@needs_gcloud
def test_gcloud_updates_a_dataset_time_zone(gcloud: Any, api_v1: Any, store: StoreRef) -> None:
    gcloud("healthcare", "datasets", "update", store.dataset, f"--location={LOCATION}", "--time-zone=Asia/Tokyo")
    assert _datasets(api_v1).get(name=store.dataset_name).execute()["timeZone"] == "Asia/Tokyo"


# ----- dicomStores.patch with nested masks -----


def test_store_patch_with_a_nested_mask_changes_only_that_field(api_v1: Any, store: StoreRef) -> None:
    stores = _datasets(api_v1).dicomStores()
    topic = f"projects/{PROJECT}/topics/dicom-events"
    stores.patch(
        name=store.name,
        updateMask="notificationConfig",
        body={"notificationConfig": {"pubsubTopic": topic, "sendForBulkImport": True}},
    ).execute()
    # WHEN only the nested sendForBulkImport is updated
    patched = stores.patch(
        name=store.name,
        updateMask="notificationConfig.sendForBulkImport",
        body={"notificationConfig": {"sendForBulkImport": False}},
    ).execute()
    # THEN the topic is kept
    assert patched["notificationConfig"] == {"pubsubTopic": topic, "sendForBulkImport": False}
    # AND a nested path outside the updatable fields names itself
    with pytest.raises(HttpError) as bad:
        stores.patch(name=store.name, updateMask="name.x", body={}).execute()
    assert "'name.x' cannot be updated" in _error(bad.value)["message"]


@needs_gcloud
def test_gcloud_updates_a_store_topic_and_bulk_import_flag(gcloud: Any, api_v1: Any, store: StoreRef) -> None:
    topic = f"projects/{PROJECT}/topics/from-gcloud"
    location = [f"--dataset={store.dataset}", f"--location={LOCATION}"]
    gcloud("healthcare", "dicom-stores", "update", store.store, *location, f"--pubsub-topic={topic}")
    gcloud("healthcare", "dicom-stores", "update", store.store, *location, "--send-for-bulk-import")
    config = _datasets(api_v1).dicomStores().get(name=store.name).execute()["notificationConfig"]
    assert config == {"pubsubTopic": topic, "sendForBulkImport": True}


# ----- IAM -----


@pytest.mark.parametrize("level", ["dataset", "store"])
def test_iam_policy_round_trip_with_etag(api: Any, store: StoreRef, level: str) -> None:
    resource = _datasets(api) if level == "dataset" else _datasets(api).dicomStores()
    name = store.dataset_name if level == "dataset" else store.name
    # GIVEN a resource without a policy THEN it answers the empty policy
    empty = resource.getIamPolicy(resource=name).execute()
    assert empty == {"etag": "ACAB"}
    # WHEN a binding is set with the etag read
    binding = {"role": "roles/healthcare.dicomViewer", "members": ["user:reader@example.com"]}
    policy = resource.setIamPolicy(resource=name, body={"policy": {"bindings": [binding], "etag": "ACAB"}}).execute()
    # THEN it is stored with a new etag and read back
    assert policy["bindings"] == [binding]
    assert policy["version"] == 1
    assert policy["etag"] != "ACAB"
    assert resource.getIamPolicy(resource=name, options_requestedPolicyVersion=3).execute() == policy
    # AND a write with the stale etag is refused (409 ABORTED)
    with pytest.raises(HttpError) as stale:
        resource.setIamPolicy(resource=name, body={"policy": {"bindings": [], "etag": "ACAB"}}).execute()
    assert stale.value.status_code == 409
    assert _error(stale.value)["status"] == "ABORTED"
    # AND testIamPermissions grants what is asked (no authentication in the emulator)
    asked = ["healthcare.dicomStores.dicomWebRead", "healthcare.datasets.get"]
    assert resource.testIamPermissions(resource=name, body={"permissions": asked}).execute() == {"permissions": asked}


def test_iam_rejects_malformed_policies_and_unknown_resources(api_v1: Any, store: StoreRef) -> None:
    stores = _datasets(api_v1).dicomStores()
    with pytest.raises(HttpError) as bad_member:
        stores.setIamPolicy(
            resource=store.name, body={"policy": {"bindings": [{"role": "roles/viewer", "members": ["bob"]}]}}
        ).execute()
    assert "'bob'" in _error(bad_member.value)["message"]
    conditional = {"role": "roles/viewer", "members": ["user:a@example.com"], "condition": {"expression": "true"}}
    with pytest.raises(HttpError) as needs_v3:
        stores.setIamPolicy(resource=store.name, body={"policy": {"bindings": [conditional]}}).execute()
    assert "version 3" in _error(needs_v3.value)["message"]
    with pytest.raises(HttpError) as missing:
        stores.getIamPolicy(resource=f"{store.dataset_name}/dicomStores/absent").execute()
    assert missing.value.status_code == 404


@needs_gcloud
def test_gcloud_adds_and_reads_an_iam_binding(gcloud: Any, store: StoreRef) -> None:
    location = [f"--dataset={store.dataset}", f"--location={LOCATION}"]
    gcloud(
        "healthcare",
        "dicom-stores",
        "add-iam-policy-binding",
        store.store,
        *location,
        "--member=serviceAccount:pipeline@example.iam.gserviceaccount.com",
        "--role=roles/healthcare.dicomEditor",
    )
    policy = gcloud("healthcare", "dicom-stores", "get-iam-policy", store.store, *location)
    assert policy["bindings"] == [
        {"members": ["serviceAccount:pipeline@example.iam.gserviceaccount.com"], "role": "roles/healthcare.dicomEditor"}
    ]


# ----- metrics -----


def test_store_study_and_series_metrics_count_what_is_stored(api: Any, services: Any, store: StoreRef) -> None:
    stores = _datasets(api).dicomStores()
    # GIVEN an empty store THEN only its name is answered (zero counts are omitted, as proto3 JSON does)
    assert stores.getDICOMStoreMetrics(name=store.name).execute() == {"name": store.name}
    # WHEN one study of two series with three instances each is stored
    instances = _stow(services, store, 3, seed=1701)
    metrics = stores.getDICOMStoreMetrics(name=store.name).execute()
    # THEN the counts are int64 strings and the sizes add up
    assert (metrics["studyCount"], metrics["seriesCount"], metrics["instanceCount"]) == ("1", "2", "6")
    assert int(metrics["blobStorageSizeBytes"]) == sum(len(i.data) for i in instances)
    assert int(metrics["structuredStorageSizeBytes"]) > 0
    study = instances[0].study_uid
    study_path = f"{store.name}/dicomWeb/studies/{study}"
    study_metrics = stores.dicomWeb().studies().getStudyMetrics(study=study_path).execute()
    assert (study_metrics["study"], study_metrics["seriesCount"], study_metrics["instanceCount"]) == (
        study_path,
        "2",
        "6",
    )
    series_path = f"{study_path}/series/{instances[0].series_uid}"
    series_metrics = stores.dicomWeb().studies().series().getSeriesMetrics(series=series_path).execute()
    assert (series_metrics["series"], series_metrics["instanceCount"]) == (series_path, "3")
    assert "seriesCount" not in series_metrics
    with pytest.raises(HttpError) as missing:
        stores.dicomWeb().studies().getStudyMetrics(study=f"{store.name}/dicomWeb/studies/1.2.3").execute()
    assert missing.value.status_code == 404


# ----- v1alpha2 -----


def test_v1alpha2_prefix_serves_the_same_api(services: Any, store: StoreRef) -> None:
    base = f"{services.healthcare_url}/v1alpha2/{store.dataset_name}"
    dataset = requests.get(base, timeout=30)
    assert dataset.status_code == 200
    assert dataset.json()["name"] == store.dataset_name
    stores = requests.get(f"{base}/dicomStores", timeout=30).json()["dicomStores"]
    assert [s["name"] for s in stores] == [store.name]


@needs_gcloud
def test_gcloud_alpha_reads_store_metrics_through_v1alpha2(gcloud: Any, services: Any, store: StoreRef) -> None:
    _stow(services, store, 1, seed=1702)
    metrics = gcloud(
        "alpha",
        "healthcare",
        "dicom-stores",
        "metrics",
        store.store,
        f"--dataset={store.dataset}",
        f"--location={LOCATION}",
    )
    assert metrics["instanceCount"] == "2"
    listed = gcloud(
        "alpha", "healthcare", "dicom-stores", "list", f"--dataset={store.dataset}", f"--location={LOCATION}"
    )
    assert [s["name"] for s in listed] == [store.name]
