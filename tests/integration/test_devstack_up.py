"""``python -m devstack up``: starts the stack, prints how to reach it, stops everything on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from devstack.processes import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its parent's wait counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_devstack_up_serves_a_sample_store_and_stops_its_children(tmp_path: Path) -> None:
    gcs_port, hc_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "devstack",
        "up",
        "--gcs-port",
        str(gcs_port),
        "--healthcare-port",
        str(hc_port),
        "--data-dir",
        str(tmp_path),
    ]
    stack = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert stack.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = stack.stdout.readline()
            assert line, "devstack exited before it was ready:\n" + "".join(lines)
            lines.append(line)
            if line.startswith("ready"):
                break
        output = "".join(lines)
        assert f"STORAGE_EMULATOR_HOST=http://127.0.0.1:{gcs_port}" in output
        children = _children(stack.pid)
        assert len(children) == 2
        # THEN the sample store answers and the sample files can be imported
        base = f"http://127.0.0.1:{hc_port}/v1/projects/local-project/locations/us-central1/datasets/local-dataset"
        request = urllib.request.Request(
            f"{base}/dicomStores/local-store:import",
            method="POST",
            data=json.dumps({"gcsSource": {"uri": "gs://dicom-incoming/sample/**.dcm"}}).encode(),
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            operation = json.loads(response.read())
        while not operation.get("done"):
            time.sleep(0.1)
            with urllib.request.urlopen(f"http://127.0.0.1:{hc_port}/v1/{operation['name']}", timeout=10) as response:
                operation = json.loads(response.read())
        assert operation["metadata"]["counter"] == {"success": "12"}
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(timeout=30)
    # AND every process it started is gone
    assert all(not _alive(pid) for pid in children)


def test_devstack_up_refuses_a_port_in_use_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "devstack", "up", "--gcs-port", str(port), "--healthcare-port", str(free_port())],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"port {port} for fake-gcs-server is already in use" in result.stderr
