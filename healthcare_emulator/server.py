"""Serve the emulator over HTTP (threaded), in this process or as ``python -m healthcare_emulator``."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

from werkzeug.serving import BaseWSGIServer, make_server

from healthcare_emulator.app import create_app
from healthcare_emulator.faults import FaultInjector
from healthcare_emulator.gcs import GcsClient
from healthcare_emulator.notifications import Notifier
from healthcare_emulator.service import Emulator
from healthcare_emulator.timing import TimingProfile


class EmulatorServer:
    """A running emulator on ``host:port``; ``port=0`` picks a free port."""

    def __init__(
        self,
        data_dir: Path,
        gcs: GcsClient,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultInjector | None = None,
        *,
        fuzzy_matching: bool = True,
        pubsub_emulator_host: str | None = None,
        timing: TimingProfile | None = None,
    ) -> None:
        # a timed operation waits out its duration on a runner thread: more of them, so that as many operations
        # run at once as the pipeline starts (MAX_CONCURRENT_OPERATIONS imports plus their exports)
        self.emulator = Emulator.open(data_dir, gcs, workers=16 if timing else 4)
        self.emulator.clocks.set(timing)
        if faults is not None:
            self.emulator.faults = faults
        self.emulator.fuzzy_matching = fuzzy_matching
        self.emulator.notifier = Notifier(pubsub_emulator_host=pubsub_emulator_host)
        try:
            self._server: BaseWSGIServer = make_server(host, port, create_app(self.emulator), threaded=True)
        except BaseException:
            self.emulator.close()
            raise
        self.emulator.url = self.url
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` as clients reach it (a wildcard bind address is reached on loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self._server.host, self._server.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="emulator-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.emulator.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
