"""Batches from the ledger (outcome, files, imported, duplicates, failed, skipped DICOMDIRs; imports and exports
with their state and counters), the imports in flight, failures grouped by reason (the failure notes of the period
shown: intake's failures belong to no batch), and the age of the oldest pending record.

    dicomflow status                  the last 20 batches
    dicomflow status --since 2h       every batch of the last two hours
    dicomflow status --batch ID       one batch in detail, operations queried live
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from dicomflow.cli.context import Context
from dicomflow.cli.output import ago, as_json, duration, table
from dicomflow.errors import MalformedEventError
from dicomflow.ledger.failures import failure_notes
from dicomflow.ledger.manifest import ExportMarker, FailureNote, ImportMarker, Manifest
from dicomflow.messages.records import PendingRecord, parse_pending
from dicomflow.pool import bounded
from dicomflow.ports import ObjectInfo

NAME = "status"
HELP = "batches, imports in flight, failures by reason, the oldest pending record"
_LAST = 20
_PEEK = 1000
_WINDOWS = (timedelta(days=1), timedelta(days=30))  # then the whole ledger
_NOTES = 1000  # failure notes read at most (the newest), for the failures by reason


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", help="one batch in detail")
    parser.add_argument("--since", type=duration, help="batches created within this long (90s, 15m, 2h, 7d)")
    parser.add_argument("--no-peek", action="store_true",
                        help="do not peek at the pending subscription for the oldest record")  # fmt: skip


def run(ctx: Context, args: argparse.Namespace) -> int:
    report = collect(ctx, batch=args.batch, since=args.since.total_seconds() if args.since else None,
                     peek=not args.no_peek)  # fmt: skip
    print(as_json(report) if args.json else render(report))
    return 0


def collect(ctx: Context, *, batch: str | None = None, since: float | None = None, peek: bool = True) -> dict[str, Any]:
    """Everything ``status`` shows, as one JSON-ready mapping."""
    settings, now = ctx.settings, ctx.now()
    listed_since: datetime | None = None
    if batch:
        ids, total = [batch], None
    elif since is not None:
        listed_since = now - timedelta(seconds=since)
        ids = ctx.ledger.list_batches(listed_since)  # the listing starts at that time: nothing older comes back
        total = len(ids)
    else:
        ids, total, listed_since = _recent(ctx, now)
    batches = [_batch(ctx, i, live=batch is not None) for i in ids]
    noted = [] if batch else failure_notes(settings, ctx.store).listed(listed_since)
    failures = _failures_by_reason(ctx, batches, noted[:_NOTES])
    in_flight = sorted(
        (started, op, store)
        for store in settings.stores
        for started, op in ctx.ledger.in_flight(store, settings.operation_max_age_seconds)
    )
    return {
        "store": ctx.healthcare.store_name,
        "ledger": f"gs://{settings.state_bucket}/{settings.state_prefix}",
        "batches": batches,
        "batches_total": total,
        "listed_since": listed_since.isoformat() if listed_since else None,
        "in_flight": [
            {
                "operation": op,
                "store": store,
                "started": started.isoformat(),
                "age_seconds": (now - started).total_seconds(),
            }
            for started, op, store in in_flight
        ],
        "failures": [
            {"stage": stage, "reason": reason, "files": count} for (stage, reason), count in failures.most_common()
        ],
        "failure_notes": {"listed": len(noted), "read": min(len(noted), _NOTES)},
        "oldest_pending": _oldest_pending(ctx, now) if peek else None,
    }


def _failures_by_reason(
    ctx: Context, batches: list[dict[str, Any]], notes: list[ObjectInfo]
) -> Counter[tuple[str, str]]:
    """Files reported failed: the failure notes of the period shown (every stage, intake's too: those belong to
    no batch), and the failures the shown batches recorded without a note (reported before notes existed)."""
    reader = failure_notes(ctx.settings, ctx.store)
    found = {(n.bucket, n.name, n.stage): n for n in bounded(lambda info: reader.read_at(info.name), notes) if n}
    for item in batches:
        for failure in item.get("failures", []):
            found.setdefault((failure["bucket"], failure["name"], failure["stage"]), FailureNote.from_dict(failure))
    return Counter((note.stage, _reason_kind(note.reason)) for note in found.values())


def _recent(ctx: Context, now: datetime) -> tuple[list[str], int, datetime | None]:
    """The last batches, listing only as far back as it takes to find them: a day, a month, then everything
    (a ledger of a long-running deployment holds hundreds of thousands of objects)."""
    for window in _WINDOWS:
        listed = ctx.ledger.list_batches(now - window)
        if len(listed) >= _LAST:
            return listed[-_LAST:], len(listed), now - window
    listed = ctx.ledger.list_batches()
    return listed[-_LAST:], len(listed), None


def _batch(ctx: Context, batch_id: str, *, live: bool) -> dict[str, Any]:
    manifest = ctx.ledger.read(batch_id)
    if manifest is None:
        return {"batch_id": batch_id, "outcome": "missing"}
    markers = {e.operation: ctx.ledger.import_marker(batch_id, e.operation) for e in manifest.imports}
    targets = ctx.settings.route_named(manifest.route).export_targets
    exports = [found[0] for t in targets if (found := ctx.ledger.export_marker(batch_id, t.name))]
    result = ctx.ledger.result(batch_id)
    summary = dict(result.summary or {}) if result else {}
    failures = [f.to_dict() for f in manifest.failures]
    for marker in markers.values():
        failures += [f.to_dict() for f in marker.failures] if marker else []
    return {
        "batch_id": batch_id,
        "route": manifest.route,
        "store": manifest.store,
        "created": manifest.created,
        "outcome": summary.get("outcome", "in progress"),
        "files": manifest.taken,
        "imported": summary.get("imported"),
        "duplicates": manifest.duplicates,
        "failed": len(failures),
        "redriven": sum(m.redriven for m in markers.values() if m),
        "skipped": len(manifest.skipped),
        "copies": manifest.copies,
        "imports": [
            _import(ctx, manifest, e.operation, e.uri, e.files, markers[e.operation], live) for e in manifest.imports
        ],
        "exports": [_export(e) for e in exports],
        "failures": failures,
    }


def _import(
    ctx: Context, manifest: Manifest, operation: str, uri: str, files: int, marker: ImportMarker | None, live: bool
) -> dict[str, Any]:
    state, counter = ("reconciled", dict(marker.counter)) if marker else ("running", {})
    if live or marker is None:
        body = ctx.stores(manifest.store).get_operation(operation)
        counter = dict(body.get("metadata", {}).get("counter", {}))
        state = state if marker else ("done, not reconciled yet" if body.get("done") else "running")
    return {"operation": operation, "uri": uri, "files": files, "state": state, "counter": counter}


def _export(marker: ExportMarker) -> dict[str, Any]:
    return {"target": marker.target, "state": str(marker.status), "outcome": marker.outcome,
            "operation": marker.operation, "counter": dict(marker.counter), "reason": marker.reason,
            "failed_instances": [dict(f) for f in marker.failed_instances]}  # fmt: skip


def _oldest_pending(ctx: Context, now: datetime) -> dict[str, Any]:
    """Peek at the pending subscription: pull up to 1,000 records and give them back at once (nack)."""
    messages = ctx.subscriber.pull(ctx.settings.pending_subscription, _PEEK, wait_seconds=2.0)
    try:
        times = []
        for message in messages:
            try:
                record = parse_pending(message.data)  # ready markers and skipped DICOMDIRs are not records
                if isinstance(record, PendingRecord):
                    times.append(datetime.fromisoformat(record.event_time))
            except (MalformedEventError, ValueError):
                continue
    finally:
        if messages:
            ctx.subscriber.nack(ctx.settings.pending_subscription, [m.ack_id for m in messages])
    oldest = min(times, default=None)
    return {"peeked": len(messages), "oldest_event_time": oldest.isoformat() if oldest else None,
            "age_seconds": (now - oldest).total_seconds() if oldest else None}  # fmt: skip


_PER_FILE = re.compile(r"\d+(?:\.\d+)+|\d{4,}|\d+(?=s\b)|(?<=offset )\d+")


def _reason_kind(reason: str) -> str:
    """A reason without what differs per file — UIDs, generations and operation ids, seconds, offsets — to group
    by; the numbers that say what is wrong stay ("DICOM Part 10", "128-byte preamble", "3 attempt(s)")."""
    return _PER_FILE.sub("N", reason)[:100]


def render(report: dict[str, Any]) -> str:
    batches = report["batches"]
    counts = ("files", "imported", "duplicates", "failed", "redriven", "skipped", "copies")
    rows = [[b["batch_id"], b.get("route", "-"), b["outcome"], *(_dash(b.get(c)) for c in counts),
             _imports_cell(b), _exports_cell(b)]
            for b in batches]  # fmt: skip
    shown = f"{len(batches)} of {report['batches_total']}" if report["batches_total"] is not None else "1"
    if report.get("listed_since"):
        shown += f" since {datetime.fromisoformat(report['listed_since']):%Y-%m-%d %H:%M} UTC"
    parts = [
        f"Store   {report['store']}\nLedger  {report['ledger']}",
        f"Batches ({shown})\n" + table(
            ["batch", "route", "outcome", "files", "imported", "duplicates", "failed", "redriven", "skipped", "copies",
             "imports", "exports"],
            rows),
        "Imports in flight\n" + table(["operation", "age"], [[f["operation"], ago(f["age_seconds"])]
                                                          for f in report["in_flight"]]),
        "Failures by reason" + _notes_read(report) + "\n" + table(["files", "stage", "reason"],
                                       [[f["files"], f["stage"], f["reason"]] for f in report["failures"]]),
    ]  # fmt: skip
    if len(batches) == 1 and "imports" in batches[0]:
        detail = [[i["operation"].rsplit("/", 1)[-1], i["state"], i["files"], _counter(i["counter"]), i["uri"]]
                  for i in batches[0]["imports"]]  # fmt: skip
        parts.append("Imports of the batch\n" + table(["operation", "state", "files", "counter", "uri"], detail))
        targets = [[e["target"], e["outcome"] or e["state"], _counter(e["counter"]), e["reason"] or "-"]
                   for e in batches[0]["exports"]]  # fmt: skip
        parts.append("Export and de-id targets of the batch\n" + table(["target", "outcome", "counter", "reason"],
                                                                          targets))  # fmt: skip
        failed = [[e["target"], f["instance"], f["reason"]] for e in batches[0]["exports"]
                  for f in e.get("failed_instances", [])]  # fmt: skip
        if failed:
            parts.append("Instances a target could not take (imported; the API's reason)\n"
                         + table(["target", "instance", "reason"], failed))  # fmt: skip
    pending = report["oldest_pending"]
    if pending is not None:
        age = "none pending" if pending["age_seconds"] is None else f"{ago(pending['age_seconds'])} old"
        parts.append(f"Oldest pending record: {age} (peeked at {pending['peeked']} records, given back at once)")
    return "\n\n".join(parts)


def _imports_cell(batch: dict[str, Any]) -> str:
    return ", ".join(f"{i['state']}" for i in batch.get("imports", [])) or "-"


def _exports_cell(batch: dict[str, Any]) -> str:
    return ", ".join(f"{e['target']}:{e['outcome'] or e['state']}" for e in batch.get("exports", [])) or "-"


def _counter(counter: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counter.items())) or "-"


def _notes_read(report: dict[str, Any]) -> str:
    notes = report.get("failure_notes") or {}
    if notes.get("listed", 0) > notes.get("read", 0):
        return f" (the newest {notes['read']} of {notes['listed']} files reported failed)"
    return ""


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)
