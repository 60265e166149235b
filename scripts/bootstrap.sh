#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian/Ubuntu machine for salt-redis-syndic:
#   - installs redis-server (binary only; the system service is not started)
#     when it is not already on PATH;
#   - installs this repo editable with the test extras into python3.
# Run as root or as a user with sudo. Quiet on success, shows errors.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    SUDO=()
fi

if ! command -v redis-server >/dev/null 2>&1; then
    echo "bootstrap: installing redis-server" >&2
    # policy-rc.d exit 101 keeps the package's init scripts from starting the
    # system service; the lab starts its own redis-server processes.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod 755 "$policy"
        created_policy=1
    fi
    trap '[ "$created_policy" = 1 ] && "${SUDO[@]}" rm -f "$policy"' EXIT
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    if [ "$created_policy" = 1 ]; then
        "${SUDO[@]}" rm -f "$policy"
        created_policy=0
    fi
fi

cd "$REPO_ROOT"
"$PYTHON" -m pip install -q -e '.[test]'
