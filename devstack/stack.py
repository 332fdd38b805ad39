"""The local stack: fake-gcs-server + healthcare_emulator, wired and seeded with a dataset, a store and
sample files. (The full pipeline — Pub/Sub emulator and the three functions — joins it in a later step.)
"""

from __future__ import annotations

import json
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from devstack.processes import (
    ManagedProcess,
    StackError,
    port_in_use,
    start_fake_gcs,
    start_healthcare_emulator,
)
from devstack.synthetic import generate_dataset

PROJECT = "local-project"
LOCATION = "us-central1"
DATASET = "local-dataset"
STORE = "local-store"
INCOMING_BUCKET = "dicom-incoming"
EXPORT_BUCKET = "dicom-exports"


@dataclass(frozen=True)
class StackConfig:
    gcs_port: int = 4443
    healthcare_port: int = 8089
    data_dir: Path | None = None
    sample_studies: int = 2


@dataclass(frozen=True)
class StackEndpoints:
    storage_host: str
    healthcare_url: str
    data_dir: Path

    @property
    def store_name(self) -> str:
        return f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/dicomStores/{STORE}"

    def environment(self) -> dict[str, str]:
        return {
            "STORAGE_EMULATOR_HOST": self.storage_host,
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_HEALTHCARE": f"{self.healthcare_url}/",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": f"{self.storage_host}/storage/v1/",
            "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
            "CLOUDSDK_CORE_PROJECT": PROJECT,
        }


class LocalStack:
    """Start with ``start()``; ``stop()`` ends every process it started, by PID."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self._exit = ExitStack()
        self.processes: list[ManagedProcess] = []

    def start(self) -> StackEndpoints:
        config = self.config
        for name, port in (
            ("fake-gcs-server", config.gcs_port),
            ("healthcare_emulator", config.healthcare_port),
        ):
            if port_in_use(port):
                raise StackError(f"port {port} for {name} is already in use: stop what uses it or pick another port")
        data_dir = config.data_dir or Path(self._exit.enter_context(tempfile.TemporaryDirectory(prefix="dicomflow-")))
        data_dir.mkdir(parents=True, exist_ok=True)
        logs = data_dir / "logs"
        logs.mkdir(exist_ok=True)
        try:
            gcs = start_fake_gcs(config.gcs_port, log_path=logs / "fake-gcs.log", root=data_dir / "gcs")
            self.processes.append(gcs)
            storage_host = f"http://127.0.0.1:{config.gcs_port}"
            emulator = start_healthcare_emulator(
                config.healthcare_port,
                data_dir / "healthcare",
                storage_host,
                log_path=logs / "healthcare.log",
            )
            self.processes.append(emulator)
            endpoints = StackEndpoints(storage_host, f"http://127.0.0.1:{config.healthcare_port}", data_dir)
            self._seed(endpoints)
        except BaseException:
            self.stop()
            raise
        return endpoints

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        self._exit.close()

    def _seed(self, endpoints: StackEndpoints) -> None:
        for bucket in (INCOMING_BUCKET, EXPORT_BUCKET):
            _post_json(f"{endpoints.storage_host}/storage/v1/b?project={PROJECT}", {"name": bucket}, ok_conflict=True)
        base = f"{endpoints.healthcare_url}/v1/projects/{PROJECT}/locations/{LOCATION}"
        _post_json(f"{base}/datasets?datasetId={DATASET}", {}, ok_conflict=True)
        _post_json(f"{base}/datasets/{DATASET}/dicomStores?dicomStoreId={STORE}", {}, ok_conflict=True)
        for instance in generate_dataset(
            self.config.sample_studies, 2, 3, seed=1, multiframe_every=5, compressed_every=4
        ):
            name = urllib.parse.quote(f"sample/{instance.relative_path}", safe="")
            url = f"{endpoints.storage_host}/upload/storage/v1/b/{INCOMING_BUCKET}/o?uploadType=media&name={name}"
            request = urllib.request.Request(
                url, data=instance.data, method="POST", headers={"Content-Type": "application/dicom"}
            )
            urllib.request.urlopen(request, timeout=30).close()


def _post_json(url: str, body: dict[str, object], *, ok_conflict: bool = False) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        urllib.request.urlopen(request, timeout=30).close()
    except urllib.error.HTTPError as exc:
        if not (ok_conflict and exc.code == 409):
            raise StackError(f"POST {url} failed with HTTP {exc.code}") from exc
