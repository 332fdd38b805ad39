"""The dependency locks: every requirement pinned with hashes, the same versions for the functions and for the
development venv, the floors above published fixes, and the installs (make, Dockerfile) using the locks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", re.MULTILINE)
# package -> first version with the fix (the advisories the README names)
FLOORS = {"requests": (2, 32, 4), "werkzeug": (3, 1, 6), "setuptools": (78, 1, 1), "pytest": (9, 0, 3)}


def _pins(name: str) -> dict[str, str]:
    return {package.lower(): version for package, version in _PIN.findall((ROOT / name).read_text())}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


@pytest.mark.parametrize("lock", ["requirements.txt", "requirements-dev.lock"])
def test_every_requirement_of_a_lock_is_pinned_with_its_hashes(lock: str) -> None:
    text = (ROOT / lock).read_text()
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    entries = re.split(r"\n(?=\S)", "\n".join(lines))
    assert len(entries) >= 20
    for entry in entries:
        assert _PIN.match(entry), entry.splitlines()[0]
        assert "--hash=sha256:" in entry, entry.splitlines()[0]
    assert not [line for line in lines if line.startswith("--")]  # no index or local wheel folder named


def test_the_development_venv_runs_the_versions_the_functions_deploy() -> None:
    functions, development = _pins("requirements.txt"), _pins("requirements-dev.lock")
    assert {p: v for p, v in development.items() if p in functions} == functions


@pytest.mark.parametrize("lock", ["requirements.txt", "requirements-dev.lock"])
def test_locked_versions_are_above_the_published_fixes(lock: str) -> None:
    pins = _pins(lock)
    for package, fixed in FLOORS.items():
        if package in pins:
            assert _version(pins[package]) >= fixed, (package, pins[package])
    assert {"requests", "werkzeug", "setuptools"} <= set(pins)


def test_the_ranges_carry_the_floors() -> None:
    ranges = (ROOT / "requirements.in").read_text() + (ROOT / "requirements-dev.txt").read_text()
    for package, fixed in FLOORS.items():
        assert re.search(rf"^{package}>={'.'.join(map(str, fixed))}", ranges, re.MULTILINE), package


def test_make_and_the_image_install_the_locks_with_hash_checking() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock" in makefile
    assert "-r requirements-dev.txt" not in makefile
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir --require-hashes -r requirements.txt" in dockerfile
    # the package itself brings no unlocked dependency
    assert "--no-deps ." in dockerfile and "--no-deps -e ." in makefile
