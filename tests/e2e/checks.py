"""Checks every end-to-end test applies to what the pipeline reported."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def assert_counts_add_up(results: Iterable[dict[str, Any]]) -> None:
    """Every batch result satisfies files = imported + duplicates + failed + redriven, with no negative term;
    ``skipped`` (DICOMDIRs, never imported) is outside the sum and never negative."""
    for result in results:
        terms = [result[k] for k in ("imported", "duplicates", "failed", "redriven")]
        assert all(term >= 0 for term in terms) and result["skipped"] >= 0, result
        assert result["files"] == sum(terms), result
