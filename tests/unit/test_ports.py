"""The core depends on ports only: it imports without any Google SDK."""

from __future__ import annotations

import subprocess
import sys


def test_the_core_imports_without_any_google_module() -> None:
    # GIVEN a fresh interpreter (site .pth files may pre-create the empty 'google' namespace packages)
    # WHEN the core stages are imported THEN they loaded no google.* or googleapiclient module
    code = (
        "import sys\n"
        "def google(): return {m for m in sys.modules if m.startswith(('google', 'googleapiclient'))}\n"
        "before = google()\n"
        "import dicomflow.stages.flush, dicomflow.stages.follow, dicomflow.stages.intake\n"
        "import dicomflow.ledger.store, dicomflow.config.settings\n"
        "print(sorted(google() - before))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_the_check_would_see_an_sdk_import() -> None:
    # GIVEN the same probe WHEN an adapter is imported THEN Google modules show up (the probe can fail)
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import dicomflow.adapters.storage\n"
        "print(any(m.startswith('google.cloud.storage') for m in set(sys.modules) - before))\n"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "True"
    )
