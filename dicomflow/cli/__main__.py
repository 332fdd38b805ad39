"""``python -m dicomflow.cli``: the same as the ``dicomflow`` console script."""

from dicomflow.cli.app import main

raise SystemExit(main())
