"""The CLI (and so the backfill job, which runs it) shows object names by the deployment's log policy: its log
lines and the error it exits with hash them under LOG_OBJECT_NAMES=hashed."""

from __future__ import annotations

import argparse
import logging
from types import SimpleNamespace

import pytest

from dicomflow.cli import app, status
from dicomflow.config.settings import Settings
from dicomflow.errors import PermanentError, PermissionDeniedError
from dicomflow.logs import ObjectNames

ENV = {
    "PROJECT_ID": "my-project", "LOCATION": "us-central1", "DATASET": "ds", "DICOM_STORE": "store",
    "SOURCE_BUCKETS": "src", "STATE_BUCKET": "state",
    "LOG_OBJECT_NAMES": "hashed", "LOG_HASH_KEY": "a-key-of-sixteen-chars",
}  # fmt: skip
NAME = "Doe Jane 1970/CT 1/a.dcm"


def _run_failing(monkeypatch: pytest.MonkeyPatch, error: Exception, env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    monkeypatch.setattr(app, "load", lambda _env_file: SimpleNamespace(settings=settings))

    def run(_ctx: object, _args: argparse.Namespace) -> int:
        logging.getLogger("dicomflow.stages.intake").warning(
            "object %s unreadable", NAME, extra={"fields": {"object": NAME}}
        )
        raise error

    monkeypatch.setattr(status, "run", run)


@pytest.mark.parametrize("error", [PermanentError(f"reading gs://src/{NAME}: HTTP 400"),
                                   PermissionDeniedError(f"reading gs://src/{NAME}: HTTP 403", 403)])  # fmt: skip
def test_hashed_policy_hides_names_in_the_clis_log_lines_and_exit_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: Exception
) -> None:
    _run_failing(monkeypatch, error, ENV)
    assert app.main(["status"]) == 2
    err = capsys.readouterr().err
    assert "Doe" not in err and "Jane" not in err
    names = ObjectNames.policy("hashed", ENV["LOG_HASH_KEY"])
    assert f"object {names.show(NAME)} unreadable" in err
    assert "dicomflow: " in err and "h:" in err.split("dicomflow: ", 1)[1]


def test_full_policy_shows_them(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _run_failing(monkeypatch, PermanentError(f"reading gs://src/{NAME}: HTTP 400"), {**ENV, "LOG_OBJECT_NAMES": "full"})
    assert app.main(["status"]) == 2
    err = capsys.readouterr().err
    assert f"object {NAME} unreadable" in err and f"dicomflow: reading gs://src/{NAME}: HTTP 400" in err
