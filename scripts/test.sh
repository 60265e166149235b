#!/usr/bin/env bash
# The one test command (README and .ci/run both use this script): sets the machine up if
# needed (scripts/bootstrap.sh, idempotent), then runs the whole suite in the repo's venv.
# Extra arguments are passed to pytest, e.g. scripts/test.sh -m unit
# Two workers, one test module each at a time (--dist loadfile keeps a module's shared lab in
# one worker): most of an integration test is waiting on daemons, so this halves the wall time
# on two cores. PYTEST_WORKERS=0 runs serially.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-2}" --dist loadfile --durations=15 tests "$@"
