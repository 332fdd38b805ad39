"""Cloud Functions entry points (functions-framework, CloudEvents). The work lives in handlers/ and dicomflow/."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from handlers import finalize, flush, operation


@functions_framework.cloud_event
def on_object_finalized(cloud_event: CloudEvent) -> None:
    finalize.handle(cloud_event)


@functions_framework.cloud_event
def on_flush(cloud_event: CloudEvent) -> None:
    flush.handle(cloud_event)


@functions_framework.cloud_event
def on_operation(cloud_event: CloudEvent) -> None:
    operation.handle(cloud_event)
