"""Routes (the ``ROUTES`` setting): which DICOM store the files under a prefix go to, with their own exports
and storage class. One deployment, several stores: ``site-a/`` to one store, ``site-b/`` to another (in
another dataset or project). The longest matching prefix wins; everything else takes the default route, the
single-store settings (DICOM_STORE, EXPORT_TARGETS, BLOB_STORAGE_CLASS). A batch never mixes routes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from dicomflow.config.exports import ExportTarget, json_list, parse_export_targets, require_unique

DEFAULT = "default"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_PREFIX = re.compile(r"^gs://([a-z0-9][a-z0-9._\-]{1,220}[a-z0-9])(/.*)?$")
_STORE = re.compile(r"^projects/[^/]+/locations/[^/]+/datasets/[^/]+/dicomStores/[^/]+$")
_STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")


@dataclass(frozen=True)
class Route:
    """Files under ``gs://bucket/prefix`` go to ``store``."""

    name: str
    bucket: str
    prefix: str
    store: str
    export_targets: tuple[ExportTarget, ...] = ()
    storage_class: str | None = None

    def matches(self, bucket: str, name: str) -> bool:
        return bucket == self.bucket and name.startswith(self.prefix)

    @property
    def dataset(self) -> str:
        return self.store.split("/dicomStores/", maxsplit=1)[0]


def parse_routes(raw: str) -> tuple[Route, ...]:
    """The JSON list of ``ROUTES``; ValueError naming the route and what is wrong with it."""
    routes = tuple(_route(index, item) for index, item in enumerate(json_list(raw, "routes")))
    require_unique([r.name for r in routes], "route names")
    prefixes = [(r.bucket, r.prefix) for r in routes]
    same = sorted({f"gs://{b}/{p}" for b, p in prefixes if prefixes.count((b, p)) > 1})
    if same:
        raise ValueError(f"two routes have the same prefix: {', '.join(same)}")
    return routes


def _route(index: int, item: Any) -> Route:
    where = f"route {index}"
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name) or name == DEFAULT:
        raise ValueError(f"{where} needs a name of lowercase letters, digits and '-' (and not {DEFAULT!r})")
    where = f"route {name!r}"
    unknown = set(item) - {"name", "prefix", "store", "export_targets", "storage_class"}
    if unknown:
        raise ValueError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    prefix = item.get("prefix")
    match = _PREFIX.match(prefix) if isinstance(prefix, str) else None
    if match is None:
        raise ValueError(f"{where}: prefix must be gs://bucket/prefix/")
    store = item.get("store")
    if not isinstance(store, str) or not _STORE.match(store):
        raise ValueError(f"{where}: store must be projects/P/locations/L/datasets/D/dicomStores/S")
    targets = item.get("export_targets", [])
    try:
        export_targets = parse_export_targets(json.dumps(targets))
    except ValueError as exc:
        raise ValueError(f"{where}: export_targets: {exc}") from exc
    storage_class = item.get("storage_class")
    if storage_class is not None and storage_class not in _STORAGE_CLASSES:
        raise ValueError(f"{where}: storage_class must be one of {', '.join(_STORAGE_CLASSES)}")
    return Route(name, match.group(1), (match.group(2) or "/")[1:], store, export_targets, storage_class)
