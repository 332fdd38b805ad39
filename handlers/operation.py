"""``on_operation``: a watch message from ``dicom-operations`` -> follow the operation up."""

from __future__ import annotations

from cloudevents.http import CloudEvent

from dicomflow.batching.poison import message_failure
from dicomflow.errors import MalformedEventError, PermanentError
from dicomflow.ledger.failures import report_failed
from dicomflow.messages.events import PUBSUB_PUBLISHED, pubsub_message
from dicomflow.messages.records import FailedFile, WatchMessage
from dicomflow.stages.follow import Follower, FollowResult
from handlers.dispatch import serve
from handlers.runtime import Runtime


def _parse(cloud_event: CloudEvent) -> WatchMessage | None:
    if str(cloud_event["type"]) != PUBSUB_PUBLISHED:
        return None
    return WatchMessage.from_json(pubsub_message(cloud_event.data).data)


def _follow(rt: Runtime, watch: WatchMessage) -> FollowResult:
    follower = Follower(rt.settings, store=rt.store, healthcare=rt.healthcare, publisher=rt.publisher,
                        stores=rt.stores, error_log=rt.error_log)  # fmt: skip
    return follower.follow(watch)


def _report(rt: Runtime, watch: WatchMessage, error: PermanentError) -> None:
    """A watch that can never be followed (a denied permission, a manifest that is gone) ends on dicom-failed,
    naming the batch and the operation, instead of cycling until the dead-letter topic."""
    failed = FailedFile.of_watch(rt.settings.state_bucket, watch, f"follow-up failed: {error}")
    rt.publisher.publish(rt.settings.failed_topic, [(failed.to_json(), failed.attributes())])


def _report_malformed(rt: Runtime, cloud_event: CloudEvent, error: MalformedEventError) -> None:
    """A watch that cannot be parsed is reported once on dicom-failed (stage ``message``, named by its message
    id), with a failure note, and acknowledged: never HTTP 500 until the dead-letter policy gives up."""
    try:
        message_id = pubsub_message(cloud_event.data).message_id
    except MalformedEventError:
        message_id = None
    source = "on_operation"
    report_failed([message_failure(source, message_id or str(cloud_event["id"])[:256], str(error))],
                  rt.settings, rt.publisher, rt.store)  # fmt: skip


def handle(cloud_event: CloudEvent) -> FollowResult | None:
    """Return to acknowledge; raise while the operation runs or on transient failures (Pub/Sub redelivers)."""
    return serve("on_operation", cloud_event, _parse, _follow, on_permanent=_report, on_malformed=_report_malformed,
                 describe=lambda watch: {"batch_id": watch.batch_id, "operation": watch.operation})  # fmt: skip
