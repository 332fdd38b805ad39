"""``:getIamPolicy``, ``:setIamPolicy`` and ``:testIamPermissions`` on datasets and DICOM stores."""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from healthcare_emulator import iam
from healthcare_emulator.names import DatasetName, StoreName
from healthcare_emulator.rest import json_body, json_response
from healthcare_emulator.service import Emulator


def _resource(emulator: Emulator, groups: dict[str, str]) -> str:
    """The name of the dataset or store the path names (404 when it does not exist)."""
    dataset = DatasetName(groups["project"], groups["location"], groups["dataset"])
    if "store" in groups:
        store = StoreName(dataset, groups["store"])
        emulator.require_store(store)
        return str(store)
    emulator.require_dataset(dataset)
    return str(dataset)


def get_iam_policy(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    resource = _resource(emulator, groups)
    requested = iam.requested_version(request.args.get("options.requestedPolicyVersion"))
    return json_response(iam.answer(iam.current(emulator.repository.get_policy(resource)), requested))


def set_iam_policy(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    resource = _resource(emulator, groups)
    policy = iam.updated_policy(emulator.repository.get_policy(resource), json_body(request))
    emulator.repository.set_policy(resource, policy)
    return json_response(policy)


def check_iam_permissions(emulator: Emulator, request: Request, version: str, groups: dict[str, str]) -> Response:
    _resource(emulator, groups)
    return json_response(iam.permitted(json_body(request)))
