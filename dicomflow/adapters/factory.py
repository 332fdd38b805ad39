"""The Google implementations of every port, built from settings and the process environment.

Against the real services: Application Default Credentials. Against the local stand-ins: the variables the
emulators' clients read (``STORAGE_EMULATOR_HOST``, ``PUBSUB_EMULATOR_HOST``) and ``HEALTHCARE_API_ENDPOINT``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from dicomflow.adapters.healthcare import GoogleHealthcareApi, build_client, build_session
from dicomflow.adapters.pubsub import PubSubPublisher, PubSubSubscriber
from dicomflow.adapters.storage import GcsObjectStore
from dicomflow.ports import HealthcareApi, ObjectStore, Publisher, Subscriber
from dicomflow.retry import RetryPolicy
from dicomflow.settings import Settings


@dataclass(frozen=True)
class Ports:
    """The adapters of one process (clients are thread-safe and pool their connections)."""

    store: ObjectStore
    publisher: Publisher
    subscriber: Subscriber
    healthcare: HealthcareApi


def storage_client(project: str, env: Mapping[str, str]) -> storage.Client:
    emulator = env.get("STORAGE_EMULATOR_HOST")
    if emulator:
        return storage.Client(
            project=project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=emulator),
        )
    return storage.Client(project=project)  # pragma: no cover - real GCS


def build_ports(settings: Settings, env: Mapping[str, str]) -> Ports:
    endpoint = settings.healthcare_api_endpoint
    healthcare = GoogleHealthcareApi(
        build_client(endpoint), build_session(endpoint), settings.store_name,
        RetryPolicy(attempts=settings.api_retry_attempts), base_url=endpoint,
    )  # fmt: skip
    return Ports(
        store=GcsObjectStore(storage_client(settings.project_id, env)),
        publisher=PubSubPublisher(settings.project_id),
        subscriber=PubSubSubscriber(settings.project_id),
        healthcare=healthcare,
    )
