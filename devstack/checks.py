"""Checks every end-to-end test (and the soak benchmark) applies to what the pipeline reported."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

TERMS = ("imported", "duplicates", "failed", "redriven")


def counts_add_up(result: Mapping[str, Any]) -> bool:
    """files = imported + duplicates + failed + redriven, with no negative term; ``skipped`` (DICOMDIRs, never
    imported) is outside the sum and never negative."""
    terms = [result[k] for k in TERMS]
    return all(term >= 0 for term in terms) and result["skipped"] >= 0 and result["files"] == sum(terms)


def assert_counts_add_up(results: Iterable[dict[str, Any]]) -> None:
    """Every batch result adds up (``counts_add_up``)."""
    for result in results:
        assert counts_add_up(result), result
