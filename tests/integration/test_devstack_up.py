"""``python -m devstack up``: starts the stack, prints how to reach it, stops everything on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.processes import free_port
from devstack.stack import StackConfig

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


def test_devstack_up_starts_every_service_and_stops_its_children(tmp_path: Path) -> None:
    config = StackConfig.on_free_ports()  # below the ephemeral range: no client connection takes them meanwhile
    ports = {"--gcs-port": config.gcs_port, "--pubsub-port": config.pubsub_port,
             "--healthcare-port": config.healthcare_port}  # fmt: skip
    functions = config.functions_port
    command = [sys.executable, "-m", "devstack", "up", "--functions-port", str(functions), "--data-dir", str(tmp_path)]
    for flag, port in ports.items():
        command += [flag, str(port)]
    stack = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    children: list[int] = []
    try:
        assert stack.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = stack.stdout.readline()
            assert line, "devstack exited before it was ready:\n" + "".join(lines)
            lines.append(line)
            if line.startswith("ready"):
                break
        output = "".join(lines)
        assert f"STORAGE_EMULATOR_HOST=http://127.0.0.1:{ports['--gcs-port']}" in output
        assert f"PUBSUB_EMULATOR_HOST=127.0.0.1:{ports['--pubsub-port']}" in output
        children = _children(stack.pid)
        assert len(children) == 6  # Pub/Sub emulator, fake-gcs-server, healthcare_emulator, three functions
        base = f"http://127.0.0.1:{ports['--healthcare-port']}/v1/projects/local-project/locations/us-central1"
        with urllib.request.urlopen(f"{base}/datasets/local-dataset/dicomStores/local-store", timeout=10) as answer:
            assert json.loads(answer.read())["name"].endswith("/dicomStores/local-store")
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(timeout=60)
    # AND every process it started is gone
    assert children
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
    assert f"port {port} for fake-gcs-server" in result.stderr
    assert "already in use" in result.stderr


def test_devstack_up_without_java_says_so_and_starts_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no java (and no gcloud) on PATH
    ports = [str(free_port()) for _ in range(3)]
    result = subprocess.run(
        [sys.executable, "-m", "devstack", "up", "--gcs-port", ports[0], "--pubsub-port", ports[1],
         "--healthcare-port", ports[2], "--functions-port", str(free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Java 17+ is required" in result.stderr


def _child(parent: int, marker: str) -> int:
    """The child of ``parent`` whose command line contains ``marker``."""
    for pid in _children(parent):
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if marker in cmdline.read().replace(b"\0", b" ").decode():
                return pid
    raise AssertionError(f"no child process with {marker!r}")


def _wait(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _tick(url: str) -> int:
    """POST a flush tick (as the timer does); the HTTP status, or 0 when nothing answers."""
    tick = {"message": {"data": "", "messageId": "probe"}, "subscription": "flush-ticks"}
    request = urllib.request.Request(url, data=json.dumps(tick).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def test_devstack_up_restarts_a_killed_function_and_stops_when_the_pubsub_emulator_dies(tmp_path: Path) -> None:
    config = StackConfig.on_free_ports()  # below the ephemeral range: no client connection takes them meanwhile
    ports = {"--gcs-port": config.gcs_port, "--pubsub-port": config.pubsub_port,
             "--healthcare-port": config.healthcare_port}  # fmt: skip
    functions = config.functions_port
    command = [sys.executable, "-m", "devstack", "up", "--functions-port", str(functions), "--data-dir", str(tmp_path)]
    for flag, port in ports.items():
        command += [flag, str(port)]
    stack = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert stack.stdout is not None
        for line in stack.stdout:
            lines.append(line)
            if line.startswith("ready"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    children: list[int] = []
    try:
        _wait(lambda: ready.is_set() or stack.poll() is not None, "devstack up to be ready")
        assert ready.is_set(), "devstack exited before it was ready:\n" + "".join(lines)
        children = _children(stack.pid)
        flush_url = f"http://127.0.0.1:{functions + 1}"
        # GIVEN the on_flush process `up` started WHEN it is killed by its PID
        flush_pid = _child(stack.pid, "--target on_flush")
        os.kill(flush_pid, signal.SIGKILL)
        # THEN `up` logs how it ended and that it is restarted, as JSON
        expected = f"on_flush (pid {flush_pid}) killed by signal SIGKILL (9); restarting it"
        _wait(lambda: any(expected in line for line in lines), "the restart log line")
        [entry] = [json.loads(line) for line in lines if expected in line]
        assert (entry["severity"], entry["process"], entry["signal"]) == ("WARNING", "on_flush", "SIGKILL")
        # AND flush ticks are served again while the stack stays up
        _wait(lambda: _tick(flush_url) == 200, "on_flush to serve again")
        assert stack.poll() is None
        children += _children(stack.pid)
        # WHEN the Pub/Sub emulator dies
        pubsub_pid = _child(stack.pid, "pubsub-emulator")
        os.kill(pubsub_pid, signal.SIGKILL)
        # THEN `up` stops everything and exits 1 with the reason
        assert stack.wait(timeout=120) == 1
        reader.join(timeout=30)
        output = "".join(lines)
        assert f"devstack: Pub/Sub emulator (pid {pubsub_pid}) killed by signal SIGKILL (9); " in output
        assert "pending records and watches are gone: the stack stops" in output
    finally:
        if stack.poll() is None:
            stack.send_signal(signal.SIGTERM)
            stack.wait(timeout=60)
    assert children
    _wait(lambda: all(not _alive(pid) for pid in children), "every process `up` started to be gone", timeout=30)
