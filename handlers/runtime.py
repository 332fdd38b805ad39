"""What every function instance builds once: settings from its environment and the real adapters."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from dicomflow.adapters.healthcare import GoogleHealthcareApi, build_client, build_session
from dicomflow.adapters.pubsub import PubSubPublisher, PubSubSubscriber
from dicomflow.adapters.storage import GcsObjectStore
from dicomflow.errors import OperationPendingError
from dicomflow.logs import ObjectNames, configure
from dicomflow.ports import HealthcareApi, ObjectStore, Publisher, Subscriber
from dicomflow.retry import RetryPolicy
from dicomflow.settings import Settings


@dataclass(frozen=True)
class Runtime:
    """Settings and the ports the core needs, built once per process."""

    settings: Settings
    store: ObjectStore
    publisher: Publisher
    subscriber: Subscriber
    healthcare: HealthcareApi


def _storage_client(project: str) -> storage.Client:
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        return storage.Client(
            project=project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=emulator),
        )
    return storage.Client(project=project)  # pragma: no cover - real GCS


@functools.cache
def runtime(component: str) -> Runtime:
    """Built on the first event of this process and reused (clients are thread-safe and pool connections)."""
    settings = Settings.from_env(os.environ)
    names = ObjectNames(settings.log_object_names == "hashed", settings.log_hash_key.encode())
    configure(component, settings.log_level, expected=(OperationPendingError,), names=names)
    endpoint = settings.healthcare_api_endpoint
    healthcare = GoogleHealthcareApi(
        build_client(endpoint), build_session(endpoint), settings.store_name,
        RetryPolicy(attempts=settings.api_retry_attempts), base_url=endpoint,
    )  # fmt: skip
    return Runtime(
        settings=settings,
        store=GcsObjectStore(_storage_client(settings.project_id)),
        publisher=PubSubPublisher(settings.project_id),
        subscriber=PubSubSubscriber(settings.project_id),
        healthcare=healthcare,
    )


def reset() -> None:
    """Forget the cached runtime (tests change the environment between cases)."""
    runtime.cache_clear()
