"""Every handler maps every error class the same way: transient -> raise (redelivered), permanent -> return
(acknowledged, reported), malformed -> return without calling the core."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from dicomflow.config.settings import Settings
from dicomflow.errors import (
    ConflictError,
    DicomflowError,
    InvalidRequestError,
    NotFoundError,
    OperationPendingError,
    PermanentError,
    PermissionDeniedError,
    RetryableError,
)
from dicomflow.messages.events import PUBSUB_PUBLISHED, STORAGE_FINALIZED
from dicomflow.messages.records import WatchKind, WatchMessage
from dicomflow.stages.flush import FlushRun
from handlers import dispatch, finalize, flush, operation
from handlers.runtime import Runtime
from tests.fakes.services import FakeErrorLog, FakeHealthcare, FakePublisher, FakeStore, FakeSubscriber

SETTINGS = Settings(project_id="proj", location="l", dataset="d", dicom_store="s", source_buckets=("src",),
                    state_bucket="state")  # fmt: skip
WATCH = WatchMessage(
    "projects/p/locations/l/datasets/d/operations/7",
    "B1",
    "gs://state/dicomflow/batches/B1/manifest.json",
    WatchKind.IMPORT,
)

STORE = FakeStore()


def _finalize_event() -> CloudEvent:
    data = {"bucket": "src", "name": "up/a.dcm", "generation": "1", "timeCreated": "2026-12-02T12:00:00Z"}
    return CloudEvent({"type": STORAGE_FINALIZED, "source": "//storage", "id": "e1"}, data)


def _watch_event(payload: bytes = WATCH.to_json()) -> CloudEvent:
    data = {"message": {"data": base64.b64encode(payload).decode(), "messageId": "m1"}}
    return CloudEvent({"type": PUBSUB_PUBLISHED, "source": "//pubsub", "id": "e2"}, data)


def _tick() -> CloudEvent:
    return CloudEvent({"type": PUBSUB_PUBLISHED, "source": "//scheduler", "id": "e3"}, {"message": {}})


class FailingFollower:
    error: DicomflowError

    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def follow(self, watch: WatchMessage) -> None:
        raise self.error


def _raising(error: DicomflowError) -> Callable[..., Any]:
    def call(*_: Any, **__: Any) -> Any:
        raise error

    return call


# entry point -> (handler, event factory, the attribute of the handler's module that calls the core)
HANDLERS = {
    "on_object_finalized": (finalize.handle, _finalize_event, "handle_object_event"),
    "on_flush": (flush.handle, _tick, "run_flush_for"),
    "on_operation": (operation.handle, _watch_event, "Follower"),
}
MODULES = {"on_object_finalized": finalize, "on_flush": flush, "on_operation": operation}
RETRIED = [RetryableError("HTTP 503"), OperationPendingError("not done")]
ACKED = [
    InvalidRequestError("HTTP 400", 400), PermissionDeniedError("HTTP 403", 403), NotFoundError("HTTP 404", 404),
    ConflictError("HTTP 409", 409), PermanentError("HTTP 412", 412),
]  # fmt: skip


@pytest.fixture
def publisher(monkeypatch: pytest.MonkeyPatch) -> FakePublisher:
    fake = FakePublisher()
    healthcare = FakeHealthcare()
    STORE.objects.clear()
    rt = Runtime(SETTINGS, STORE, fake, FakeSubscriber(), healthcare, lambda _store: healthcare, FakeErrorLog())
    monkeypatch.setattr(dispatch, "runtime", lambda component: rt)
    return fake


def _patch_core(monkeypatch: pytest.MonkeyPatch, name: str, error: DicomflowError) -> None:
    _, _, attribute = HANDLERS[name]
    if attribute == "Follower":
        follower = type("Follower", (FailingFollower,), {"error": error})
        monkeypatch.setattr(MODULES[name], attribute, follower)
    else:
        monkeypatch.setattr(MODULES[name], attribute, _raising(error))


@pytest.mark.parametrize("name", sorted(HANDLERS))
@pytest.mark.parametrize("error", RETRIED, ids=lambda e: type(e).__name__)
def test_handler_raises_on_transient_errors_so_the_event_is_redelivered(
    name: str, error: DicomflowError, publisher: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle, event, _ = HANDLERS[name]
    _patch_core(monkeypatch, name, error)
    with pytest.raises(type(error)):
        handle(event())
    assert publisher.published == []


@pytest.mark.parametrize("name", sorted(HANDLERS))
@pytest.mark.parametrize("error", ACKED, ids=lambda e: type(e).__name__)
def test_handler_acknowledges_permanent_errors(
    name: str, error: PermanentError, publisher: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle, event, _ = HANDLERS[name]
    _patch_core(monkeypatch, name, error)
    assert handle(event()) is None
    if name == "on_operation":  # a watch that can never be followed is reported, naming batch and operation
        [failed] = publisher.bodies("dicom-failed")
        assert (failed["stage"], failed["batch_id"], failed["operation"]) == ("operation", "B1", WATCH.operation)
        assert f"HTTP {error.status}" in failed["reason"]
    elif name == "on_object_finalized":  # a file intake could not queue is reported, for requeue to announce again
        [failed] = publisher.bodies("dicom-failed")
        assert failed["stage"] == "intake" and "queueing it for import was refused for good" in failed["reason"]
        assert f"HTTP {error.status}" in failed["reason"]
    else:
        assert publisher.published == []


def test_intake_that_cannot_report_either_has_the_event_redelivered(
    publisher: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN intake refused for good, and the failed topic missing too: nowhere to say so
    _patch_core(monkeypatch, "on_object_finalized", NotFoundError("publishing: HTTP 404", 404))
    publisher.missing_topics.add("dicom-failed")
    # THEN the event is not acknowledged (Eventarc redelivers it for a day, while someone fixes the topics)
    with pytest.raises(RetryableError):
        finalize.handle(_finalize_event())


def test_a_malformed_watch_is_acknowledged_without_calling_the_core(
    publisher: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operation, "Follower", type("Follower", (FailingFollower,), {"error": RetryableError("x")}))
    assert operation.handle(_watch_event(b"{not json")) is None
    assert operation.handle(_watch_event(json.dumps({"version": 1, "kind": "import"}).encode())) is None


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b"[" * 100_000, json.dumps({**json.loads(WATCH.to_json()), "operation": "operations/7"}).encode(),
     json.dumps({**json.loads(WATCH.to_json()), "batch_id": {"a": 1}}).encode(), b"\xff\x00"],
    ids=["not json", "deep", "malformed operation name", "object batch id", "binary"],
)  # fmt: skip
def test_a_malformed_watch_is_reported_once_on_the_failed_topic_with_a_note(
    payload: bytes, publisher: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operation, "Follower", type("Follower", (FailingFollower,), {"error": RetryableError("x")}))
    assert operation.handle(_watch_event(payload)) is None  # acknowledged: never HTTP 500 until the dead letter
    [failed] = publisher.bodies("dicom-failed")
    assert (failed["stage"], failed["name"]) == ("message", "pubsub:on_operation/m1")
    assert failed["reason"] and len(failed["reason"]) < 300
    notes = [k for k in STORE.objects if k[1].startswith("dicomflow/failed/")]
    assert len(notes) == 1


def test_a_malformed_storage_event_is_acknowledged_without_calling_the_core(
    publisher: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(finalize, "handle_object_event", _raising(RetryableError("must not be called")))
    event = CloudEvent({"type": STORAGE_FINALIZED, "source": "//storage", "id": "e4"}, {"bucket": "src"})
    assert finalize.handle(event) is None


def test_flush_handler_skips_a_tick_while_a_flush_runs_in_this_instance(
    publisher: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a flush run in progress on another request thread of this process
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []
    released: list[bool] = []  # asserted on the test's thread: an assert on the request thread only warns

    def long_run(*_: Any, **__: Any) -> FlushRun:
        runs.append(threading.current_thread().name)
        started.set()
        released.append(release.wait(10))
        return FlushRun()

    monkeypatch.setattr(flush, "run_flush_for", long_run)
    first = threading.Thread(target=flush.handle, args=(_tick(),), name="first-tick")
    first.start()
    assert started.wait(10)
    # WHEN a second tick arrives meanwhile THEN it is acknowledged without a second flush
    assert flush.handle(_tick()) is None
    release.set()
    first.join(10)
    assert runs == ["first-tick"] and released == [True] and not first.is_alive()
    # and once the first run is over, the next tick flushes again
    release.set()
    assert isinstance(flush.handle(_tick()), FlushRun)
    assert runs == ["first-tick", "MainThread"]
