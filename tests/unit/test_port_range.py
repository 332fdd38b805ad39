"""Free ports come from the process's port range, which a test worker narrows to its own slice."""

from __future__ import annotations

import pytest

from devstack import processes


def test_free_ports_come_from_the_range_in_use_and_a_bad_range_is_refused() -> None:
    before = processes.port_range()
    try:
        processes.use_port_range(24000, 24100)
        for _ in range(20):
            ports = processes.free_ports(3)
            assert all(24000 <= p < 24100 for p in ports) and ports == list(range(ports[0], ports[0] + 3))
        with pytest.raises(ValueError, match="not a port range"):
            processes.use_port_range(24100, 24000)
    finally:
        processes.use_port_range(*before)
    assert processes.port_range() == before
