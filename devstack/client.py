"""What `upload`, `status` and the demo need from a running stack: storage uploads and a few queries."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from devstack.wiring import PROJECT


def storage_client(storage_host: str) -> storage.Client:
    return storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=storage_host),
    )


def upload_paths(client: storage.Client, bucket: str, paths: Iterable[Path], prefix: str = "") -> list[str]:
    """Upload files and folders (a folder keeps its name and relative paths); return the object names."""
    target = client.bucket(bucket)
    names: list[str] = []
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        base = path.parent
        for file in files:
            name = prefix + file.relative_to(base).as_posix()
            target.blob(name).upload_from_filename(str(file), content_type="application/dicom")
            names.append(name)
    return names


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read() or b"null")


def operations(healthcare_url: str, dataset_name: str) -> list[dict[str, Any]]:
    body = get_json(f"{healthcare_url}/v1/{dataset_name}/operations?pageSize=1000") or {}
    return list(body.get("operations", []))


def stored_instances(healthcare_url: str, store_name: str) -> int:
    return len(get_json(f"{healthcare_url}/v1/{store_name}/dicomWeb/instances") or [])


def read_journal(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
