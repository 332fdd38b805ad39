"""The emulator driven by the gcloud CLI (skipped where gcloud is not installed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from google.cloud import storage

from devstack.synthetic import generate_dataset
from tests.integration.conftest import PROJECT, StoreRef, upload

pytestmark = [
    pytest.mark.integration,
    pytest.mark.gcloud,
    pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud (Cloud SDK) is not installed"),
]


@pytest.fixture
def gcloud(tmp_path: Path, services: Any) -> Any:
    """Run gcloud against the local endpoints with a throwaway configuration and no credentials."""
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_HEALTHCARE": f"{services.healthcare_url}/",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": f"{services.storage_host}/storage/v1/",
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
        "CLOUDSDK_CORE_PROJECT": PROJECT,
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
    }

    def run(*args: str) -> Any:
        result = subprocess.run(
            ["gcloud", *args, "--format=json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"gcloud {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
        return json.loads(result.stdout) if result.stdout.strip() else None

    return run


def test_gcloud_imports_describes_and_exports_with_a_filter(
    gcloud: Any, store: StoreRef, bucket: storage.Bucket
) -> None:
    instances = generate_dataset(2, 1, 2, seed=301)
    upload(bucket, {f"in/{i.relative_path}": i.data for i in instances})
    location = ["--dataset", store.dataset, "--location", store.location]

    # WHEN gcloud imports (it waits for the operation itself)
    gcloud(
        "healthcare",
        "dicom-stores",
        "import",
        "gcs",
        store.store,
        *location,
        f"--gcs-uri=gs://{bucket.name}/in/**.dcm",
    )
    # THEN the operation is listed and describable with its counters
    operations = gcloud("healthcare", "operations", "list", *location)
    assert operations, "gcloud listed no operations"
    operation_id = operations[0]["name"].rsplit("/", 1)[1]
    described = gcloud("healthcare", "operations", "describe", operation_id, *location)
    assert described["done"] is True
    assert described["metadata"]["counter"]["success"] == str(len(instances))

    # WHEN gcloud beta exports with a filter file naming one instance
    chosen = instances[0]
    bucket.blob("filter.txt").upload_from_string(
        f"/studies/{chosen.study_uid}/series/{chosen.series_uid}/instances/{chosen.sop_uid}\n"
    )
    gcloud(
        "beta",
        "healthcare",
        "dicom-stores",
        "export",
        "gcs",
        store.store,
        *location,
        f"--gcs-uri-prefix=gs://{bucket.name}/out/",
        f"--filter-config-gcs-uri=gs://{bucket.name}/filter.txt",
    )
    # THEN exactly that instance is exported
    assert [b.name for b in bucket.list_blobs(prefix="out/")] == [
        f"out/{chosen.study_uid}/{chosen.series_uid}/{chosen.sop_uid}.dcm"
    ]
