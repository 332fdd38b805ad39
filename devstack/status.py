"""`python -m devstack status`: batches, operations, counters, failures and exports, as readable tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devstack.client import operations, read_journal, stored_instances


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body]) if rows else line + "\n  (none)"


BATCH_COLUMNS = ["batch", "outcome", "files", "imported", "failed", "redriven", "exports", "secs"]


def render_status(healthcare_url: str, dataset_name: str, store_name: str, data_dir: Path) -> str:
    results = read_journal(data_dir / "results.jsonl")
    failed = read_journal(data_dir / "failed.jsonl")
    ops = operations(healthcare_url, dataset_name)
    batches = [
        [r["batch_id"], r["outcome"], str(r["files"]), str(r["imported"]), str(r["failed"]), str(r["redriven"]),
         ", ".join(f"{e['target']}:{e['outcome']}" for e in r["exports"]) or "-",
         f"{r['timings'].get('seconds_upload_to_finished', '-')}"]
        for r in results
    ]  # fmt: skip
    op_rows = [
        [o["name"].rsplit("/", 1)[1][-8:], o["metadata"]["apiMethodName"].rsplit(".", 1)[1],
         "done" if o.get("done") else "running", _counter(o), "error" if "error" in o else "-"]
        for o in ops
    ]  # fmt: skip
    failures = [[f.get("name", "-"), f.get("stage", "-"), str(f.get("attempt", "-")), f.get("reason", "-")[:90]]
                for f in failed]  # fmt: skip
    return "\n\n".join([
        f"Store {store_name}: {stored_instances(healthcare_url, store_name)} instances",
        "Batches\n" + _table(batches, BATCH_COLUMNS),
        "Operations\n" + _table(op_rows, ["operation", "method", "state", "counters", "error"]),
        "Failed files\n" + _table(failures, ["object", "stage", "attempt", "reason"]),
    ])  # fmt: skip


def _counter(operation: dict[str, Any]) -> str:
    counter = operation.get("metadata", {}).get("counter", {})
    return " ".join(f"{k}={v}" for k, v in counter.items()) or "-"
