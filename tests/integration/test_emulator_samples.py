"""Code shaped like Google's published Healthcare API samples, pointed at the emulator as the README's
"Run Google's published samples against it" says: discovery.build patched once, AuthorizedSession with
anonymous credentials and the emulator's base URL."""

from __future__ import annotations

import functools
import json
import threading
import uuid
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession
from googleapiclient import discovery

from devstack.synthetic import generate_dataset
from tests.integration.conftest import LOCATION, PROJECT

pytestmark = pytest.mark.integration


def _create_dataset_and_store(project_id: str, location: str, dataset_id: str, store_id: str) -> dict[str, Any]:
    """As the samples do: build the client from discovery with no arguments, then call the API."""
    client = discovery.build("healthcare", "v1")
    parent = f"projects/{project_id}/locations/{location}"
    client.projects().locations().datasets().create(parent=parent, body={}, datasetId=dataset_id).execute()
    stores = client.projects().locations().datasets().dicomStores()
    stores.create(parent=f"{parent}/datasets/{dataset_id}", body={}, dicomStoreId=store_id).execute()
    store: dict[str, Any] = stores.get(name=f"{parent}/datasets/{dataset_id}/dicomStores/{store_id}").execute()
    return store


def _store_and_search(base_url: str, session: Any, store: str, dcm: bytes) -> list[dict[str, Any]]:
    """As the DICOMweb samples do: POST application/dicom, then GET instances, through a session."""
    url = f"{base_url}/{store}/dicomWeb/studies"
    stored = session.post(url, data=dcm, headers={"Content-Type": "application/dicom"})
    stored.raise_for_status()
    found = session.get(f"{base_url}/{store}/dicomWeb/instances")
    found.raise_for_status()
    result: list[dict[str, Any]] = json.loads(found.content)
    return result


@pytest.fixture
def patched_build(services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """discovery.build patched once, as the README says: the emulator's endpoint, anonymous credentials."""
    monkeypatch.setattr(
        discovery,
        "build",
        functools.partial(
            discovery.build,
            client_options={"api_endpoint": services.healthcare_url},
            credentials=AnonymousCredentials(),
            static_discovery=True,
        ),
    )


@pytest.mark.usefixtures("patched_build")
def test_discovery_sample_runs_with_the_patched_build() -> None:
    # GIVEN discovery.build patched once, as the README says (the fixture)
    dataset_id = f"sample-{uuid.uuid4().hex[:8]}"
    # WHEN the sample-shaped code runs unchanged
    store = _create_dataset_and_store(PROJECT, LOCATION, dataset_id, "sample-store")
    # THEN it talked to the emulator
    assert store["name"] == f"projects/{PROJECT}/locations/{LOCATION}/datasets/{dataset_id}/dicomStores/sample-store"


def test_dicomweb_sample_runs_with_an_anonymous_authorized_session(services: Any, api_v1: Any) -> None:
    dataset_id = f"sample-{uuid.uuid4().hex[:8]}"
    parent = f"projects/{PROJECT}/locations/{LOCATION}"
    api_v1.projects().locations().datasets().create(parent=parent, datasetId=dataset_id, body={}).execute()
    dataset = f"{parent}/datasets/{dataset_id}"
    api_v1.projects().locations().datasets().dicomStores().create(parent=dataset, dicomStoreId="s", body={}).execute()
    instance = generate_dataset(1, 1, 1, seed=2201)[0]
    session = AuthorizedSession(AnonymousCredentials())
    found = _store_and_search(f"{services.healthcare_url}/v1", session, f"{dataset}/dicomStores/s", instance.data)
    assert [item["00080018"]["Value"][0] for item in found] == [instance.sop_uid]


def _deidentify_dataset(project_id: str, location: str, dataset_id: str, destination_dataset_id: str) -> Any:
    """Shaped like Google's published ``deidentify_dataset`` sample: start, poll, then read the counters."""
    client = discovery.build("healthcare", "v1")
    source_dataset = f"projects/{project_id}/locations/{location}/datasets/{dataset_id}"
    destination_dataset = f"projects/{project_id}/locations/{location}/datasets/{destination_dataset_id}"
    body = {"destinationDataset": destination_dataset, "config": {"dicom": {"keepList": {"tags": ["PatientID"]}}}}
    request = client.projects().locations().datasets().deidentify(sourceDataset=source_dataset, body=body)
    operation = request.execute()
    operation_get = client.projects().locations().datasets().operations().get(name=operation["name"])
    for _ in range(600):
        response = operation_get.execute()
        if response.get("done", False):
            print(f"Resources succeeded: {response.get('metadata').get('counter').get('success')}")
            print(f"Resources failed: {response.get('metadata').get('counter').get('failure')}")
            return response
        threading.Event().wait(0.5)
    raise AssertionError("de-identification did not finish")


@pytest.mark.usefixtures("patched_build")
def test_deidentify_dataset_sample_reads_the_counter_of_an_empty_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN discovery.build patched once (the fixture), and a dataset with a store but no instances
    dataset_id = f"deid-{uuid.uuid4().hex[:8]}"
    _create_dataset_and_store(PROJECT, LOCATION, dataset_id, "empty-store")
    # WHEN the sample de-identifies it
    response = _deidentify_dataset(PROJECT, LOCATION, dataset_id, f"{dataset_id}-out")
    # THEN it reads metadata.counter without a crash (the counter message is there, empty)
    assert response["metadata"]["counter"] == {}
    assert "Resources succeeded: None" in capsys.readouterr().out
