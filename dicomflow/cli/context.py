"""What every subcommand works with: the settings of the deployment, its ports and its ledger."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dicomflow.adapters.factory import build_ports
from dicomflow.config.settings import Settings
from dicomflow.errors import ConfigurationError
from dicomflow.ledger.store import BatchLedger
from dicomflow.ports import HealthcareApi, ObjectStore, Publisher, Subscriber


@dataclass(frozen=True)
class Context:
    settings: Settings
    store: ObjectStore
    publisher: Publisher
    subscriber: Subscriber
    healthcare: HealthcareApi
    stores: Callable[[str], HealthcareApi]
    ledger: BatchLedger
    now: Callable[[], datetime]


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` prefixes, quotes and ``#`` comments allowed), as ``devstack up`` prints."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.removeprefix("export ").partition("=")
        if not equals or not key.strip():
            raise ConfigurationError(f"{path}:{number}: expected KEY=VALUE")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def load(env_file: Path | None, *, into_process: bool = True) -> Context:
    """Settings from the environment (and ``env_file`` over it); the real clients, or the local stand-ins when
    the emulator variables are set. The file's values go into this process's environment (``into_process``)
    because the Pub/Sub client reads its emulator variable from there; a host process that already points its
    clients at the right services (the local stack's recovery) keeps its environment as it is."""
    values = read_env_file(env_file) if env_file is not None else {}
    if into_process:
        os.environ.update(values)
    env: Mapping[str, str] = {**os.environ, **values}
    settings = Settings.from_env(env)
    ports = build_ports(settings, env)

    def now() -> datetime:
        return datetime.now(UTC)

    ledger = BatchLedger(ports.store, settings.state_bucket, settings.state_prefix, now=now)
    return Context(
        settings, ports.store, ports.publisher, ports.subscriber, ports.healthcare, ports.stores, ledger, now
    )
