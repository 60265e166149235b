#!/usr/bin/env bash
# Set up the machine (idempotent), then run the lab demo: redis-server, a MoM, two DC
# masters and their minions on loopback; a job from the MoM; every minion's result.
# Arguments go to `python -m lab demo` (e.g. --minions 3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m lab demo "$@"
