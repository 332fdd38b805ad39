"""The ``healthcare-emulator`` console script: the emulator's own requirements (numpy, pillow, werkzeug) come
with ``pip install 'dicomflow[emulator]'``; without them it says so instead of failing with a traceback."""

from __future__ import annotations

import importlib
import sys


def main(argv: list[str] | None = None) -> int:
    try:
        emulator = importlib.import_module("healthcare_emulator.__main__")  # imports numpy, pillow, werkzeug
    except ModuleNotFoundError as exc:
        print(f"error: healthcare-emulator needs the Python package {exc.name!r}, which the emulator extra "
              "installs: pip install 'dicomflow[emulator]'", file=sys.stderr)  # fmt: skip
        return 2
    return int(emulator.main(argv))


if __name__ == "__main__":
    sys.exit(main())
