"""The Google implementations of every port, built from settings and the process environment.

Against the real services: Application Default Credentials. Against the local stand-ins: the variables the
emulators' clients read (``STORAGE_EMULATOR_HOST``, ``PUBSUB_EMULATOR_HOST``), ``HEALTHCARE_API_ENDPOINT`` and
``LOGGING_API_ENDPOINT``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from dicomflow.adapters.cloud_logging import GoogleErrorLog, build_logging_client
from dicomflow.adapters.healthcare import GoogleHealthcareApi, build_client, build_session
from dicomflow.adapters.http_pool import pooled
from dicomflow.adapters.pubsub import PubSubPublisher, PubSubSubscriber
from dicomflow.adapters.storage import GcsObjectStore
from dicomflow.config.settings import Settings
from dicomflow.ports import ErrorLog, HealthcareApi, ObjectStore, Publisher, Subscriber
from dicomflow.retry import RetryPolicy


@dataclass(frozen=True)
class Ports:
    """The adapters of one process (clients are thread-safe and pool their connections)."""

    store: ObjectStore
    publisher: Publisher
    subscriber: Subscriber
    healthcare: HealthcareApi  # the default route's store
    stores: Callable[[str], HealthcareApi]  # any route's store, by resource name
    error_log: ErrorLog  # the API's per-file errors in Cloud Logging


def storage_client(project: str, env: Mapping[str, str]) -> storage.Client:
    emulator = env.get("STORAGE_EMULATOR_HOST")
    if emulator:
        client = storage.Client(
            project=project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=emulator),
        )
    else:  # pragma: no cover - real GCS
        client = storage.Client(project=project)
    # One session for every request thread: as many connections as they use at once, the idle ones closed.
    pooled(client._http)
    # requests scans the whole environment for proxy variables on every call (a quarter of the Python calls per
    # event in a profile of bench/intake); functions reach Cloud Storage directly, not through such a proxy.
    client._http.trust_env = False
    return client


def healthcare_stores(settings: Settings) -> Callable[[str], HealthcareApi]:
    """One HealthcareApi per DICOM store of the settings' routes, sharing one client and one session."""
    endpoint = settings.healthcare_api_endpoint
    client, session = build_client(endpoint), build_session(endpoint)
    retry = RetryPolicy(attempts=settings.api_retry_attempts)
    lock = threading.Lock()  # the REST client (httplib2) is shared and not thread-safe
    apis: dict[str, HealthcareApi] = {
        name: GoogleHealthcareApi(client, session, name, retry, base_url=endpoint, lock=lock)
        for name in settings.stores
    }

    def store(name: str) -> HealthcareApi:
        if name not in apis:  # a batch of a route removed since: its store is still followed up
            apis[name] = GoogleHealthcareApi(client, session, name, retry, base_url=endpoint, lock=lock)
        return apis[name]

    return store


def build_ports(settings: Settings, env: Mapping[str, str]) -> Ports:
    stores = healthcare_stores(settings)
    return Ports(
        store=GcsObjectStore(storage_client(settings.project_id, env)),
        publisher=PubSubPublisher(settings.project_id),
        subscriber=PubSubSubscriber(settings.project_id),
        healthcare=stores(settings.store_name),
        stores=stores,
        error_log=GoogleErrorLog(
            build_logging_client(settings.logging_api_endpoint), RetryPolicy(attempts=settings.api_retry_attempts)
        ),
    )
