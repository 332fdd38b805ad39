"""Persistent state of the emulator: an SQLite index plus instance files on disk.

Instance bytes are content-addressed files (``blobs/ab/abcdef....dcm``) written atomically (temporary file +
``os.replace``); the index maps (store, study, series, instance) to a file. One lock serialises index
writes, so concurrent requests and background operations stay consistent; a restart with the same data
directory sees everything that was committed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from healthcare_emulator.instances import ParsedInstance

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY, parent TEXT NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stores (
    name TEXT PRIMARY KEY, dataset TEXT NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
    store TEXT NOT NULL, study TEXT NOT NULL, series TEXT NOT NULL, sop TEXT NOT NULL,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, transfer_syntax TEXT NOT NULL,
    storage_class TEXT NOT NULL, storage_class_time TEXT NOT NULL, created TEXT NOT NULL,
    metadata TEXT NOT NULL,
    PRIMARY KEY (store, study, series, sop)
);
CREATE TABLE IF NOT EXISTS operations (
    name TEXT PRIMARY KEY, dataset TEXT NOT NULL, seq INTEGER NOT NULL, done INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS operations_by_dataset ON operations (dataset, seq);
CREATE TABLE IF NOT EXISTS operation_errors (
    operation TEXT NOT NULL, seq INTEGER NOT NULL, resource TEXT NOT NULL, reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS operation_errors_by_operation ON operation_errors (operation, seq);
CREATE TABLE IF NOT EXISTS log_entries (
    project TEXT NOT NULL, timestamp TEXT NOT NULL, seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_entries_by_project ON log_entries (project, timestamp, seq);
CREATE TABLE IF NOT EXISTS iam_policies (
    resource TEXT PRIMARY KEY, body TEXT NOT NULL
);
"""


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StoreOutcome(Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # same UIDs, same bytes: ignored, counts as success
    CONFLICT = "conflict"  # same UIDs, different bytes: fails


@dataclass(frozen=True)
class InstanceRecord:
    store: str
    study: str
    series: str
    sop: str
    sha256: str
    size: int
    transfer_syntax: str
    storage_class: str
    storage_class_time: str
    metadata_json: str

    @property
    def metadata(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.metadata_json)
        return loaded


@dataclass(frozen=True)
class StoreMetrics:
    studies: int
    series: int
    instances: int
    blob_bytes: int
    structured_bytes: int


class Repository:
    """Datasets, stores, instances and operations of one emulator data directory."""

    def __init__(self, data_dir: Path) -> None:
        self._dir = data_dir
        self._blobs = data_dir / "blobs"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(data_dir / "index.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, params).fetchall())

    # ----- datasets and stores (bodies are the API resources as JSON) -----

    def insert_resource(self, table: str, name: str, parent: str, body: dict[str, Any]) -> bool:
        """Insert a dataset/store; False when the name already exists."""
        column = "parent" if table == "datasets" else "dataset"
        with self._transaction() as db:
            if db.execute(f"SELECT 1 FROM {table} WHERE name = ?", (name,)).fetchone():
                return False
            db.execute(
                f"INSERT INTO {table} (name, {column}, body) VALUES (?, ?, ?)",
                (name, parent, json.dumps(body)),
            )
        return True

    def update_resource(self, table: str, name: str, body: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute(f"UPDATE {table} SET body = ? WHERE name = ?", (json.dumps(body), name))

    def get_resource(self, table: str, name: str) -> dict[str, Any] | None:
        rows = self._query(f"SELECT body FROM {table} WHERE name = ?", (name,))
        return json.loads(rows[0][0]) if rows else None

    def list_resources(self, table: str, parent: str) -> list[dict[str, Any]]:
        column = "parent" if table == "datasets" else "dataset"
        rows = self._query(f"SELECT body FROM {table} WHERE {column} = ? ORDER BY name", (parent,))
        return [json.loads(row[0]) for row in rows]

    def delete_dataset(self, name: str) -> bool:
        with self._transaction() as db:
            if not db.execute("SELECT 1 FROM datasets WHERE name = ?", (name,)).fetchone():
                return False
            stores = [row[0] for row in db.execute("SELECT name FROM stores WHERE dataset = ?", (name,))]
            hashes: set[str] = set()
            for store in stores:
                hashes |= _hashes(db, "WHERE store = ?", (store,))
                db.execute("DELETE FROM instances WHERE store = ?", (store,))
            db.execute("DELETE FROM stores WHERE dataset = ?", (name,))
            db.execute("DELETE FROM datasets WHERE name = ?", (name,))
            db.execute("DELETE FROM iam_policies WHERE resource = ? OR resource LIKE ?", (name, name + "/%"))
        self._drop_unreferenced(hashes)
        return True

    def delete_store(self, name: str) -> bool:
        with self._transaction() as db:
            if not db.execute("SELECT 1 FROM stores WHERE name = ?", (name,)).fetchone():
                return False
            hashes = _hashes(db, "WHERE store = ?", (name,))
            db.execute("DELETE FROM instances WHERE store = ?", (name,))
            db.execute("DELETE FROM stores WHERE name = ?", (name,))
            db.execute("DELETE FROM iam_policies WHERE resource = ?", (name,))
        self._drop_unreferenced(hashes)
        return True

    # ----- IAM policies -----

    def get_policy(self, resource: str) -> dict[str, Any] | None:
        rows = self._query("SELECT body FROM iam_policies WHERE resource = ?", (resource,))
        return json.loads(rows[0][0]) if rows else None

    def set_policy(self, resource: str, policy: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO iam_policies VALUES (?, ?) ON CONFLICT (resource) DO UPDATE SET body = excluded.body",
                (resource, json.dumps(policy)),
            )

    # ----- instances -----

    def store_instance(self, store: str, instance: ParsedInstance, data: bytes, storage_class: str) -> StoreOutcome:
        """Add an instance unless it exists; identical bytes are a duplicate, different bytes a conflict."""
        existing = self._query(
            "SELECT sha256 FROM instances WHERE store = ? AND study = ? AND series = ? AND sop = ?",
            (store, instance.study_uid, instance.series_uid, instance.sop_uid),
        )
        if existing:
            return StoreOutcome.DUPLICATE if existing[0][0] == instance.sha256 else StoreOutcome.CONFLICT
        self._write_blob(instance.sha256, data)
        now = now_rfc3339()
        with self._transaction() as db:
            row = db.execute(
                "SELECT sha256 FROM instances WHERE store = ? AND study = ? AND series = ? AND sop = ?",
                (store, instance.study_uid, instance.series_uid, instance.sop_uid),
            ).fetchone()
            if row:
                return StoreOutcome.DUPLICATE if row[0] == instance.sha256 else StoreOutcome.CONFLICT
            db.execute(
                "INSERT INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    store,
                    instance.study_uid,
                    instance.series_uid,
                    instance.sop_uid,
                    instance.sha256,
                    len(data),
                    instance.transfer_syntax,
                    storage_class,
                    now,
                    now,
                    json.dumps(instance.metadata, sort_keys=True),
                ),
            )
        return StoreOutcome.STORED

    def find_instances(
        self, store: str, study: str | None = None, series: str | None = None, sop: str | None = None
    ) -> list[InstanceRecord]:
        sql = "SELECT * FROM instances WHERE store = ?"
        params: list[Any] = [store]
        for column, value in (("study", study), ("series", series), ("sop", sop)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        sql += " ORDER BY study, series, sop"
        return [_record(row) for row in self._query(sql, tuple(params))]

    def iter_metadata(self, store: str, study: str | None = None, chunk: int = 256) -> Iterator[str]:
        """The DICOM JSON (as text) of every instance of a store, or of one study, in index order, ``chunk``
        rows per query: the lock is held for one chunk at a time (writes go on between chunks) and no list of
        the whole store is ever built (QIDO-RS of a whole store reads it so, see dicomweb.search_resources)."""
        where = "store = ?" + (" AND study = ?" if study is not None else "")
        scope: tuple[Any, ...] = (store,) if study is None else (store, study)
        after: tuple[Any, ...] = ()
        while True:
            rows = self._query(
                f"SELECT study, series, sop, metadata FROM instances WHERE {where}"
                + (" AND (study, series, sop) > (?, ?, ?)" if after else "")
                + " ORDER BY study, series, sop LIMIT ?",
                (*scope, *after, chunk),
            )
            for row in rows:
                yield str(row[3])
            if len(rows) < chunk:
                return
            after = tuple(rows[-1][:3])

    def metrics(self, store: str, study: str | None = None, series: str | None = None) -> StoreMetrics:
        """Counts and sizes of a store, or of one study or series of it."""
        where = "WHERE store = ?"
        params: list[Any] = [store]
        for column, value in (("study", study), ("series", series)):
            if value is not None:
                where += f" AND {column} = ?"
                params.append(value)
        row = self._query(
            "SELECT COUNT(DISTINCT study), COUNT(DISTINCT study || '/' || series), COUNT(*), "
            f"COALESCE(SUM(size), 0), COALESCE(SUM(LENGTH(metadata)), 0) FROM instances {where}",
            tuple(params),
        )[0]
        return StoreMetrics(*(int(value) for value in row))

    def read_instance(self, record: InstanceRecord) -> bytes:
        return self._blob_path(record.sha256).read_bytes()

    def delete_instances(self, store: str, study: str, series: str | None = None, sop: str | None = None) -> int:
        where = "WHERE store = ? AND study = ?"
        params: list[Any] = [store, study]
        if series is not None:
            where += " AND series = ?"
            params.append(series)
        if sop is not None:
            where += " AND sop = ?"
            params.append(sop)
        with self._transaction() as db:
            hashes = _hashes(db, where, tuple(params))
            count = db.execute(f"DELETE FROM instances {where}", tuple(params)).rowcount
        self._drop_unreferenced(hashes)
        return int(count)

    def set_storage_class(
        self,
        store: str,
        storage_class: str,
        study: str | None = None,
        series: str | None = None,
        sop: str | None = None,
    ) -> int:
        sql = "UPDATE instances SET storage_class = ?, storage_class_time = ? WHERE store = ?"
        params: list[Any] = [storage_class, now_rfc3339(), store]
        for column, value in (("study", study), ("series", series), ("sop", sop)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        with self._transaction() as db:
            return int(db.execute(sql, tuple(params)).rowcount)

    def _drop_unreferenced(self, hashes: set[str]) -> None:
        """Remove the instance files of ``hashes`` that no index row refers to any more."""
        for sha256 in hashes:
            if not self._query("SELECT 1 FROM instances WHERE sha256 = ? LIMIT 1", (sha256,)):
                self._blob_path(sha256).unlink(missing_ok=True)

    def _blob_path(self, sha256: str) -> Path:
        return self._blobs / sha256[:2] / f"{sha256}.dcm"

    def _write_blob(self, sha256: str, data: bytes) -> None:
        path = self._blob_path(sha256)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ----- operations -----

    def save_operation(self, name: str, dataset: str, body: dict[str, Any]) -> None:
        done = 1 if body.get("done") else 0
        with self._transaction() as db:
            updated = db.execute(
                "UPDATE operations SET body = ?, done = ? WHERE name = ?", (json.dumps(body), done, name)
            ).rowcount
            if not updated:
                seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM operations").fetchone()[0]
                db.execute(
                    "INSERT INTO operations VALUES (?, ?, ?, ?, ?)",
                    (name, dataset, seq, done, json.dumps(body)),
                )

    def get_operation(self, name: str) -> dict[str, Any] | None:
        rows = self._query("SELECT body FROM operations WHERE name = ?", (name,))
        return json.loads(rows[0][0]) if rows else None

    def list_operations(self, dataset: str, offset: int, limit: int) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT body FROM operations WHERE dataset = ? ORDER BY seq DESC LIMIT ? OFFSET ?",
            (dataset, limit, offset),
        )
        return [json.loads(row[0]) for row in rows]

    def unfinished_operations(self) -> list[dict[str, Any]]:
        return [json.loads(row[0]) for row in self._query("SELECT body FROM operations WHERE done = 0")]

    def add_operation_errors(self, operation: str, errors: list[tuple[str, str]]) -> None:
        if not errors:
            return
        with self._transaction() as db:
            start = db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM operation_errors WHERE operation = ?", (operation,)
            ).fetchone()[0]
            db.executemany(
                "INSERT INTO operation_errors VALUES (?, ?, ?, ?)",
                [(operation, start + i + 1, resource, reason) for i, (resource, reason) in enumerate(errors)],
            )

    def operation_errors(self, operation: str) -> list[tuple[str, str]]:
        rows = self._query(
            "SELECT resource, reason FROM operation_errors WHERE operation = ? ORDER BY seq", (operation,)
        )
        return [(str(row[0]), str(row[1])) for row in rows]

    # ----- Cloud Logging entries (the per-item errors of operations, as LogEntry JSON) -----

    def add_log_entries(self, project: str, entries: list[dict[str, Any]]) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO log_entries (project, timestamp, body) VALUES (?, ?, ?)",
                [(project, entry["timestamp"], json.dumps(entry)) for entry in entries],
            )

    def log_entries(self, projects: list[str]) -> list[dict[str, Any]]:
        """Every entry of ``projects``, oldest first (equal timestamps in insertion order)."""
        return list(self.iter_log_entries(projects))

    def iter_log_entries(
        self, projects: list[str], *, newest_first: bool = False, chunk: int = 256
    ) -> Iterator[dict[str, Any]]:
        """The entries of ``projects`` in timestamp order (equal timestamps in insertion order; reversed with
        ``newest_first``), read ``chunk`` rows per query: ``entries:list`` holds a page, never the whole log."""
        marks = ", ".join("?" for _ in projects)
        after: tuple[Any, ...] = ()
        direction, beyond = ("DESC", "<") if newest_first else ("ASC", ">")
        while True:
            rows = self._query(
                f"SELECT timestamp, seq, body FROM log_entries WHERE project IN ({marks})"
                + (f" AND (timestamp, seq) {beyond} (?, ?)" if after else "")
                + f" ORDER BY timestamp {direction}, seq {direction} LIMIT ?",
                (*projects, *after, chunk),
            )
            for row in rows:
                yield json.loads(row[2])
            if len(rows) < chunk:
                return
            after = (rows[-1][0], rows[-1][1])


def _hashes(db: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> set[str]:
    return {row[0] for row in db.execute(f"SELECT DISTINCT sha256 FROM instances {where}", params)}


def _record(row: tuple[Any, ...]) -> InstanceRecord:
    return InstanceRecord(
        store=row[0],
        study=row[1],
        series=row[2],
        sop=row[3],
        sha256=row[4],
        size=int(row[5]),
        transfer_syntax=row[6],
        storage_class=row[7],
        storage_class_time=row[8],
        metadata_json=row[10],
    )
