#!/usr/bin/env bash
# The one test command (README and .ci/run both use this script).
# Extra arguments are passed to pytest, e.g. scripts/test.sh -m unit
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python3 -m pytest -q -p no:cacheprovider tests "$@"
