"""Terraform locals evaluated for real with ``terraform console`` (no provider needed): a local's expression text,
with every ``local.Y`` replaced by its own expression and every ``var.X`` by a value."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.test_terraform import _locals

needs_terraform = pytest.mark.skipif(shutil.which("terraform") is None, reason="needs the terraform CLI")


def _expression(name: str) -> str:
    """Local NAME as an HCL expression: its ``${...}`` body, or its template as a string literal."""
    text = _locals()[name]
    assert isinstance(text, str), name
    return text[2:-1] if text.startswith("${") and _closing(text, 1) == len(text) - 1 else json.dumps(text)


def _closing(text: str, start: int) -> int:
    """Index of the brace that closes the one at ``start``."""
    depth = 0
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return index
    return -1


def evaluate(name: str, variables: dict[str, Any], workdir: Path) -> Any:
    """The value of local NAME for these variables, computed by terraform console (no provider needed)."""
    return evaluate_expression(_expression(name), variables, workdir)


def evaluate_expression(expression: str, variables: dict[str, Any], workdir: Path) -> Any:
    """The value of an HCL expression (e.g. a precondition's condition, without its ``${}``) that reads locals
    and variables only, for these variables."""
    for _ in range(6):  # inline the locals it uses (they may use others)
        expression = re.sub(r"\blocal\.(\w+)\b", lambda m: f"({_expression(m.group(1))})", expression)
    expression = re.sub(
        r"\bvar\.(\w+)\b", lambda m: f"jsondecode({json.dumps(json.dumps(variables[m.group(1)]))})", expression
    )
    done = subprocess.run(
        ["terraform", "console"], input=f"jsonencode({' '.join(expression.split())})\n", cwd=workdir,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(json.loads(done.stdout.strip()))
