"""What every function instance builds once: settings from its environment and the real adapters."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from requests.adapters import HTTPAdapter

from dicomflow.adapters.healthcare import GoogleHealthcareApi, build_client, build_session
from dicomflow.adapters.pubsub import PubSubPublisher, PubSubSubscriber
from dicomflow.adapters.storage import GcsObjectStore
from dicomflow.errors import OperationPendingError
from dicomflow.logs import ObjectNames, configure
from dicomflow.ports import HealthcareApi, ObjectStore, Publisher, Subscriber
from dicomflow.retry import RetryPolicy
from dicomflow.settings import Settings

_CONNECTIONS = 128  # pooled HTTP connections per host: at least an instance's request threads (THREADS)


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
        client = storage.Client(
            project=project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=emulator),
        )
    else:  # pragma: no cover - real GCS
        client = storage.Client(project=project)
    # One session for every request thread: keep as many connections as threads may use at once (requests keeps
    # 10 per host by default, so concurrent intake would open and drop connections on every call).
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=_CONNECTIONS)
    for scheme in ("http://", "https://"):
        client._http.mount(scheme, adapter)
    # requests scans the whole environment for proxy variables on every call (a quarter of the Python calls per
    # event in a profile of bench/intake); functions reach Cloud Storage directly, not through such a proxy.
    client._http.trust_env = False
    return client


_built: dict[str, Runtime] = {}
_building = threading.Lock()


def runtime(component: str) -> Runtime:
    """Built once per process, on the first event, and shared by every request thread: when several threads
    arrive first at once, one builds and the others wait for it (one set of clients, one publisher)."""
    built = _built.get(component)
    if built is not None:
        return built
    with _building:
        if component not in _built:
            _built[component] = _build(component)
        return _built[component]


def _build(component: str) -> Runtime:
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
    with _building:
        _built.clear()
