"""Proof of completeness: every DICOM object under a prefix is in the store (by its UIDs), reported failed
(with the reason the pipeline noted, or why its header cannot be read; a file whose UIDs the store holds with
another file's content is reported failed as a conflict, not in store), or missing. Exit status 1 when
something is missing.

    dicomflow verify gs://BUCKET/PREFIX
    dicomflow verify gs://BUCKET/PREFIX --json     every object with its state
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from dicomflow.cli.context import Context
from dicomflow.cli.output import Progress, as_json, table
from dicomflow.cli.scan import SeriesCache, candidates, scan
from dicomflow.cli.source import GcsPrefix
from dicomflow.ledger.failures import FailureNotes, ReportedFiles, failure_notes
from dicomflow.ledger.manifest import FailureNote
from dicomflow.messages.records import Stage
from dicomflow.ports import ObjectInfo

NAME = "verify"
HELP = "is every DICOM object under a prefix in the store? (exit 1 when something is missing)"
IN_STORE, FAILED, MISSING, NOT_INSTANCE = "in store", "reported failed", "missing", "not an instance"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prefix", type=GcsPrefix.parse, help="gs://BUCKET/PREFIX")


def run(ctx: Context, args: argparse.Namespace) -> int:
    objects = verify(ctx, args.prefix)
    counts = Counter(o["state"] for o in objects)
    if args.json:
        print(as_json({"prefix": str(args.prefix), "counts": dict(counts), "objects": objects}))
    else:
        problems = [[o["name"], o["state"], o.get("reason") or ""] for o in objects if o["state"] in (FAILED, MISSING)]
        print(table(["object", "state", "reason"], problems))
        print("\n" + ", ".join(f"{counts[s]} {s}" for s in (IN_STORE, FAILED, MISSING, NOT_INSTANCE)) +
              f" — of {len(objects)} objects under {args.prefix}")  # fmt: skip
    return 1 if counts[MISSING] else 0


def verify(ctx: Context, where: GcsPrefix, *, progress: bool = True) -> list[dict[str, Any]]:
    """One entry per selected object: name, generation, state, reason, UIDs."""
    notes = failure_notes(ctx.settings, ctx.store)
    reported = notes.reported()
    infos = list(candidates(ctx, ctx.store.iterate(where.bucket, where.prefix)))
    bar = Progress(f"verify {where}", len(infos), quiet=not progress)
    objects: list[dict[str, Any]] = []
    for chunk in scan(ctx, infos, SeriesCache(ctx)):
        for item in chunk:
            entry: dict[str, Any] = {"name": item.info.name, "generation": item.info.generation}
            record, failed = item.examined.record, item.examined.failed
            if record is not None:
                entry["sop_uid"] = record.sop_uid
            if item.in_store and (conflict := _conflict(notes, reported, where.bucket, item.info)) is not None:
                entry["state"], entry["reason"] = FAILED, f"{conflict.stage}: {conflict.reason}"  # other content
            elif item.in_store:
                entry["state"] = IN_STORE
            elif failed is not None:
                entry["state"], entry["reason"] = FAILED, failed.reason
            elif record is None:
                entry["state"], entry["reason"] = NOT_INSTANCE, item.examined.outcome.value
            elif (found := _note(notes, reported, where.bucket, item.info.name)) is not None:
                generation, note = found
                entry["state"], entry["reason"] = FAILED, f"{note.stage}: {note.reason}"
                if generation != item.info.generation:  # rewritten since: its new generation may still be on its way
                    entry["reason"] += f" (reported for generation {generation}; the object is at a newer one)"
            else:
                entry["state"] = MISSING
            objects.append(entry)
        bar.advance(len(chunk))
    bar.finish()
    _older_reports(ctx, where, [o for o in objects if o["state"] == MISSING])
    return objects


def _conflict(notes: FailureNotes, reported: ReportedFiles, bucket: str, info: ObjectInfo) -> FailureNote | None:
    """The conflict report of this very generation: its UIDs are in the store, with another file's content."""
    if not reported.holds(bucket, info.name, info.generation):
        return None
    note = notes.read(bucket, info.name, info.generation)
    return note if note is not None and note.stage == Stage.CONFLICT else None


def _note(notes: FailureNotes, reported: ReportedFiles, bucket: str, name: str) -> tuple[str, FailureNote] | None:
    """The latest report of this file and its generation, whatever that is (a file rewritten since is still the
    file)."""
    generations = sorted(reported.of(bucket, name), key=lambda g: int(g) if g.isdigit() else -1)
    note = notes.read(bucket, name, generations[-1]) if generations else None
    return None if note is None else (generations[-1], note)


def _older_reports(ctx: Context, where: GcsPrefix, missing: list[dict[str, Any]]) -> None:
    """Files reported before failure notes existed are only in their batches: read the ledger for them, and
    only when something is missing (the ledger is read whole)."""
    if not missing:
        return
    reported = ctx.ledger.failures()
    for entry in missing:
        if (note := reported.get((where.bucket, entry["name"]))) is not None:
            entry["state"], entry["reason"] = FAILED, f"{note.stage}: {note.reason}"
