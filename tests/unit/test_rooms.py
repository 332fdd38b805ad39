"""The core's rooms and their dependency rule: imports point down, never sideways into a stage, never in a circle."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "dicomflow"
TOP = "top"  # the top-level modules: ports, errors, logs, retry, parsing, pool
# room -> the rooms its modules may import (besides their own room)
ALLOWED: dict[str, set[str]] = {
    TOP: set(),
    "config": {TOP},
    "messages": {TOP},
    "dicom": {TOP},
    "ledger": {TOP, "config", "messages"},
    "batching": {TOP, "config", "messages", "ledger"},
    "reconcile": {TOP, "config", "messages", "ledger", "dicom"},
    "stages": {TOP, "config", "messages", "ledger", "dicom", "batching", "reconcile"},
    "adapters": {TOP, "config", "messages"},
    "cli": {TOP, "config", "messages", "ledger", "dicom", "batching", "reconcile", "stages", "adapters"},
}


def _module(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return TOP
    if (CORE / parts[1]).is_dir():
        return parts[1]
    return TOP


def _imports(path: Path) -> Iterator[str]:
    """Every dicomflow module the file imports (``from dicomflow.x import y`` names y when y is a module)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "dicomflow")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "dicomflow":
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                as_file = CORE.parent / (candidate.replace(".", "/") + ".py")
                as_package = CORE.parent / candidate.replace(".", "/") / "__init__.py"
                yield candidate if as_file.exists() or as_package.exists() else node.module


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(CORE.rglob("*.py")):
        module = _module(path)
        graph[module] = {imported for imported in _imports(path) if imported != module}
    return graph


def violations(graph: Mapping[str, set[str]], allowed: Mapping[str, set[str]]) -> list[str]:
    """``module -> imported`` edges that leave the importer's room for a room it may not import."""
    found = []
    for module, imported in graph.items():
        room = _room(module)
        for target in sorted(imported):
            if _room(target) != room and _room(target) not in allowed[room]:
                found.append(f"{module} -> {target}")
    return found


def cycle(graph: Mapping[str, set[str]]) -> list[str]:
    """One import cycle among the modules (a package counts as its __init__), or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        state[module] = 2
        path.pop()
        return []

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return []


def test_every_room_has_its_rule_written_at_its_door() -> None:
    rooms = {path.parent.name for path in CORE.glob("*/__init__.py")}
    assert rooms == set(ALLOWED) - {TOP}
    for room in rooms - {"adapters", "cli"}:
        doc = ast.get_docstring(ast.parse((CORE / room / "__init__.py").read_text())) or ""
        assert "May import" in doc, f"dicomflow/{room}/__init__.py must say what the room may import"


def test_imports_point_down_the_rooms() -> None:
    assert violations(_graph(), ALLOWED) == []


def test_no_module_of_the_core_imports_itself_in_a_circle() -> None:
    assert cycle(_graph()) == []


def test_the_checks_see_a_sideways_import_and_a_circle() -> None:
    # GIVEN a ledger module importing a stage, and two modules importing each other (the checks can fail)
    graph = {"dicomflow.ledger.store": {"dicomflow.stages.flush"}, "dicomflow.stages.flush": {"dicomflow.ledger.store"}}
    assert violations(graph, ALLOWED) == ["dicomflow.ledger.store -> dicomflow.stages.flush"]
    assert cycle(graph) == ["dicomflow.ledger.store", "dicomflow.stages.flush", "dicomflow.ledger.store"]
