"""Update masks with nested paths, as gcloud sends them."""

from __future__ import annotations

import pytest

from healthcare_emulator.errors import ApiError
from healthcare_emulator.fieldmask import apply_update_mask, mask_paths

UPDATABLE = frozenset({"labels", "notificationConfig"})
STORE = {"name": "s", "notificationConfig": {"pubsubTopic": "t1", "sendForBulkImport": True}, "labels": {"a": "1"}}


def test_a_nested_path_replaces_one_field_and_keeps_its_siblings() -> None:
    body = {"notificationConfig": {"pubsubTopic": "t2"}}
    updated = apply_update_mask(STORE, body, ["notificationConfig.pubsubTopic"], UPDATABLE)
    assert updated["notificationConfig"] == {"pubsubTopic": "t2", "sendForBulkImport": True}
    assert STORE["notificationConfig"] == {"pubsubTopic": "t1", "sendForBulkImport": True}  # not mutated


def test_a_path_absent_from_the_body_clears_the_field() -> None:
    updated = apply_update_mask(STORE, {}, ["notificationConfig.sendForBulkImport", "labels"], UPDATABLE)
    assert updated["notificationConfig"] == {"pubsubTopic": "t1"}
    assert "labels" not in updated


def test_clearing_the_last_nested_field_drops_the_parent() -> None:
    start = {"name": "s", "notificationConfig": {"pubsubTopic": "t1"}}
    assert "notificationConfig" not in apply_update_mask(start, {}, ["notificationConfig.pubsubTopic"], UPDATABLE)


def test_a_nested_path_creates_its_parent() -> None:
    body = {"notificationConfig": {"pubsubTopic": "t3"}}
    updated = apply_update_mask({"name": "s"}, body, ["notificationConfig.pubsubTopic"], UPDATABLE)
    assert updated["notificationConfig"] == {"pubsubTopic": "t3"}


@pytest.mark.parametrize("path", ["name", "name.x", "notificationConfig..x", "streamConfigs"])
def test_a_path_outside_the_updatable_fields_is_refused(path: str) -> None:
    with pytest.raises(ApiError, match="cannot be updated"):
        apply_update_mask(STORE, {}, [path], UPDATABLE)


def test_without_a_mask_the_body_fields_are_the_paths() -> None:
    assert mask_paths(None, {"name": "s", "labels": {}}) == ["labels"]
    assert mask_paths(" labels , notificationConfig.pubsubTopic ", {}) == ["labels", "notificationConfig.pubsubTopic"]
