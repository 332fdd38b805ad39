"""Real local services for integration tests: fake-gcs-server and ``python -m healthcare_emulator``.

Each runs as its own process on a free 127.0.0.1 port for the whole test session and is stopped by PID.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httplib2
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from googleapiclient import discovery

from devstack.processes import free_port, start_fake_gcs, start_healthcare_emulator, start_pubsub_emulator

PROJECT = "test-project"
LOCATION = "us-central1"


@dataclass(frozen=True)
class LocalServices:
    storage_host: str
    healthcare_url: str
    data_dir: Path


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    logs = tmp_path_factory.mktemp("service-logs")
    gcs_port = free_port()
    gcs = start_fake_gcs(gcs_port, log_path=logs / "fake-gcs.log")
    storage_host = f"http://127.0.0.1:{gcs_port}"
    data_dir = tmp_path_factory.mktemp("emulator-data")
    emulator_port = free_port()
    try:
        emulator = start_healthcare_emulator(emulator_port, data_dir, storage_host, log_path=logs / "emulator.log")
    except Exception:
        gcs.stop()
        raise
    try:
        yield LocalServices(storage_host, f"http://127.0.0.1:{emulator_port}", data_dir)
    finally:
        emulator.stop()
        gcs.stop()


@pytest.fixture(scope="session")
def pubsub_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Google's Pub/Sub emulator for the session; PUBSUB_EMULATOR_HOST is set for this process."""
    port = free_port()
    emulator = start_pubsub_emulator(port, log_path=tmp_path_factory.mktemp("pubsub") / "pubsub.log")
    host = f"127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PUBSUB_EMULATOR_HOST", host)
        try:
            yield host
        finally:
            emulator.stop()


@pytest.fixture(scope="session")
def gcs(services: LocalServices) -> storage.Client:
    return storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=services.storage_host),
    )


def healthcare_client(url: str, version: str = "v1") -> Any:
    """google-api-python-client for the Healthcare API, pointed at ``url`` with its bundled discovery doc."""
    return discovery.build(
        "healthcare",
        version,
        http=httplib2.Http(timeout=60),
        client_options={"api_endpoint": url},
        static_discovery=True,
        cache_discovery=False,
    )


@pytest.fixture(scope="session", params=["v1", "v1beta1"])
def api(request: pytest.FixtureRequest, services: LocalServices) -> Any:
    return healthcare_client(services.healthcare_url, request.param)


@pytest.fixture(scope="session")
def api_v1(services: LocalServices) -> Any:
    return healthcare_client(services.healthcare_url, "v1")


@pytest.fixture
def bucket(gcs: storage.Client) -> storage.Bucket:
    """A fresh bucket for one test."""
    return gcs.create_bucket(f"bkt-{uuid.uuid4().hex[:12]}")


@dataclass(frozen=True)
class StoreRef:
    project: str
    location: str
    dataset: str
    store: str

    @property
    def dataset_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/datasets/{self.dataset}"

    @property
    def name(self) -> str:
        return f"{self.dataset_name}/dicomStores/{self.store}"


def create_store(api: Any, ref: StoreRef) -> StoreRef:
    """Create ``ref``'s dataset and its DICOM store through the v1 client."""
    datasets = api.projects().locations().datasets()
    datasets.create(parent=f"projects/{ref.project}/locations/{ref.location}", datasetId=ref.dataset,
                    body={}).execute()  # fmt: skip
    datasets.dicomStores().create(parent=ref.dataset_name, dicomStoreId=ref.store, body={}).execute()
    return ref


@pytest.fixture
def store(api_v1: Any) -> StoreRef:
    """A fresh dataset with one DICOM store."""
    return create_store(api_v1, StoreRef(PROJECT, LOCATION, f"ds-{uuid.uuid4().hex[:10]}", "store"))


def wait_for_operation(api: Any, name: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll operations.get until done (the way a client would), returning the final operation."""
    operations = api.projects().locations().datasets().operations()
    deadline = time.monotonic() + timeout
    while True:
        operation: dict[str, Any] = operations.get(name=name).execute()
        if operation.get("done"):
            return operation
        if time.monotonic() > deadline:
            raise AssertionError(f"operation {name} not done after {timeout}s: {operation}")
        time.sleep(0.05)


def upload(bucket: storage.Bucket, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        bucket.blob(name).upload_from_string(data, content_type="application/dicom")


@pytest.fixture
def pipeline(
    monkeypatch: pytest.MonkeyPatch, services: LocalServices, pubsub_host: str, bucket: storage.Bucket, store: StoreRef
) -> Iterator[Any]:
    """Fresh topics and subscriptions, and the environment of the three functions, for one test."""
    from tests.integration.pipeline_helpers import pipeline_fixture

    yield from pipeline_fixture(monkeypatch, services, pubsub_host, bucket, store)
