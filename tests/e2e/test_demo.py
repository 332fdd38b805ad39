"""`make run`'s demo on the whole local stack: its upload imported, exported and copied, de-identified, into
the research store, and a summary that says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.demo import run_demo
from devstack.stack import RESEARCH_STORE_NAME, LocalStack, StackConfig

pytestmark = pytest.mark.e2e


def test_the_demo_ends_with_a_clean_research_copy_of_every_study(tmp_path: Path) -> None:
    # GIVEN the stack as `make run` starts it (the research target on), on free ports
    config = StackConfig.on_free_ports(
        settle_seconds=1.0, max_wait_seconds=10.0, flush_interval=1.0, data_dir=tmp_path, research=True
    )
    stack = LocalStack(config)
    endpoints = stack.start()
    lines: list[str] = []
    try:
        # WHEN the demo runs
        finished = run_demo(endpoints, timeout=240, say=lines.append, research=True)
    finally:
        stack.stop()
    summary = "\n".join(lines)
    # THEN it finished and its summary shows the research copy: every instance, one study per source study, and
    # neither a patient's name or ID nor an original UID left
    assert finished, summary
    research = next(line for line in lines if "research copy" in line)
    assert RESEARCH_STORE_NAME in research
    assert "in 4 studies (the source has 4)" in research, research
    assert "patient names left 0, source names or IDs left 0, original UIDs left 0" in summary, summary
    assert "NOT clean" not in summary
    batches = [line for line in lines if ": research " in line]
    assert batches and all("research succeeded" in line for line in batches), summary
