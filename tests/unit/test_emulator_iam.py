"""IAM policy rules of the emulator: empty policy, etag, members, conditions, update mask."""

from __future__ import annotations

from typing import Any

import pytest

from healthcare_emulator import iam
from healthcare_emulator.errors import ApiError

VIEWER = {"role": "roles/viewer", "members": ["user:a@example.com"]}


def _set(stored: dict[str, Any] | None, **policy: Any) -> dict[str, Any]:
    return iam.updated_policy(stored, {"policy": policy})


def test_a_resource_without_policy_has_the_empty_policy() -> None:
    assert iam.current(None) == {"etag": iam.EMPTY_ETAG}


def test_each_change_gets_a_new_etag_and_a_stale_one_is_aborted() -> None:
    first = _set(None, bindings=[VIEWER], etag=iam.EMPTY_ETAG)
    second = _set(first, bindings=[], etag=first["etag"])
    assert len({iam.EMPTY_ETAG, first["etag"], second["etag"]}) == 3
    assert "bindings" not in second
    with pytest.raises(ApiError) as stale:
        _set(second, bindings=[VIEWER], etag=first["etag"])
    assert (stale.value.http_status, stale.value.status) == (409, "ABORTED")


def test_without_etag_the_policy_is_overwritten() -> None:
    first = _set(None, bindings=[VIEWER])
    assert _set(first, bindings=[])["version"] == 1


@pytest.mark.parametrize(
    ("binding", "message"),
    [
        ({"role": "viewer", "members": ["user:a@example.com"]}, "must name a role"),
        ({"role": "roles/viewer", "members": []}, "at least one member"),
        ({"role": "roles/viewer", "members": ["a@example.com"]}, "'a@example.com'"),
    ],
)
def test_invalid_bindings_are_refused_naming_the_problem(binding: dict[str, Any], message: str) -> None:
    with pytest.raises(ApiError, match=message):
        _set(None, bindings=[binding])


def test_conditional_bindings_need_version_3_to_be_set_and_read() -> None:
    conditional = {**VIEWER, "condition": {"expression": "request.time < timestamp('2030-01-01T00:00:00Z')"}}
    with pytest.raises(ApiError, match="version 3"):
        _set(None, bindings=[conditional])
    policy = _set(None, bindings=[conditional], version=3)
    assert policy["version"] == 3
    assert iam.answer(policy, 3) == policy
    with pytest.raises(ApiError, match="requestedPolicyVersion 3"):
        iam.answer(policy, 1)


def test_update_mask_limits_what_changes() -> None:
    first = _set(None, bindings=[VIEWER])
    audit = [{"service": "allServices", "auditLogConfigs": [{"logType": "DATA_READ"}]}]
    only_audit = iam.updated_policy(first, {"policy": {"auditConfigs": audit}, "updateMask": "auditConfigs"})
    assert only_audit["bindings"] == [VIEWER]
    assert only_audit["auditConfigs"] == audit
    with pytest.raises(ApiError, match="not a Policy field"):
        iam.updated_policy(first, {"policy": {}, "updateMask": "owners"})


@pytest.mark.parametrize(("raw", "version"), [(None, 0), ("", 0), ("1", 1), ("3", 3)])
def test_requested_policy_version(raw: str | None, version: int) -> None:
    assert iam.requested_version(raw) == version


def test_requested_policy_version_2_is_refused() -> None:
    with pytest.raises(ApiError, match="0, 1 or 3"):
        iam.requested_version("2")
