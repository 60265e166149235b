#!/usr/bin/env bash
# scripts/venv-salt.sh <salt major> [python]  e.g.  scripts/venv-salt.sh 3006 python3.10
# Idempotent: makes a venv with the latest Salt <major>.x from PyPI and this repo installed
# editable with its test extras (and so its dependencies: the package does not require Salt, so
# Salt stays at <major>.x), links it as .venv-salt<major>/ in the repo, then prints that path.
# The venv itself is kept in $SALT_VENV_CACHE (default ~/.cache/salt-redis-syndic), one per Salt
# major, Python and setup.cfg/pyproject.toml digest, so a fresh clone (CI) builds it only once
# per machine and dependency change (about 4 minutes); a clone whose checkout the venv does not
# point to yet re-installs only this package, editable and without dependencies (seconds).
# Checks the Salt release every time.
# Salt 3006 and 3007 need Python 3.10 (their onedir's); 3008 runs on 3.10-3.12.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 <salt major, e.g. 3006> [python]" >&2
    exit 2
fi
MAJOR="$1"
PYTHON="${2:-python3}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LINK="$REPO_ROOT/.venv-salt$MAJOR"
cd "$REPO_ROOT"

want_py="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
digest="$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
CACHE="${SALT_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/salt-redis-syndic}"
VENV="$CACHE/salt$MAJOR-py$want_py-$digest"
mkdir -p "$CACHE"
exec 9>"$VENV.lock"
flock 9  # two runs on one machine build or re-point the venv one after the other
if [ -e "$VENV" ] && [ ! -e "$VENV/.complete" ]; then
    rm -rf "$VENV"  # a build that was interrupted
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "venv-salt: creating $VENV (Salt $MAJOR.x on Python $want_py; first run takes a few minutes)" >&2
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >"$VENV/pip.log" 2>&1 || { cat "$VENV/pip.log" >&2; exit 1; }
fi
salt_release() {
    "$VENV/bin/python" -c 'import salt.version as v; print(v.__saltstack_version__.major, v.__saltstack_version__)' 2>/dev/null || true
}
if [ ! -e "$VENV/.complete" ] || [ "$(salt_release | cut -d' ' -f1)" != "$MAJOR" ]; then
    if ! { "$VENV/bin/python" -m pip install "salt==$MAJOR.*" && "$VENV/bin/python" -m pip install -e '.[test]'; } \
            >"$VENV/pip.log" 2>&1; then
        cat "$VENV/pip.log" >&2
        echo "venv-salt: pip install failed (log above)" >&2
        exit 1
    fi
    echo "$REPO_ROOT" >"$VENV/.checkout"
    touch "$VENV/.complete"
    for old in "$CACHE/salt$MAJOR-py$want_py-"*; do  # venvs for dependencies this repo no longer has
        case "$old" in "$VENV"|"$VENV.lock") ;; *) rm -rf "$old" ;; esac
    done
elif [ "$(cat "$VENV/.checkout" 2>/dev/null)" != "$REPO_ROOT" ]; then
    # The venv serves another checkout (an earlier clone): point the editable install here.
    if ! "$VENV/bin/python" -m pip install --no-deps -e . >"$VENV/pip.log" 2>&1; then
        cat "$VENV/pip.log" >&2
        echo "venv-salt: pip install --no-deps -e . failed (log above)" >&2
        exit 1
    fi
    echo "$REPO_ROOT" >"$VENV/.checkout"
fi
if [ -e "$LINK" ] && [ ! -L "$LINK" ]; then
    rm -rf "$LINK"  # a venv an older version of this script made in the repo
fi
ln -sfn "$VENV" "$LINK"
release="$(salt_release)"
if [ "${release%% *}" != "$MAJOR" ]; then
    echo "venv-salt: $VENV has Salt ${release#* } after installing this package, not $MAJOR.x" >&2
    exit 1
fi
echo "$LINK"
