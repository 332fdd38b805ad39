"""Event parsing against golden input/expected pairs (tests/unit/golden/events.json)."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from dicomflow.errors import MalformedEventError
from dicomflow.messages.events import PUBSUB_PUBLISHED, parse_object_event, pubsub_message
from dicomflow.parsing import MAX_MESSAGE_BYTES

CASES = json.loads((Path(__file__).parent / "golden" / "events.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_parse_object_event_matches_golden(case: dict[str, Any]) -> None:
    expected = case["expected"]
    if isinstance(expected, dict) and "error" in expected:
        with pytest.raises(MalformedEventError, match=expected["error"]):
            parse_object_event(case["type"], case["data"], case["time"])
        return
    event = parse_object_event(case["type"], case["data"], case["time"])
    assert (asdict(event) if event else None) == expected


def test_error_messages_never_echo_the_payload() -> None:
    secret = "SYNTH^SECRET^NAME"
    data = {"message": {"data": base64.b64encode(secret.encode()).decode(),
                        "attributes": {"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "o"}}}  # fmt: skip
    with pytest.raises(MalformedEventError) as error:
        parse_object_event(PUBSUB_PUBLISHED, data, None)
    assert secret not in str(error.value)


def test_oversized_message_is_rejected_without_decoding() -> None:
    data = {"message": {"data": "A" * (MAX_MESSAGE_BYTES * 2)}}
    with pytest.raises(MalformedEventError, match="larger than Pub/Sub allows"):
        pubsub_message(data)
