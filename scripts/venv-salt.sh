#!/usr/bin/env bash
# scripts/venv-salt.sh <salt major> [python]  e.g.  scripts/venv-salt.sh 3006 python3.10
# Idempotent: creates .venv-salt<major>/ in the repo with the latest Salt <major>.x from PyPI and
# this repo installed editable with its test extras (and so its dependencies: the package does
# not require Salt, so Salt stays at <major>.x), then prints the venv's path.
# Reinstalls only when setup.cfg / pyproject.toml change; checks the Salt release every time.
# Salt 3006 and 3007 need Python 3.10 (their onedir's); 3008 runs on 3.10-3.12.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 <salt major, e.g. 3006> [python]" >&2
    exit 2
fi
MAJOR="$1"
PYTHON="${2:-python3}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv-salt$MAJOR"
cd "$REPO_ROOT"

want_py="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ -x "$VENV/bin/python" ]; then
    have_py="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [ "$have_py" != "$want_py" ]; then
        echo "venv-salt: $VENV runs Python $have_py, not $want_py: recreating it" >&2
        rm -rf "$VENV"
    fi
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "venv-salt: creating $VENV (Salt $MAJOR.x on Python $want_py; first run takes a few minutes)" >&2
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >"$VENV/pip.log" 2>&1 || { cat "$VENV/pip.log" >&2; exit 1; }
fi
salt_release() {
    "$VENV/bin/python" -c 'import salt.version as v; print(v.__saltstack_version__.major, v.__saltstack_version__)' 2>/dev/null || true
}
stamp="$VENV/.installed-$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ] || [ "$(salt_release | cut -d' ' -f1)" != "$MAJOR" ]; then
    if ! { "$VENV/bin/python" -m pip install "salt==$MAJOR.*" && "$VENV/bin/python" -m pip install -e '.[test]'; } \
            >"$VENV/pip.log" 2>&1; then
        cat "$VENV/pip.log" >&2
        echo "venv-salt: pip install failed (log above)" >&2
        exit 1
    fi
    rm -f "$VENV"/.installed-*
    touch "$stamp"
fi
release="$(salt_release)"
if [ "${release%% *}" != "$MAJOR" ]; then
    echo "venv-salt: $VENV has Salt ${release#* } after installing this package, not $MAJOR.x" >&2
    exit 1
fi
echo "$VENV"
