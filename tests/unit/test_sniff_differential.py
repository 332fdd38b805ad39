"""The header sniffer against pydicom on mutated real files (fixed seed: the same cases on every run)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sniff_fuzzing import check, corpus, mutated_files


def test_the_corpus_reads_the_same_with_both_readers() -> None:
    verdicts = [check(data, first_read=256) for data in corpus()]
    assert [mine.kind for mine, _, _ in verdicts] == ["instance"] * 7 + ["dicomdir"]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the broken files it reads
@settings(max_examples=3000, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_files(), first_read=st.sampled_from((256, 1024, 65536)))
def test_a_mutated_file_is_read_as_pydicom_reads_it_or_refused_with_a_reason(data: bytes, first_read: int) -> None:
    check(data, first_read)
