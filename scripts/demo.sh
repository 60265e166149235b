#!/usr/bin/env bash
# Set up the machine (idempotent), then run the lab demo:
# a MoM and DC masters with minions and Redis on this host.
# Arguments go to `python3 -m salt_redis_syndic.lab demo`.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO_ROOT/scripts/bootstrap.sh"
cd "$REPO_ROOT"
exec python3 -m salt_redis_syndic.lab demo "$@"
