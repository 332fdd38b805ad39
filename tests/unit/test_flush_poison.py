"""One bad message never stalls a flush: poison is dead-lettered with its reason, per message, and the good
records pulled with it flush as if it were not there."""

from __future__ import annotations

import json

import pytest

from dicomflow.errors import NotFoundError, PermissionDeniedError, RetryableError
from dicomflow.ledger.failures import failure_notes
from tests.fakes.services import FakePublisher, FakeStore
from tests.unit.test_flush import BUCKET, World, _record, _settings

DEAD = "dicom-pending-dead-letter"
POISON = [
    b'{"version": 1, "bucket": "src-bucket", "size": 1e400}',
    b"[" * 100_000 + b"]" * 100_000,
    b"\xff\xfe\x00\x01 binary",
    json.dumps({**json.loads(_record("up/p.dcm", 60).to_json()), "crc32c": {"a": 1}}).encode(),
    json.dumps({**json.loads(_record("up/q.dcm", 60).to_json()), "size": "x" * 100_000}).encode(),
    json.dumps({**json.loads(_record("up/r.dcm", 60).to_json()), "generation": "7a"}).encode(),
    json.dumps({**json.loads(_record("up/s.dcm", 60).to_json()), "size": 10**400}).encode(),
]


class _RefusingPublisher(FakePublisher):
    def publish(self, topic: str, messages: object) -> list[str]:
        if topic == DEAD:
            raise NotFoundError(f"topic {topic} not found", 404)
        return super().publish(topic, messages)  # type: ignore[arg-type]


def test_flush_dead_letters_each_poison_message_and_imports_the_good_ones_beside_it() -> None:
    # GIVEN good records with poison of many kinds between them
    world = World(["up/a.dcm", "up/b.dcm", "old/c.dcm"])
    world.queue(_record("up/a.dcm", 60))
    for data in POISON:
        world.subscriber.put(data)
    world.queue(_record("up/b.dcm", 60))
    # WHEN one flush runs
    report = world.flush()
    # THEN the good files are imported, every message is acknowledged, the poison is on the dead-letter topic
    assert world.healthcare.imports == [f"gs://{BUCKET}/up/**.dcm"]
    assert report.malformed == len(POISON) and report.imported_files == 2
    assert world.subscriber.available == {} and world.subscriber.leased == {}
    dead = [(data, attributes) for topic, data, attributes in world.publisher.published if topic == DEAD]
    assert sorted(data for data, _ in dead) == sorted(POISON)
    reasons = [attributes["dead_letter_reason"] for _, attributes in dead]
    assert all(reason and len(reason) < 300 for reason in reasons)
    assert {a["dead_letter_subscription"] for _, a in dead} == {"dicom-pending-flush"}


@pytest.mark.parametrize(
    "settings_overrides,name,bucket",
    [({}, "up/a.dcm", "forged-bucket"), ({"exclude_prefixes": ("quarantine/",)}, "quarantine/a.dcm", BUCKET),
     ({}, "dicomflow/staging/x/000001.dcm", "state-bucket")],
    ids=["bucket not a source", "excluded prefix", "the pipeline's own staging"],
)  # fmt: skip
def test_flush_rechecks_source_buckets_and_exclusions_for_every_record(
    settings_overrides: dict[str, object], name: str, bucket: str
) -> None:
    # GIVEN a record forged for an object the pipeline must never import, beside a good one
    settings = _settings(**{"source_buckets": (BUCKET, "state-bucket"), **settings_overrides})
    if bucket == "forged-bucket":
        settings = _settings(**settings_overrides)
    world = World(["up/good.dcm", "old/c.dcm"])
    world.store.objects[(bucket, name)] = b"x"
    forged = _record(name, 60)
    forged = type(forged)(**{**forged.to_dict(), "bucket": bucket})
    world.queue(forged, _record("up/good.dcm", 60))
    # WHEN one flush runs
    world.flush(settings)
    # THEN the forged one is refused with its reason, never copied or imported; the good one is imported
    assert world.healthcare.imports == [f"gs://{BUCKET}/up/**.dcm"]
    assert not [c for c in world.store.copies if c[0][:2] == (bucket, name)]
    [(data, attributes)] = [(d, a) for t, d, a in world.publisher.published if t == DEAD]
    assert json.loads(data)["name"] == name
    assert "SOURCE_BUCKETS" in attributes["dead_letter_reason"] or "excluded" in attributes["dead_letter_reason"]
    assert world.subscriber.available == {}


def test_flush_reports_poison_on_the_failed_topic_when_the_dead_letter_topic_is_missing() -> None:
    world = World([])
    world.publisher = _RefusingPublisher()
    world.subscriber.put(b"{not json")
    world.flush()
    [failed] = world.publisher.bodies("dicom-failed")
    assert failed["stage"] == "message" and failed["name"] == "pubsub:dicom-pending-flush/ack-1"
    assert "not JSON" in failed["reason"]
    assert world.subscriber.acked == ["ack-1"]


def test_flush_hands_poison_back_when_dead_lettering_fails_for_now() -> None:
    world = World(["up/a.dcm"])
    world.publisher.fail_topics.add(DEAD)
    world.subscriber.put(b"{not json")
    world.queue(_record("up/a.dcm", 60))
    world.flush()
    assert list(world.subscriber.available.values()) == [b"{not json"]  # comes back for the next flush
    assert len(world.healthcare.imports) == 1  # the good one did not wait for it


class _RefusingCopies(FakeStore):
    """Copies of ``refused`` names are refused for good (403), as a source object the pipeline may not read."""

    def __init__(self, objects: dict[tuple[str, str], bytes], refused: set[str]) -> None:
        super().__init__(objects)
        self.refused = refused
        self.attempts = 0

    def copy(self, bucket: str, name: str, generation: str, to_bucket: str, to_name: str) -> None:
        if name in self.refused:
            self.attempts += 1
            raise PermissionDeniedError(f"copying gs://{bucket}/{name}: HTTP 403 (storage.objects.get denied)", 403)
        super().copy(bucket, name, generation, to_bucket, to_name)


def test_a_staging_copy_refused_for_good_is_reported_once_after_max_attempts() -> None:
    # GIVEN a file that must be staged (it shares its folder with an imported one) whose copy is refused for good
    world = World([])
    world.store = _RefusingCopies({(BUCKET, "drop/old.dcm"): b"x", (BUCKET, "drop/a.dcm"): b"x"}, {"drop/a.dcm"})
    world.queue(_record("drop/a.dcm", 60))
    settings = _settings(max_attempts=3)
    # WHEN flushes keep running THEN it waits twice, is reported on the third refusal, and never again
    for _ in range(6):
        world.flush(settings)
    [failed] = world.publisher.bodies("dicom-failed")
    assert (failed["stage"], failed["name"]) == ("staging", "drop/a.dcm")
    assert "refused 3 times" in failed["reason"] and "HTTP 403" in failed["reason"]
    assert world.store.attempts == 3
    assert world.subscriber.available == {} and world.subscriber.leased == {}
    assert failure_notes(settings, world.store).read(BUCKET, "drop/a.dcm", "1") is not None
    assert not [k for k in world.store.objects if k[1].startswith("dicomflow/refused/")]


def test_a_staging_copy_failing_transiently_is_retried_not_reported() -> None:
    world = World(["drop/old.dcm", "drop/a.dcm"])
    world.queue(_record("drop/a.dcm", 60))
    copy = world.store.copy
    calls = []

    def flaky(*args: object) -> None:
        calls.append(args)
        if len(calls) <= 4:  # two flushes of two attempts each
            raise RetryableError("HTTP 503")
        copy(*args)  # type: ignore[arg-type]

    world.store.copy = flaky  # type: ignore[method-assign,assignment]
    for _ in range(4):
        world.flush(_settings(max_attempts=1, api_retry_attempts=2))
    assert world.publisher.bodies("dicom-failed") == []
    assert len(world.healthcare.imports) == 1
