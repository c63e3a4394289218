#!/usr/bin/env bash
# Install a pinned Synapse, and matrix-nio (a real client library the tests act as a
# ticket holder with), into <repo>/target/synapse-venv (idempotent).
set -euo pipefail

SYNAPSE_VERSION="1.163.2"
NIO_VERSION="0.25.2"
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$REPO_ROOT/target/synapse-venv"
PY="$VENV/bin/python"

installed_version() {
    # Not synapse.__version__: inside a git checkout Synapse appends the checkout's
    # branch and commit to it. The package metadata holds the plain version.
    "$PY" -c "import importlib.metadata as m, sys; sys.stdout.write(m.version('$1'))" 2>/dev/null || true
}

if [ -x "$PY" ] && [ "$(installed_version matrix-synapse)" = "$SYNAPSE_VERSION" ] \
    && [ "$(installed_version matrix-nio)" = "$NIO_VERSION" ]; then
    echo "synapse $SYNAPSE_VERSION and matrix-nio $NIO_VERSION already installed in $VENV"
    exit 0
fi

start=$(date +%s)
if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
"$PY" -m pip install --disable-pip-version-check -q "matrix-synapse==$SYNAPSE_VERSION" "matrix-nio==$NIO_VERSION"

got="$(installed_version matrix-synapse)"
if [ "$got" != "$SYNAPSE_VERSION" ]; then
    echo "error: expected synapse $SYNAPSE_VERSION in $VENV, found '${got:-none}'" >&2
    exit 1
fi
echo "installed synapse $SYNAPSE_VERSION and matrix-nio $NIO_VERSION into $VENV in $(( $(date +%s) - start ))s"
