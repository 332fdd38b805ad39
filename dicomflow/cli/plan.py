"""What a flush would do with the DICOM objects under a prefix, treating them all as new: the in-place import
URIs, how many files would be staged (copied) into one more import, and what the listing cost. Nothing is
started, copied or queued.

    dicomflow plan gs://BUCKET/PREFIX
"""

from __future__ import annotations

import argparse
from typing import Any

from dicomflow.batching.planner import plan_buckets
from dicomflow.batching.selection import allocate
from dicomflow.cli.context import Context
from dicomflow.cli.output import as_json, table
from dicomflow.cli.source import GcsPrefix, selected_names

NAME = "plan"
HELP = "what flush would do with the objects under a prefix (nothing is started)"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prefix", type=GcsPrefix.parse, help="gs://BUCKET/PREFIX")
    parser.add_argument("--slots", type=int, help="free operation slots (default: MAX_CONCURRENT_OPERATIONS "
                                                  "minus the imports in flight)")  # fmt: skip


def run(ctx: Context, args: argparse.Namespace) -> int:
    report = collect(ctx, args.prefix, args.slots)
    print(as_json(report) if args.json else render(report))
    return 0


def collect(ctx: Context, prefix: GcsPrefix, slots: int | None = None) -> dict[str, Any]:
    settings = ctx.settings
    names = selected_names(ctx, prefix)
    if slots is None:
        running = ctx.ledger.imports_in_flight(ctx.healthcare.store_name, settings.operation_max_age_seconds)
        slots = max(0, settings.max_concurrent_operations - running)
    plans = plan_buckets({prefix.bucket: names}, ctx.store, staging=settings.staging, listing_cap=settings.listing_cap)
    allocation = allocate(plans, slots=slots, staging=settings.staging)
    staged_uri = f"gs://{settings.state_bucket}/{settings.state_prefix}staging/BATCH_ID/**"
    imports = [{"uri": item.uri, "files": len(item.files), "copies": 0} for _, item in allocation.in_place]
    if allocation.staged:
        imports.append({"uri": staged_uri, "files": len(allocation.staged), "copies": len(allocation.staged)})
    return {
        "prefix": str(prefix),
        "staging": settings.staging,
        "files": len(names),
        "free_slots": slots,
        "imports": imports,
        "copies": len(allocation.staged),
        "waiting": len(allocation.waiting),
        "listing_calls": sum(p.listing_calls for p in plans),
        "overshoot": sum(p.overshoot for p in plans),
    }


def render(report: dict[str, Any]) -> str:
    rows = [[i["uri"], i["files"], i["copies"]] for i in report["imports"]]
    return "\n".join([
        f"{report['files']} DICOM objects under {report['prefix']} (STAGING={report['staging']}, "
        f"{report['free_slots']} free operation slots)",
        table(["import", "files", "copies"], rows),
        f"{len(rows)} import(s), {report['copies']} copies, {report['waiting']} files wait for a free slot; "
        f"planning listed {report['listing_calls']} page(s); overshoot {report['overshoot']}",
    ])  # fmt: skip
