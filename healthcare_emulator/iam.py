"""IAM policies of datasets and DICOM stores: ``getIamPolicy``, ``setIamPolicy``, ``testIamPermissions``.

The shapes follow google.iam.v1 (Policy ``{version, bindings[{role, members, condition}], etag}``). A resource
without a policy answers the empty policy ``{"etag": "ACAB"}``. ``setIamPolicy`` with an ``etag`` other than the
current one is refused with 409 ABORTED (optimistic concurrency, as IAM documents); a binding with a
``condition`` needs ``version: 3``. Policies are stored and returned, never enforced: the emulator has no
authentication, so ``testIamPermissions`` grants every permission asked.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from healthcare_emulator.errors import ApiError, invalid_argument

EMPTY_ETAG = "ACAB"
_POLICY_VERSIONS = (0, 1, 3)
_MEMBER_PREFIXES = (
    "user:",
    "serviceAccount:",
    "group:",
    "domain:",
    "principal:",
    "principalSet:",
    "deleted:",
)
_SPECIAL_MEMBERS = ("allUsers", "allAuthenticatedUsers")


def requested_version(raw: str | None) -> int:
    """``options.requestedPolicyVersion``: 0, 1 or 3 (400 otherwise)."""
    if raw in (None, ""):
        return 0
    try:
        version = int(str(raw))
    except ValueError:
        version = -1
    if version not in _POLICY_VERSIONS:
        raise invalid_argument(f"options.requestedPolicyVersion must be 0, 1 or 3, got {raw!r}")
    return version


def current(stored: dict[str, Any] | None) -> dict[str, Any]:
    """The policy to answer for a resource (the empty policy when none was set)."""
    return dict(stored) if stored else {"etag": EMPTY_ETAG}


def updated_policy(stored: dict[str, Any] | None, request: dict[str, Any]) -> dict[str, Any]:
    """The policy ``setIamPolicy`` with ``request`` leaves; ApiError for an invalid policy or a stale etag."""
    policy = request.get("policy")
    if not isinstance(policy, dict):
        raise invalid_argument("policy is required and must be an object")
    old = current(stored)
    etag = policy.get("etag")
    if etag not in (None, "") and etag != old["etag"]:
        raise ApiError(
            409,
            "ABORTED",
            "there were concurrent policy changes: the etag does not match the current policy; read it again "
            "with getIamPolicy and retry",
        )
    mask = [path.strip() for path in str(request.get("updateMask") or "bindings,etag").split(",") if path.strip()]
    for path in mask:
        if path not in ("bindings", "etag", "auditConfigs", "version"):
            raise invalid_argument(f"updateMask path {path!r} is not a Policy field")
    bindings = _bindings(policy.get("bindings")) if "bindings" in mask else old.get("bindings", [])
    audit = policy.get("auditConfigs") if "auditConfigs" in mask else old.get("auditConfigs")
    conditional = any("condition" in binding for binding in bindings)
    version = int(policy.get("version") or 1)
    if version not in _POLICY_VERSIONS:
        raise invalid_argument(f"policy.version must be 0, 1 or 3, got {policy.get('version')!r}")
    if conditional and version != 3:
        raise invalid_argument("a policy with conditional role bindings must have version 3")
    result: dict[str, Any] = {"version": 3 if conditional else 1}
    if bindings:
        result["bindings"] = bindings
    if audit:
        result["auditConfigs"] = audit
    result["etag"] = _etag(result, old["etag"])
    return result


def answer(policy: dict[str, Any], version: int) -> dict[str, Any]:
    """A stored policy as getIamPolicy returns it for ``options.requestedPolicyVersion``."""
    if policy.get("version") == 3 and version != 3:
        raise invalid_argument("the policy has conditional role bindings: request it with requestedPolicyVersion 3")
    return policy


def permitted(request: dict[str, Any]) -> dict[str, Any]:
    """testIamPermissions: every permission asked is granted (the emulator does not authenticate)."""
    permissions = request.get("permissions") or []
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        raise invalid_argument("permissions must be a list of strings")
    for permission in permissions:
        if "*" in permission:
            raise invalid_argument(f"permission {permission!r}: wildcards are not allowed")
    return {"permissions": list(permissions)} if permissions else {}


def _bindings(raw: Any) -> list[dict[str, Any]]:
    if raw in (None, []):
        return []
    if not isinstance(raw, list):
        raise invalid_argument("policy.bindings must be a list")
    bindings: list[dict[str, Any]] = []
    for number, binding in enumerate(raw):
        if not isinstance(binding, dict):
            raise invalid_argument(f"policy.bindings[{number}] must be an object")
        role = binding.get("role")
        if not isinstance(role, str) or not role.startswith(("roles/", "projects/", "organizations/")):
            raise invalid_argument(f"policy.bindings[{number}].role must name a role such as roles/viewer")
        members = binding.get("members")
        if not isinstance(members, list) or not members:
            raise invalid_argument(f"policy.bindings[{number}] must have at least one member")
        for member in members:
            if not isinstance(member, str) or not (member in _SPECIAL_MEMBERS or member.startswith(_MEMBER_PREFIXES)):
                raise invalid_argument(
                    f"policy.bindings[{number}]: member {member!r} must be allUsers, allAuthenticatedUsers or "
                    "prefixed with user:, serviceAccount:, group:, domain:, principal: or principalSet:"
                )
        kept = {"role": role, "members": list(members)}
        if isinstance(binding.get("condition"), dict):
            kept["condition"] = binding["condition"]
        bindings.append(kept)
    return bindings


def _etag(policy: dict[str, Any], previous: str) -> str:
    digest = hashlib.sha256((previous + json.dumps(policy, sort_keys=True)).encode()).digest()
    return base64.b64encode(b"\x07" + digest[:7]).decode("ascii")
