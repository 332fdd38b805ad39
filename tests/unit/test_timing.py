"""Timing profiles: the emulator's latency draws and operation durations, the relay's retry policy, the stack's
cloud profile."""

from __future__ import annotations

import random
import statistics
import threading
import time

import pytest

from devstack.latency_proxy import call_kind
from devstack.relay import PushRoute
from devstack.timing import CLOUD, LOCAL, SOURCES
from healthcare_emulator.errors import ApiError
from healthcare_emulator.timing import Clocks, Duration, Latency, TimingProfile, request_kind

CLOUD_LIKE = TimingProfile(latency={"qido": Latency(0.05, 0.1)})
STORE = "/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb"


def test_a_latency_is_drawn_around_its_median_and_99th_percentile() -> None:
    # GIVEN a latency of p50 100 ms, p99 400 ms WHEN 20,000 latencies are drawn (seeded)
    rng = random.Random(1)
    draws = sorted(Latency(100, 400).draw(rng) for _ in range(20_000))
    # THEN their median and 99th percentile are those (within the sampling error)
    assert statistics.median(draws) == pytest.approx(0.100, rel=0.05)
    assert draws[int(0.99 * len(draws))] == pytest.approx(0.400, rel=0.1)
    assert Latency(0, 0).draw(rng) == 0.0


def test_an_operation_lasts_fixed_plus_per_file_plus_per_mb() -> None:
    assert Duration(20, 0.03, 0.05).seconds(files=10_000, size=2_000_000_000) == pytest.approx(20 + 300 + 100)


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", "/v1/projects/p/locations/l/datasets/d/operations/123", "operations.get"),
        ("GET", f"{STORE}/studies", "qido"),
        ("GET", f"{STORE}/studies/1.2/instances", "qido"),
        ("GET", f"{STORE}/studies/1.2/series/1.2.3/instances", "qido"),
        ("GET", f"{STORE}/instances", "qido"),
        ("GET", f"{STORE}/studies/1.2/series/1.2.3/instances/1.2.3.4", "wado"),
        ("GET", f"{STORE}/studies/1.2/series/1.2.3/instances/1.2.3.4/frames/1", "wado"),
        ("DELETE", f"{STORE}/studies/1.2/series/1.2.3/instances/1.2.3.4", "delete"),
        ("POST", "/v1/projects/p/locations/l/datasets/d/dicomStores/s:import", None),
        ("GET", "/v1/projects/p/locations/l/datasets/d/operations", None),
    ],
)
def test_each_request_waits_the_latency_of_its_kind(method: str, path: str, kind: str | None) -> None:
    assert request_kind(method, path) == kind


def test_a_profile_round_trips_and_refuses_unknown_kinds() -> None:
    profile = TimingProfile.from_json(CLOUD.emulator_json())
    assert profile.operations["import"] == Duration(20.0, 0.03, 0.05)
    assert profile.operations["deidentify"] == Duration(20.0, 0.05, 0.1)
    assert profile.latency["qido"] == Latency(100, 400)
    assert TimingProfile.from_json(profile.to_json()) == profile
    with pytest.raises(ApiError):
        TimingProfile.from_json({"latency": {"storage": {"p50_ms": 1, "p99_ms": 2}}})


def test_the_relay_backs_off_exponentially_between_the_retry_policys_bounds() -> None:
    route = PushRoute("p", "s", "http://x", min_backoff_seconds=10, max_backoff_seconds=600)
    assert [route.backoff(n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 320, 600, 600]
    local = PushRoute("p", "s", "http://x", max_backoff_seconds=5)
    assert [local.backoff(n) for n in range(1, 5)] == [1, 2, 4, 5]


def test_the_cloud_profile_names_a_source_or_an_assumption_for_every_parameter_and_local_changes_nothing() -> None:
    assert not LOCAL.emulated and not LOCAL.gcs_latency
    assert CLOUD.emulated and CLOUD.gcs_latency
    assert (CLOUD.operations_min_backoff_seconds, CLOUD.operations_max_backoff_seconds) == (10, 10)
    for parameter in (
        "import_operation",
        "export_operation",
        "deidentify_operation",
        "api_latency",
        "gcs_latency",
        "operations_backoff",
    ):
        assert SOURCES[parameter].startswith(("assumption", "the deployment's")), parameter


def test_a_rewrite_is_told_from_other_cloud_storage_calls() -> None:
    assert call_kind("POST", "/storage/v1/b/a/o/x/rewriteTo/b/b/o/y?sourceGeneration=1") == "rewrite"
    assert call_kind("GET", "/storage/v1/b/a/o/x") == "other"
    assert call_kind("POST", "/upload/storage/v1/b/a/o?uploadType=multipart") == "other"


def test_a_store_deidentification_lasts_the_profiles_deidentify_duration() -> None:
    clocks = Clocks(TimingProfile.from_json({"deidentify": {"fixed_seconds": 5, "per_file_seconds": 1}}))
    assert clocks.operation_seconds("DeidentifyDicomStore", files=3, size=0) == pytest.approx(8)
    assert clocks.operation_seconds("ExportDicomData", files=3, size=0) == 0.0


def test_changing_the_profile_cuts_a_wait_short() -> None:
    clocks = Clocks(CLOUD_LIKE)
    waiter = threading.Thread(target=clocks.wait_until, args=(time.monotonic() + 600,), daemon=True)
    waiter.start()
    give_up = time.monotonic() + 60
    while waiter.is_alive() and time.monotonic() < give_up:  # set until the wait has begun and been woken
        clocks.set(None)
        waiter.join(timeout=0.05)
    assert not waiter.is_alive()


def test_a_wait_without_a_change_runs_its_full_time() -> None:
    clocks = Clocks(CLOUD_LIKE)
    deadline = time.monotonic() + 0.05
    clocks.wait_until(deadline)
    assert time.monotonic() >= deadline
