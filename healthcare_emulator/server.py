"""Serve the emulator over HTTP (threaded), in this process or as ``python -m healthcare_emulator``."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

from werkzeug.serving import BaseWSGIServer, make_server

from healthcare_emulator.app import create_app
from healthcare_emulator.faults import FaultInjector
from healthcare_emulator.gcs import GcsClient
from healthcare_emulator.service import Emulator


class EmulatorServer:
    """A running emulator on ``host:port``; ``port=0`` picks a free port."""

    def __init__(
        self,
        data_dir: Path,
        gcs: GcsClient,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultInjector | None = None,
    ) -> None:
        self.emulator = Emulator.open(data_dir, gcs)
        if faults is not None:
            self.emulator.faults = faults
        self._server: BaseWSGIServer = make_server(host, port, create_app(self.emulator), threaded=True)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self.port}"

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
