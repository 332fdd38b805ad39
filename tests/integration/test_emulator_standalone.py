"""``python -m healthcare_emulator`` started on its own: no STORAGE_EMULATOR_HOST, no Google credentials.

The process runs with a clean environment (only PATH, a throwaway HOME and gcloud config, and the checks of
google-auth pointed away from any metadata server), as a new user would start it from the README.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from devstack.processes import ManagedProcess, free_port, start_healthcare_emulator
from devstack.synthetic import generate_dataset
from healthcare_emulator.__main__ import build_parser
from tests.integration.conftest import LOCATION, PROJECT, healthcare_client

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _clean_env(home: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "PYTHONPATH": str(ROOT),
        # google-auth must not look for a GCE metadata server beyond this machine
        "NO_GCE_CHECK": "True",
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
    }


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The emulator in a clean environment; yields its URL and its log file."""
    home = tmp_path_factory.mktemp("clean-home")
    port = free_port()
    log_path = home / "emulator.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "healthcare_emulator", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_clean_env(home),
        start_new_session=True,
        cwd=home,
    )
    managed = ManagedProcess("standalone emulator", process, log_path, log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert managed.alive(), f"the emulator exited at start:\n{managed.log_tail()}"
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, f"the emulator did not answer:\n{managed.log_tail()}"
                time.sleep(0.1)
        yield url, log_path
    finally:
        managed.stop()


def test_standalone_serves_datasets_stores_and_dicomweb_without_storage_or_credentials(
    standalone: tuple[str, Path],
) -> None:
    url, log_path = standalone
    api = healthcare_client(url)
    datasets = api.projects().locations().datasets()
    parent = f"projects/{PROJECT}/locations/{LOCATION}"
    # WHEN a dataset and a store are created and an instance is stored and searched
    datasets.create(parent=parent, datasetId="alone", body={}).execute()
    store = f"{parent}/datasets/alone/dicomStores/s"
    datasets.dicomStores().create(parent=f"{parent}/datasets/alone", dicomStoreId="s", body={}).execute()
    instance = generate_dataset(1, 1, 1, seed=1601)[0]
    request = urllib.request.Request(
        f"{url}/v1/{store}/dicomWeb/studies",
        data=instance.data,
        headers={"Content-Type": "application/dicom"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    found = datasets.dicomStores().searchForInstances(parent=store, dicomWebPath="instances").execute()
    # THEN it all works
    assert [item["00080018"]["Value"][0] for item in found] == [instance.sop_uid]
    assert "Traceback" not in log_path.read_text()


@pytest.mark.parametrize(
    "call",
    [
        lambda stores, name: stores.import_(name=name, body={"gcsSource": {"uri": "gs://some-bucket/x/**.dcm"}}),
        lambda stores, name: stores.export(name=name, body={"gcsDestination": {"uriPrefix": "gs://some-bucket/out"}}),
    ],
    ids=["import", "export"],
)
def test_standalone_import_and_export_say_what_to_set(standalone: tuple[str, Path], call: Any) -> None:
    url, log_path = standalone
    api = healthcare_client(url)
    datasets = api.projects().locations().datasets()
    parent = f"projects/{PROJECT}/locations/{LOCATION}"
    dataset = f"{parent}/datasets/nostorage"
    if not any(d["name"] == dataset for d in datasets.list(parent=parent).execute().get("datasets", [])):
        datasets.create(parent=parent, datasetId="nostorage", body={}).execute()
        datasets.dicomStores().create(parent=dataset, dicomStoreId="s", body={}).execute()
    # WHEN an import or export is asked of an emulator without Cloud Storage
    with pytest.raises(HttpError) as refused:
        call(datasets.dicomStores(), f"{dataset}/dicomStores/s").execute()
    # THEN it is a 400 naming what to set, and the emulator logged no traceback
    error = json.loads(refused.value.content)["error"]
    assert refused.value.status_code == 400
    assert error["status"] == "FAILED_PRECONDITION"
    assert "STORAGE_EMULATOR_HOST" in error["message"]
    assert "Application Default Credentials" in error["message"]
    assert "Traceback" not in log_path.read_text()
    assert api.projects().locations().datasets().get(name=dataset).execute()["name"] == dataset


def test_standalone_without_pubsub_stores_and_says_notifications_are_not_sent(
    standalone: tuple[str, Path],
) -> None:
    url, log_path = standalone
    api = healthcare_client(url)
    datasets = api.projects().locations().datasets()
    parent = f"projects/{PROJECT}/locations/{LOCATION}"
    datasets.create(parent=parent, datasetId="nopubsub", body={}).execute()
    topic = {"notificationConfig": {"pubsubTopic": f"projects/{PROJECT}/topics/events"}}
    datasets.dicomStores().create(parent=f"{parent}/datasets/nopubsub", dicomStoreId="s", body=topic).execute()
    instance = generate_dataset(1, 1, 1, seed=1602)[0]
    # WHEN an instance is stored in a store with a topic, without PUBSUB_EMULATOR_HOST
    request = urllib.request.Request(
        f"{url}/v1/{parent}/datasets/nopubsub/dicomStores/s/dicomWeb/studies",
        data=instance.data,
        headers={"Content-Type": "application/dicom"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        # THEN it is stored
        assert response.status == 200
    # AND the log says why no notification was sent
    assert "notifications are configured but not sent" in log_path.read_text()
    assert "Traceback" not in log_path.read_text()


def test_help_lists_every_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "healthcare_emulator", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=ROOT,
    )
    flags = {option for action in build_parser()._actions for option in action.option_strings}
    assert {"--host", "--port", "--data-dir", "--log-level", "--faults", "--fault-seed", "--no-fuzzy-matching"} <= flags
    shown = set(re.findall(r"--[a-z][a-z-]+", result.stdout))
    assert flags - {"-h"} <= shown
    assert "STORAGE_EMULATOR_HOST" in result.stdout
    assert "PUBSUB_EMULATOR_HOST" in result.stdout


def test_rules_of_a_faults_file_are_installed_at_start_and_fire(tmp_path: Path) -> None:
    # GIVEN a --faults file with an HTTP rule (the first datasets listing fails) and an operation rule
    datasets = f"/v1/projects/{PROJECT}/locations/{LOCATION}/datasets"
    rules = [
        {"method": "GET", "path": "/datasets$", "status": 503, "count": 1},
        {"kind": "operation-delay", "operation": "ImportDicomData", "seconds": 5, "count": 2},
    ]
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps(rules))
    port = free_port()
    emulator = start_healthcare_emulator(
        port, tmp_path / "data", "http://127.0.0.1:9", log_path=tmp_path / "emulator.log", faults=faults
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # WHEN the emulator is started with it THEN it lists both rules, none fired yet
        with urllib.request.urlopen(f"{url}/emulator/faults", timeout=10) as response:
            listed = json.loads(response.read())["rules"]
        assert [(r.get("kind"), r.get("path"), r.get("status"), r["remaining"], r["fired"]) for r in listed] == [
            (None, "/datasets$", 503, 1, 0),
            ("operation-delay", None, None, 2, 0),
        ]
        # AND the HTTP rule answers the first matching request 503, then lets the next one through
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}{datasets}", timeout=10)
        assert refused.value.code == 503
        with urllib.request.urlopen(f"{url}{datasets}", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{url}/emulator/faults", timeout=10) as response:
            assert [r["fired"] for r in json.loads(response.read())["rules"]] == [1, 0]
    finally:
        emulator.stop()
