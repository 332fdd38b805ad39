"""The emulator's state and the lookups every API module shares."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthcare_emulator.errors import not_found
from healthcare_emulator.faults import FaultInjector
from healthcare_emulator.gcs import GcsClient
from healthcare_emulator.instances import ParsedInstance
from healthcare_emulator.names import DatasetName, StoreName
from healthcare_emulator.notifications import Notifier, StoredInstance
from healthcare_emulator.operations import OperationRunner
from healthcare_emulator.repository import Repository
from healthcare_emulator.timing import Clocks


@dataclass
class Emulator:
    """Everything a request handler needs: the index, the operation runner, Cloud Storage, notifications."""

    repository: Repository
    operations: OperationRunner
    gcs: GcsClient
    data_dir: Path
    faults: FaultInjector = field(default_factory=FaultInjector)
    clocks: Clocks = field(default_factory=Clocks)  # the timing profile (off by default)
    notifier: Notifier = field(default_factory=Notifier)
    url: str = ""  # the server's own address (http://127.0.0.1:PORT), the base of the URLs it hands out
    fuzzy_matching: bool = True
    debug_memory: bool = False  # serve /emulator/memory (HEALTHCARE_EMULATOR_DEBUG_MEMORY=1, see debug_memory)
    # QIDO-RS searches of a whole store, one at a time: each holds the store's metadata while it runs (see
    # dicomweb.search_resources); they are CPU-bound under the GIL, so running them together gained nothing
    store_searches: threading.Semaphore = field(default_factory=lambda: threading.BoundedSemaphore(1))

    @classmethod
    def open(cls, data_dir: Path, gcs: GcsClient, workers: int = 4) -> Emulator:
        data_dir.mkdir(parents=True, exist_ok=True)
        repository = Repository(data_dir)
        return cls(repository, OperationRunner(repository, workers), gcs, data_dir)

    def close(self) -> None:
        self.operations.shutdown()
        self.notifier.close()
        self.repository.close()

    def base_url(self, request_host_url: str) -> str:
        """The server's own address; the request's Host only when the server does not know it (tests' WSGI)."""
        return (self.url or request_host_url).rstrip("/")

    def require_dataset(self, name: DatasetName) -> dict[str, Any]:
        body = self.repository.get_resource("datasets", str(name))
        if body is None:
            raise not_found(f"dataset {name} does not exist")
        return body

    def require_store(self, name: StoreName) -> dict[str, Any]:
        self.require_dataset(name.dataset)
        body = self.repository.get_resource("stores", str(name))
        if body is None:
            raise not_found(f"DICOM store {name} does not exist")
        return body

    def notify_stored(self, store: str, instance: ParsedInstance, storage_class: str, action: str) -> None:
        """Publish the store's notifications for a newly stored instance (no-op without a topic)."""
        stored = StoredInstance(
            store, instance.study_uid, instance.series_uid, instance.sop_uid, instance.metadata, storage_class
        )
        self.notifier.instance_stored(self.repository.get_resource("stores", store), stored, action)
