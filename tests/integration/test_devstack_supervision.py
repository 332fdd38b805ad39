"""The local stack supervises what it started: a function process or healthcare_emulator killed by its PID
(SIGKILL, as a crashed instance) is restarted and serves again; a crash loop makes the stack give up with a
reason. The Pub/Sub emulator's death is in test_devstack_up.py (it ends the stack)."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from devstack.stack import LocalStack, StackConfig

pytestmark = pytest.mark.integration

RESTART_LIMIT = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig.on_free_ports(
        flush_interval=3600.0, data_dir=tmp_path_factory.mktemp("supervised"),
        restart_limit=RESTART_LIMIT, restart_window_seconds=3600.0,
    )  # fmt: skip
    local = LocalStack(config)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def _wait(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _replaced(stack: LocalStack, key: str, old_pid: int) -> bool:
    process = stack.processes.get(key)
    return process is not None and process.pid != old_pid and process.alive()


def _push(url: str) -> int:
    """POST a Pub/Sub push envelope (a message no handler acts on) and return the HTTP status (0: no answer)."""
    envelope = {"message": {"data": "", "attributes": {"eventType": "OBJECT_DELETE"}, "messageId": "m1"},
                "subscription": "projects/local-project/subscriptions/probe"}  # fmt: skip
    request = urllib.request.Request(url, data=json.dumps(envelope).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def _kill(stack: LocalStack, key: str) -> int:
    pid = stack.processes[key].pid
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: _replaced(stack, key, pid), f"a new {key} process")
    return pid


def test_stack_restarts_a_killed_function_process_and_it_serves_again(
    stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN the on_object_finalized process the stack started, serving requests
    assert stack.endpoints is not None
    url = stack.endpoints.functions["on_object_finalized"]
    assert _push(url) == 200
    # WHEN it is killed by its PID (SIGKILL, as a crashed instance)
    with caplog.at_level(logging.INFO, logger="devstack.stack"):
        pid = _kill(stack, "on_object_finalized")
    # THEN the stack says how it ended and restarts it
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "devstack.stack"]
    assert ("WARNING", f"on_object_finalized (pid {pid}) killed by signal SIGKILL (9); restarting it") in lines
    new_pid = stack.processes["on_object_finalized"].pid
    assert ("INFO", f"on_object_finalized restarted (pid {new_pid})") in lines
    [record] = [r for r in caplog.records if r.getMessage().startswith("on_object_finalized (pid")]
    assert record.fields == {"process": "on_object_finalized", "pid": pid, "signal": "SIGKILL", "signal_number": 9}  # type: ignore[attr-defined]
    # AND requests are served again on the same port
    _wait(lambda: _push(url) == 200, "on_object_finalized to answer again")
    assert stack.failure is None


def test_stack_restarts_a_killed_healthcare_emulator_which_keeps_its_store(stack: LocalStack) -> None:
    # GIVEN the store the stack created
    assert stack.endpoints is not None
    store_url = f"{stack.endpoints.healthcare_url}/v1/{stack.endpoints.store_name}"
    # WHEN healthcare_emulator is killed by its PID
    _kill(stack, "healthcare")

    # THEN it answers again on its port with the same store (it persists on the data directory)
    def store_answers() -> bool:
        try:
            with urllib.request.urlopen(store_url, timeout=10) as answer:
                return bool(json.loads(answer.read())["name"] == stack.endpoints.store_name)  # type: ignore[union-attr]
        except (urllib.error.URLError, OSError):
            return False

    _wait(store_answers, "the restarted emulator to serve the store")
    assert stack.failure is None


def test_stack_gives_up_on_a_crash_looping_function_with_its_reason(stack: LocalStack) -> None:
    # GIVEN on_flush, killed as often as the restart budget allows (each time it comes back)
    for _ in range(RESTART_LIMIT):
        _kill(stack, "on_flush")
    assert stack.failure is None
    # WHEN it dies once more within the window
    process = stack.processes["on_flush"]
    os.kill(process.pid, signal.SIGKILL)
    # THEN the stack gives up on it, saying which process, how it ended and why it is not restarted
    _wait(lambda: stack.failure is not None, "the supervisor to give up")
    assert stack.failure == (
        f"on_flush (pid {process.pid}) killed by signal SIGKILL (9), after {RESTART_LIMIT} restarts within 3600 s: "
        f"a crash loop, not restarted again (see {process.log_path})"
    )
    assert stack.processes["on_flush"] is process and not process.alive()
