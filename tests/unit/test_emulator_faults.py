"""The emulator's fault rules: scoped to what they target, and cleared rules release what they hold."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from healthcare_emulator.errors import ApiError
from healthcare_emulator.faults import FaultInjector, FaultsClearedError

STORE_A = "projects/p/locations/l/datasets/d/dicomStores/a"
STORE_B = "projects/p/locations/l/datasets/d/dicomStores/b"


def test_an_operation_delay_scoped_to_a_store_is_not_taken_by_another_store() -> None:
    faults = FaultInjector()
    faults.add({"kind": "operation-delay", "seconds": 30, "count": 1, "store": "dicomStores/b$"})
    assert faults.operation_delay(STORE_A, "ImportDicomData") == 0.0
    assert faults.operation_delay(STORE_B, "ImportDicomData") == 30.0
    assert faults.operation_delay(STORE_B, "ImportDicomData") == 0.0  # used up


def test_an_operation_delay_scoped_to_an_operation_kind_skips_other_kinds() -> None:
    faults = FaultInjector()
    faults.add({"kind": "operation-delay", "seconds": 5, "operation": "ExportDicomData"})
    assert faults.operation_delay(STORE_A, "ImportDicomData") == 0.0
    assert faults.operation_delay(STORE_A, "ExportDicomData") == 5.0


def test_an_unscoped_operation_delay_applies_to_any_store() -> None:
    faults = FaultInjector()
    faults.add({"kind": "operation-delay", "seconds": 2, "count": 2})
    assert faults.operation_delay(STORE_A, "ImportDicomData") == 2.0
    assert faults.operation_delay(STORE_B, "ExportDicomData") == 2.0


def test_an_import_file_rule_scoped_to_a_store_fails_only_that_store() -> None:
    faults = FaultInjector()
    faults.add({"kind": "import-file", "object": "bad", "count": 5, "store": "dicomStores/a$"})
    assert not faults.fails_import_of(STORE_B, "x/bad.dcm")
    assert faults.fails_import_of(STORE_A, "x/bad.dcm")
    assert not faults.fails_import_of(STORE_A, "x/good.dcm")


def test_an_http_rule_scoped_to_a_store_skips_requests_for_others() -> None:
    faults = FaultInjector()
    faults.add({"method": "POST", "path": ":import$", "status": 503, "store": "dicomStores/a:"})
    faults.check("POST", f"/v1/{STORE_B}:import")  # no error
    with pytest.raises(ApiError) as raised:
        faults.check("POST", f"/v1/{STORE_A}:import")
    assert raised.value.http_status == 503


def _in_thread(target: Callable[[], object]) -> tuple[threading.Thread, list[BaseException | None]]:
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            target()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _wait_until_sleeping(faults: FaultInjector) -> None:
    deadline = time.monotonic() + 30
    while not any(rule["fired"] for rule in faults.rules()):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_clearing_the_rules_cancels_a_request_held_by_a_latency_rule() -> None:
    # GIVEN a request held for a minute by a latency rule
    faults = FaultInjector()
    faults.add({"method": "POST", "path": ":import$", "seconds": 60})
    thread, outcome = _in_thread(lambda: faults.check("POST", f"/v1/{STORE_A}:import"))
    _wait_until_sleeping(faults)
    # WHEN the rules are cleared
    faults.clear()
    thread.join(timeout=30)
    # THEN the request ends at once with a 503 instead of going on to do its work
    assert not thread.is_alive()
    [error] = outcome
    assert isinstance(error, ApiError) and error.http_status == 503


def test_clearing_the_rules_ends_a_delay_sleep() -> None:
    faults = FaultInjector()
    thread, outcome = _in_thread(lambda: faults.sleep(60))
    # a clear before the thread begins its sleep cannot end it: clear until the sleep ends (not a fixed pause)
    deadline = time.monotonic() + 30
    while thread.is_alive():
        assert time.monotonic() < deadline, "clearing the rules never ended the sleep"
        faults.clear()
        thread.join(timeout=0.05)
    assert isinstance(outcome[0], FaultsClearedError)


def test_a_sleep_without_a_clear_runs_its_full_time() -> None:
    faults = FaultInjector()
    started = time.monotonic()
    faults.sleep(0.05)
    assert time.monotonic() - started >= 0.05
