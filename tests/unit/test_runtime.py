"""The per-process runtime is built once, even when several request threads of a fresh instance ask at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from handlers import runtime as runtime_module


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    calls: list[str] = []

    def slow_build(component: str) -> Any:
        calls.append(component)
        time.sleep(0.05)  # long enough for every other thread to arrive while it builds
        return object()

    runtime_module.reset()
    monkeypatch.setattr(runtime_module, "_build", slow_build)
    yield calls
    runtime_module.reset()


def test_runtime_is_built_once_when_threads_arrive_first_at_once(builds: list[str]) -> None:
    barrier = threading.Barrier(16)

    def first_request(_: int) -> Any:
        barrier.wait()
        return runtime_module.runtime("on_object_finalized")

    with ThreadPoolExecutor(16) as pool:
        runtimes = list(pool.map(first_request, range(16)))
    assert builds == ["on_object_finalized"]
    assert len({id(rt) for rt in runtimes}) == 1


def test_runtime_is_built_per_component_and_again_after_reset(builds: list[str]) -> None:
    first = runtime_module.runtime("on_flush")
    assert runtime_module.runtime("on_flush") is first
    runtime_module.runtime("on_operation")
    runtime_module.reset()
    assert runtime_module.runtime("on_flush") is not first
    assert builds == ["on_flush", "on_operation", "on_flush"]
