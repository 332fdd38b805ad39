"""The follow-up's last step: the batch result published once every import and export of the batch is done
(claimed in the ledger first, so whoever gets there first publishes it, once)."""

from __future__ import annotations

import json
import logging
from typing import Any

from dicomflow.ledger.manifest import ExportMarker, ExportStatus, Manifest
from dicomflow.ledger.results import summarize
from dicomflow.logs import fields
from dicomflow.stages.follow.context import FollowContext, FollowResult, FollowState

log = logging.getLogger(__package__)  # the follow-up's one logger: its lines keep the name dicomflow.stages.follow


class FinishStep:
    def __init__(self, context: FollowContext) -> None:
        self._ctx = context

    def finish(self, manifest: Manifest, result: FollowResult) -> None:
        """Publish the batch result once every import and export is done (once, whoever gets here first)."""
        ctx = self._ctx
        exports: list[ExportMarker] = []
        for target in ctx.settings.route_named(manifest.route).export_targets:
            found = ctx.ledger.export_marker(manifest.batch_id, target.name)
            if found is None or found[0].status is not ExportStatus.DONE:
                return
            exports.append(found[0])
        imports = ctx.import_markers(manifest)
        if imports is None:
            return
        claim = ctx.ledger.claim_result(manifest.batch_id)
        if claim is None:
            return
        summary = summarize(manifest, imports, exports, ctx.now())
        attributes = {"batch_id": manifest.batch_id, "outcome": str(summary["outcome"]), "store": manifest.store,
                      "route": manifest.route}  # fmt: skip
        ctx.publisher.publish(ctx.settings.results_topic, [(_json(summary), attributes)])
        ctx.ledger.complete_result(claim, summary)
        result.result_published = True
        result.state = FollowState.FINISHED
        where = fields(batch_id=manifest.batch_id, outcome=summary["outcome"], files=summary["files"])
        log.info("batch finished", extra=where)


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True).encode()
