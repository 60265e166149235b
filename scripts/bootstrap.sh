#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian/Ubuntu machine for salt-redis-syndic:
#   - installs redis-server (binary only; the system service is not started)
#     when it is not already on PATH, and python3-venv when venvs cannot be made;
#   - creates .venv/ in the repo (Debian's python refuses system-wide pip installs,
#     PEP 668), installs Salt ($SALT_SPEC, default the latest 3008.x: the package does not
#     require Salt, a master always has it) and this repo editable with the test extras.
#   Other Salt releases get their own venv: scripts/venv-salt.sh <major> <python>.

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

if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "bootstrap: installing python3-venv" >&2
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends python3-venv python3-pip >/dev/null
fi

cd "$REPO_ROOT"
VENV="$REPO_ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating $VENV (first run installs salt and friends, about a minute)" >&2
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >"$VENV/pip.log" 2>&1 || { cat "$VENV/pip.log" >&2; exit 1; }
fi
# Reinstall only when the packaging changed since the last successful install.
stamp="$VENV/.installed-$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
if ! "$VENV/bin/python" -c 'import salt.version' >/dev/null 2>&1; then
    rm -f "$VENV"/.installed-*
    if ! "$VENV/bin/python" -m pip install -q "${SALT_SPEC:-salt==3008.*}" >"$VENV/pip.log" 2>&1; then
        cat "$VENV/pip.log" >&2
        echo "bootstrap: installing Salt failed (log above)" >&2
        exit 1
    fi
fi
if [ ! -e "$stamp" ]; then
    if ! "$VENV/bin/python" -m pip install -q -e '.[test]' >"$VENV/pip.log" 2>&1; then
        cat "$VENV/pip.log" >&2
        echo "bootstrap: pip install failed (log above)" >&2
        exit 1
    fi
    rm -f "$VENV"/.installed-*
    touch "$stamp"
fi
