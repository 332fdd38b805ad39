"""The planner: fewest URIs, every pending file covered, zero overshoot, only valid URIs."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicomflow.batching.planner import Plan, plan_imports
from dicomflow.batching.wildcard import compile_pattern, is_valid_object_pattern
from tests.fakes.bucket import FakeLister

BUCKET = "src-bucket"


def _check(plan: Plan, objects: set[str], pending: set[str]) -> None:
    """The contract: covered = pending exactly, zero overshoot, valid URIs, never more URIs than files."""
    covered: list[str] = []
    for item in plan.imports:
        pattern = item.uri.removeprefix(f"gs://{BUCKET}/")
        assert is_valid_object_pattern(pattern), item.uri
        matched = {n for n in objects if compile_pattern(pattern).fullmatch(n)}
        assert matched <= pending, (item.uri, matched - pending)  # zero overshoot
        assert set(item.files) <= matched | (pending - objects), item.uri
        assert item.files
        covered += item.files
    covered += plan.staged
    assert sorted(covered) == sorted(pending)
    assert plan.overshoot == 0
    assert len(plan.imports) + len(plan.staged) <= len(pending)


def _plan(objects: set[str], pending: set[str]) -> Plan:
    plan = plan_imports(BUCKET, pending, FakeLister(objects), listing_cap=10_000)
    _check(plan, objects, pending)
    return plan


def _uris(plan: Plan) -> list[str]:
    return [i.uri.removeprefix(f"gs://{BUCKET}/") for i in plan.imports]


def test_plan_collapses_a_fully_pending_upload_to_one_double_star() -> None:
    objects = {f"up/p{p}/s{s}/IM{i}.dcm" for p in range(3) for s in range(2) for i in range(5)} | {"old/a.dcm"}
    pending = {n for n in objects if n.startswith("up/")}
    assert _uris(_plan(objects, pending)) == ["up/**.dcm"]


def test_plan_uses_the_whole_bucket_when_everything_is_pending() -> None:
    objects = {f"s{s}/IM{i}.dcm" for s in range(3) for i in range(4)}
    assert _uris(_plan(objects, objects)) == ["**.dcm"]


def test_plan_never_matches_an_old_file_in_the_same_folder() -> None:
    # GIVEN new files IM0101..IM0150 arrive in a folder that holds IM0001..IM0100
    old = {f"series/IM{i:04d}.dcm" for i in range(1, 101)}
    new = {f"series/IM{i:04d}.dcm" for i in range(101, 151)}
    plan = _plan(old | new, new)
    # THEN the minimal prefix cover is used: IM0100 (old) shares every prefix with IM0101..IM0109
    expected = [f"series/IM{i:04d}.dcm" for i in range(101, 110)]
    expected += [f"series/IM01{d}*.dcm" for d in range(1, 5)] + ["series/IM0150.dcm"]
    assert _uris(plan) == sorted(expected)


def test_plan_leaves_sidecars_and_quarantined_files_alone() -> None:
    objects = {"d/a.dcm", "d/b.dcm", "d/notes.json", "d/sub/bad.dcm"}
    pending = {"d/a.dcm", "d/b.dcm"}
    assert _uris(_plan(objects, pending)) == ["d/*.dcm"]


def test_plan_sends_names_with_brackets_to_staging() -> None:
    objects = {"d/a[1].dcm", "d/a1.dcm", "d/b.dcm"}
    plan = _plan(objects, {"d/a[1].dcm", "d/b.dcm"})
    assert plan.staged == ["d/a[1].dcm"]


def test_plan_uses_an_exact_wildcard_name_only_when_it_matches_itself_alone() -> None:
    alone = _plan({"d/x*y.dcm", "d/old.dcm", "e/old.dcm"}, {"d/x*y.dcm"})
    assert _uris(alone) == ["d/x*y.dcm"]
    crowded = _plan({"d/x*y.dcm", "d/xzy.dcm", "e/old.dcm"}, {"d/x*y.dcm"})
    assert crowded.staged == ["d/x*y.dcm"]


def test_plan_sends_files_under_a_wildcard_folder_to_staging() -> None:
    plan = _plan({"we*rd/a.dcm", "weird/a.dcm", "e/old.dcm"}, {"we*rd/a.dcm"})
    assert plan.staged == ["we*rd/a.dcm"]


def test_plan_covers_a_file_listed_nowhere_with_its_exact_name() -> None:
    # the object was deleted after its event: the import will report it failed, nothing else is matched
    assert _uris(_plan({"d/a.dcm"}, {"d/gone.dcm"})) == ["d/gone.dcm"]


def test_plan_reports_listing_calls_and_stays_within_the_directories_involved() -> None:
    lister = FakeLister({"a/1.dcm", "a/2.dcm", "b/1.dcm", "c/deep/x.dcm"})
    plan = plan_imports(BUCKET, {"a/1.dcm"}, lister, listing_cap=1000)
    assert plan.listing_calls == len(lister.requests)
    assert all(prefix in ("a/", "") for prefix, _ in lister.requests)


@pytest.mark.parametrize("name", ["/leading.dcm", "with space.dcm", "ünïcødé.dcm", "hash#.dcm", "x" * 1020 + ".dcm"])
def test_plan_handles_unusual_names(name: str) -> None:
    _plan({name, "other.dcm"}, {name})


_segment = st.sampled_from(["a", "b", "c", "IM1", "IM10", "IM2", "x*", "y?", "z[", "s p"])
_ext = st.sampled_from([".dcm", ".DCM", ".json", ""])
_path = st.builds(
    lambda dirs, base, ext: "/".join([*dirs, base]) + ext,
    st.lists(_segment, max_size=3),
    _segment,
    _ext,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), objects=st.sets(_path, min_size=1, max_size=40))
def test_plan_properties_on_random_trees(data: st.DataObject, objects: set[str]) -> None:
    pending = data.draw(st.sets(st.sampled_from(sorted(objects)), min_size=1))
    _plan(objects, pending)


def test_compile_pattern_treats_regex_characters_literally() -> None:
    assert compile_pattern("a+b(1).dcm").fullmatch("a+b(1).dcm")
    assert not compile_pattern("a.dcm").fullmatch("aXdcm")
    assert re.compile(compile_pattern("d/*.dcm").pattern).fullmatch("d/x.dcm")
