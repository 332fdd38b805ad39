"""What every function instance builds once: settings from its environment and the real adapters."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from dicomflow.adapters.factory import build_ports
from dicomflow.config.settings import Settings
from dicomflow.errors import OperationPendingError
from dicomflow.logs import ObjectNames, configure
from dicomflow.ports import ErrorLog, HealthcareApi, ObjectStore, Publisher, Subscriber


@dataclass(frozen=True)
class Runtime:
    """Settings and the ports the core needs, built once per process."""

    settings: Settings
    store: ObjectStore
    publisher: Publisher
    subscriber: Subscriber
    healthcare: HealthcareApi  # the default route's store
    stores: Callable[[str], HealthcareApi]  # every route's store, by resource name
    error_log: ErrorLog  # the API's per-file errors (Cloud Logging)


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
    names = ObjectNames.policy(settings.log_object_names, settings.log_hash_key)
    configure(component, settings.log_level, expected=(OperationPendingError,), names=names)
    ports = build_ports(settings, os.environ)
    return Runtime(
        settings, ports.store, ports.publisher, ports.subscriber, ports.healthcare, ports.stores, ports.error_log
    )


def reset() -> None:
    """Forget the cached runtime (tests change the environment between cases)."""
    with _building:
        _built.clear()
