"""The integration tests' own Pub/Sub checks, against the Pub/Sub emulator: an absence check can fail."""

from __future__ import annotations

import threading

import pytest

from tests.integration.pipeline_helpers import Pipeline

pytestmark = pytest.mark.integration


def test_pull_waiting_returns_what_is_there_then_nothing(pipeline: Pipeline) -> None:
    pipeline.publish("failed", [b'{"n": 1}', b'{"n": 2}'])
    assert sorted(m.message.data for m in pipeline.pull_waiting("failed")) == [b'{"n": 1}', b'{"n": 2}']
    assert pipeline.pull_waiting("failed") == []  # acknowledged: not delivered again


def test_pull_waiting_sees_a_message_published_while_it_waits(pipeline: Pipeline) -> None:
    late = threading.Timer(1.0, pipeline.publish, args=("pending", [b"late"]))
    late.start()
    try:
        assert [m.message.data for m in pipeline.pull_waiting("pending", seconds=10)] == [b"late"]
    finally:
        late.join()
