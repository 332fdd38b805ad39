"""Session-wide settings for every tier, for ``make test``'s run of the suite on several pytest-xdist workers.

Ports: each worker picks its services' ports from a slice of its own of devstack.processes' range, so that two
workers can never choose the same port between choosing and binding it, nor take a port that another worker's
stack released for a moment while restarting a service. Every port of a test is chosen in the worker's own
process (StackConfig.on_free_ports, free_port), so narrowing the module's range there covers them all.
"""

from __future__ import annotations

import os

import pytest

import devstack.processes


def pytest_configure(config: pytest.Config) -> None:
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not worker or not count:
        return  # not an xdist worker: the whole range
    index, workers = int(worker.removeprefix("gw")), int(count)
    low, high = devstack.processes.port_range()
    width = (high - low) // workers
    devstack.processes.use_port_range(low + index * width, low + (index + 1) * width)
