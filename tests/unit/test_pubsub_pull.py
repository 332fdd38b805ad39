"""The Pub/Sub subscriber's pull loop on a fake client and a fake clock: it drains the subscription, and with
``max_seconds`` stops pulling in time for the caller to lease what it pulled first (no real time passes)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from dicomflow.adapters.pubsub import PubSubSubscriber


class TrickleClient:
    """A subscription that keeps receiving: every pull takes one second and answers ``per_pull`` new messages,
    until ``total`` were delivered."""

    def __init__(self, per_pull: int, total: int) -> None:
        self.per_pull, self.total = per_pull, total
        self.delivered = 0
        self.now = 0.0
        self.pulls = 0

    def subscription_path(self, project: str, subscription: str) -> str:
        return f"projects/{project}/subscriptions/{subscription}"

    def pull(self, request: dict[str, Any], timeout: float) -> Any:
        self.pulls += 1
        self.now += 1.0
        count = min(self.per_pull, int(request["max_messages"]), self.total - self.delivered)
        messages = [
            SimpleNamespace(ack_id=f"ack-{n}", message=SimpleNamespace(data=b"{}", attributes={}, message_id=str(n)))
            for n in range(self.delivered, self.delivered + count)
        ]
        self.delivered += count
        return SimpleNamespace(received_messages=messages)


def _subscriber(client: TrickleClient) -> PubSubSubscriber:
    return PubSubSubscriber("proj", client=client, clock=lambda: client.now)


def test_pull_drains_until_the_subscription_runs_dry_or_max_messages_arrived() -> None:
    client = TrickleClient(per_pull=10, total=35)
    assert [m.message_id for m in _subscriber(client).pull("sub", 1000)] == [str(n) for n in range(35)]
    client = TrickleClient(per_pull=10, total=1000)
    assert len(_subscriber(client).pull("sub", 25)) == 25


def test_pull_stops_max_seconds_after_the_first_message_while_messages_keep_arriving() -> None:
    # GIVEN a subscription that receives 10 messages a second for 100 s (uploads still being taken in)
    client = TrickleClient(per_pull=10, total=1000)
    # WHEN the flush pulls with a bound of 10 s (a third of a 30 s ack deadline)
    messages = _subscriber(client).pull("sub", 10_000, max_seconds=10)
    # THEN it stopped pulling 10 s after its first message arrived, long before the first one's deadline ran out,
    # instead of pulling for 100 s (past the deadline of what it pulled first, which Pub/Sub then delivers again)
    assert client.pulls == 11 and client.now == 11.0
    assert len(messages) == 110 and len({m.message_id for m in messages}) == 110
    # and without the bound it pulls until the subscription runs dry
    client = TrickleClient(per_pull=10, total=1000)
    assert len(_subscriber(client).pull("sub", 10_000)) == 1000 and client.now == 101.0
