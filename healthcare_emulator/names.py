"""Resource names as value objects, built and parsed in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

from healthcare_emulator.errors import invalid_argument

_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,256}$")


def validate_id(kind: str, value: str | None) -> str:
    """Return ``value`` if it is a valid dataset/store id, else raise a 400 naming the problem."""
    if not value:
        raise invalid_argument(f"{kind} is required")
    if not _ID.match(value):
        raise invalid_argument(f"invalid {kind} {value!r}: use 1-256 letters, digits, '_', '-' or '.'")
    return value


@dataclass(frozen=True)
class LocationName:
    project: str
    location: str

    def __str__(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"


@dataclass(frozen=True)
class DatasetName:
    project: str
    location: str
    dataset: str

    @property
    def parent(self) -> LocationName:
        return LocationName(self.project, self.location)

    def __str__(self) -> str:
        return f"{self.parent}/datasets/{self.dataset}"


@dataclass(frozen=True)
class StoreName:
    dataset: DatasetName
    store: str

    def __str__(self) -> str:
        return f"{self.dataset}/dicomStores/{self.store}"


@dataclass(frozen=True)
class OperationName:
    dataset: DatasetName
    operation_id: str

    def __str__(self) -> str:
        return f"{self.dataset}/operations/{self.operation_id}"
