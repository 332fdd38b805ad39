"""The pipeline's grammar (dicomflow.batching.wildcard) and the emulator's (healthcare_emulator.wildcard) are written
independently; they must agree on every pattern's validity and matches."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dicomflow.batching.wildcard import compile_pattern, is_valid_object_pattern
from healthcare_emulator.wildcard import InvalidImportUriError, parse_import_uri

_pattern = st.text(alphabet="ab/.*?[]", min_size=1, max_size=12)
_name = st.text(alphabet="ab/.", min_size=1, max_size=12)


@settings(max_examples=500, deadline=None)
@given(pattern=_pattern, names=st.lists(_name, max_size=8))
def test_both_grammars_agree(pattern: str, names: list[str]) -> None:
    try:
        emulator = parse_import_uri(f"gs://bucket-x/{pattern}")
    except InvalidImportUriError:
        emulator = None
    assert is_valid_object_pattern(pattern) == (emulator is not None), pattern
    if emulator is not None:
        for name in names:
            assert bool(compile_pattern(pattern).fullmatch(name)) == emulator.matches(name), (pattern, name)
