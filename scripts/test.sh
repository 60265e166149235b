#!/usr/bin/env bash
# The one test command (README and .ci/run both use this script): sets the machine up if
# needed (scripts/bootstrap.sh, idempotent), then runs the whole suite in the repo's venv.
# Extra arguments are passed to pytest, e.g. scripts/test.sh -m unit
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
