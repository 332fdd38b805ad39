#!/usr/bin/env bash
# Offline checks of the Terraform deployment (terraform/). No provider is downloaded and nothing
# talks to Google Cloud:
#   1. terraform fmt -check            (skipped when terraform is not installed)
#   2. checkov, static security checks (venv .tfvenv)
#   3. the provider schema check        (scripts/terraform_schema.py in venv .hclvenv): every resource,
#                                        data and provider block against the schema of the pinned
#                                        provider versions, extracted once from their CDK bindings on
#                                        PyPI into .tfschema/ (gitignored)
#   4. pytest tests/terraform           (venv .hclvenv: python-hcl2 + pytest)
# Two venvs because checkov depends on bc-python-hcl2, a fork that installs the same `hcl2`
# package as python-hcl2: in one venv the last install silently overwrites the other's files.
#
# Usage: scripts/terraform_checks.sh        (PYTHON=/path/to/python3.11 to choose the interpreter)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
started=$SECONDS

# Create VENV if missing and install the requirements into it, once per set of requirements.
ensure_venv() {
  local venv=$1
  shift
  local stamp
  stamp="$venv/.installed-$(printf '%s\n' "$@" | cksum | cut -d' ' -f1)"
  if [[ -f "$stamp" ]]; then
    return
  fi
  if [[ ! -x "$venv/bin/python" ]]; then
    "$PYTHON" -m venv "$venv" || {
      echo "error: could not create $venv with $PYTHON (Debian: apt install python3-venv)" >&2
      exit 1
    }
  fi
  echo "installing into $venv: $*"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
  rm -f "$venv"/.installed-*
  touch "$stamp"
}

echo "== terraform fmt"
if command -v terraform >/dev/null 2>&1; then
  terraform fmt -check -recursive -diff terraform
  echo "ok"
else
  echo "SKIPPED: terraform not installed"
fi

echo "== checkov"
ensure_venv .tfvenv "checkov>=3.2,<4"
# Fails (non-zero) on any failed check; every skip is a #checkov:skip=ID:reason comment in the HCL.
.tfvenv/bin/checkov -d terraform --framework terraform --skip-download --compact --quiet

# python-hcl2 8.1+: scripts/terraform_schema.py reads its parse tree (parses_to_tree), which keeps blocks
# and arguments apart.
ensure_venv .hclvenv "python-hcl2>=8.1,<9" "pytest>=8.3,<10" "pytest-timeout>=2.3,<3"

echo "== provider schema"
.hclvenv/bin/python scripts/terraform_schema.py check

echo "== HCL tests"
.hclvenv/bin/python -m pytest tests/terraform -q

echo "terraform checks passed in $((SECONDS - started)) s"
