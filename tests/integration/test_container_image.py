"""The backfill job's container image, built the way its Dockerfile says, without a container engine: the files
its COPY lines name go into an empty directory, its RUN line installs them into a fresh virtual environment (so
only requirements.txt provides dependencies, not the development venv), and its CMD runs there. What this does
not cover is the base image itself (python:3.11-slim)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _instructions() -> list[tuple[str, str]]:
    lines = (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
    return [(word.upper(), rest.strip()) for line in lines if line.strip() and not line.startswith("#")
            for word, _, rest in [line.strip().partition(" ")]]  # fmt: skip


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's /app as a directory, with the RUN line's installs in ``venv``; returns the venv's bin."""
    base = tmp_path_factory.mktemp("image")
    app, venv = base / "app", base / "venv"
    app.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = str(venv / "bin" / "pip")
    for instruction, argument in _instructions():
        if instruction == "COPY":
            *sources, _destination = argument.split()
            for source in sources:
                origin = ROOT / source
                if origin.is_dir():
                    shutil.copytree(origin, app / source, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(origin, app / source)
        elif instruction == "RUN":
            command = re.sub(r"(?<![\w/])pip(?= )", pip, argument)
            subprocess.run(command, shell=True, cwd=app, check=True, capture_output=True, timeout=600)
    return venv / "bin"


def _run(binary: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{binary}:{os.environ.get('PATH', '')}", "HOME": os.environ.get("HOME", "/tmp")}
    command = [str(binary / argv[0]), *argv[1:]]
    return subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=120, cwd=binary.parent)


def test_the_images_command_runs_the_cli(image: Path) -> None:
    [command] = [json.loads(argument) for instruction, argument in _instructions() if instruction == "CMD"]
    done = _run(image, *command)
    assert done.returncode == 0, done.stderr
    assert all(name in done.stdout for name in ("status", "backfill", "verify", "plan", "requeue"))


def test_the_backfill_jobs_command_is_there_and_a_missing_setting_is_named(image: Path) -> None:
    assert _run(image, "dicomflow", "backfill", "--help").returncode == 0
    done = _run(image, "dicomflow", "backfill", "gs://archive/2019/", "--dry-run")
    assert done.returncode == 2 and "PROJECT_ID" in done.stderr and "Traceback" not in done.stderr


def test_the_emulator_command_says_which_extra_it_needs(image: Path) -> None:
    done = _run(image, "healthcare-emulator", "--help")
    assert done.returncode == 2 and "dicomflow[emulator]" in done.stderr and "Traceback" not in done.stderr
