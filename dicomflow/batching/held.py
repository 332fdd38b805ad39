"""The records one flush holds: every delivery's ack id, what is done (ack) and what goes back (nack), and a
lease that keeps the held messages invisible to other flushes while this one works."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from dicomflow.batching.poison import Poison
from dicomflow.errors import MalformedEventError, RetryableError
from dicomflow.logs import fields
from dicomflow.messages.records import PendingRecord, ReadyMarker, SkippedFile, parse_pending
from dicomflow.ports import ReceivedMessage, Subscriber

log = logging.getLogger(__name__)

Key = tuple[str, str, str]
Refusal = Callable[[PendingRecord], "str | None"]  # why a parsed record must not be imported (None: it may)


@dataclass
class Held:
    """Pulled records by key, with the ack ids of every delivery (duplicate deliveries included)."""

    records: dict[Key, PendingRecord] = field(default_factory=dict)
    ack_ids: dict[Key, list[str]] = field(default_factory=lambda: defaultdict(list))
    to_ack: list[str] = field(default_factory=list)
    to_nack: list[str] = field(default_factory=list)
    markers: dict[ReadyMarker, list[str]] = field(default_factory=lambda: defaultdict(list))  # marker -> ack ids
    skipped: dict[SkippedFile, list[str]] = field(default_factory=lambda: defaultdict(list))  # DICOMDIR -> ack ids
    poison: list[Poison] = field(default_factory=list)  # messages that cannot be processed: dead-lettered
    malformed: int = 0
    redelivered: int = 0

    @classmethod
    def from_messages(cls, messages: Sequence[ReceivedMessage], refuse: Refusal = lambda _record: None) -> Held:
        """Parse and dedupe, one message at a time: a message that cannot be parsed, or a record ``refuse``
        gives a reason for (a bucket that is not a source, an excluded name), becomes poison -- dead-lettered
        by the flush, never imported -- and the messages pulled with it go on as if it were not there."""
        held = cls()
        for message in messages:
            try:
                record = parse_pending(message.data)
            except MalformedEventError as exc:
                held._poisoned(message, str(exc))
                continue
            if isinstance(record, ReadyMarker):
                held.markers[record].append(message.ack_id)
                continue
            if isinstance(record, SkippedFile):  # every delivery of it under one key: counted once
                held.skipped[record].append(message.ack_id)
                continue
            reason = refuse(record)
            if reason is not None:
                held._poisoned(message, reason)
                continue
            if record.key in held.records:
                held.redelivered += 1
                if record.replaced:  # keep the loop guard of a replaced file's re-drive over a plain delivery
                    held.records[record.key] = record
            else:
                held.records[record.key] = record
            held.ack_ids[record.key].append(message.ack_id)
        return held

    def _poisoned(self, message: ReceivedMessage, reason: str) -> None:
        self.malformed += 1
        self.poison.append(Poison(message, reason))
        log.error("pending message refused; it goes to the dead-letter topic",
                  extra=fields(message_id=message.message_id, error=reason))  # fmt: skip

    def poison_done(self, poison: Iterable[Poison]) -> None:
        """These poison messages were dead-lettered: acknowledge them."""
        settled = {id(p) for p in poison}
        self.to_ack.extend(p.message.ack_id for p in self.poison if id(p) in settled)
        self.poison = [p for p in self.poison if id(p) not in settled]

    def done(self, keys: Iterable[Key]) -> None:
        """These records are settled: acknowledge every delivery of them."""
        for key in keys:
            self.to_ack.extend(self.ack_ids.pop(key, []))

    def give_back(self, keys: Iterable[Key]) -> None:
        """These records wait for a later flush: redeliver them now."""
        for key in keys:
            self.to_nack.extend(self.ack_ids.pop(key, []))

    def markers_done(self, markers: Iterable[ReadyMarker]) -> None:
        """These ready markers were used (or expired): acknowledge them."""
        for marker in markers:
            self.to_ack.extend(self.markers.pop(marker, []))

    def skipped_done(self, skipped: Iterable[SkippedFile]) -> None:
        """These skipped DICOMDIRs were counted in a batch (or retired): acknowledge them."""
        for entry in skipped:
            self.to_ack.extend(self.skipped.pop(entry, []))

    def settle(self, subscriber: Subscriber, subscription: str) -> None:
        """Give back whatever is still undecided (records, markers, skipped DICOMDIRs), then send the acks and
        nacks."""
        self.give_back(list(self.ack_ids))
        for ack_ids in [*self.markers.values(), *self.skipped.values()]:
            self.to_nack.extend(ack_ids)
        self.to_nack.extend(p.message.ack_id for p in self.poison)  # not dead-lettered yet: next flush tries
        self.poison = []
        self.markers.clear()
        self.skipped.clear()
        if self.to_ack:
            subscriber.ack(subscription, self.to_ack)
            self.to_ack = []
        if self.to_nack:
            subscriber.nack(subscription, self.to_nack)
            self.to_nack = []


@contextmanager
def leased(subscriber: Subscriber, subscription: str, ack_ids: Sequence[str], seconds: int) -> Iterator[None]:
    """Keep extending the ack deadline of ``ack_ids`` while the block runs (every third of ``seconds``)."""
    stop = threading.Event()

    def keep_alive() -> None:
        while not stop.wait(seconds / 3):
            try:
                subscriber.extend(subscription, ack_ids, seconds)
            except RetryableError as exc:
                log.warning("lease extension failed", extra=fields(error=str(exc), messages=len(ack_ids)))

    if ack_ids:
        subscriber.extend(subscription, ack_ids, seconds)
    thread = threading.Thread(target=keep_alive, name="lease-extender", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
