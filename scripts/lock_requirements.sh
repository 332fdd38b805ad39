#!/usr/bin/env bash
# Regenerate the locks from the ranges, from PyPI only (this machine's pip configuration and local wheel
# folders are ignored so that every hash is one of PyPI's files):
#   requirements.txt       <- requirements.in        what the Cloud Functions and the backfill image install
#   requirements-dev.lock  <- requirements-dev.txt   what `make` installs (same versions as requirements.txt)
# Needs pip-tools (pip-compile) 7.4+ (PIP_TOOLS_COMPILE=path, not PIP_COMPILE: pip reads that one); run it after changing a range, and commit the three files together.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PIP_TOOLS_COMPILE="${PIP_TOOLS_COMPILE:-pip-compile}"
compile() {
  env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
    "$PIP_TOOLS_COMPILE" --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-find-links \
    --index-url https://pypi.org/simple --no-emit-index-url "$@"
}
compile --output-file requirements.txt requirements.in
compile --constraint requirements.txt --output-file requirements-dev.lock requirements-dev.txt
