#!/usr/bin/env bash
# Install a pinned openapi-spec-validator, which checks docs/openapi.yaml, into
# <repo>/target/openapi-venv (idempotent).
set -euo pipefail

VERSION="0.7.1"
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$REPO_ROOT/target/openapi-venv"
PY="$VENV/bin/python"

installed_version() {
    "$PY" -c "import importlib.metadata as m, sys; sys.stdout.write(m.version('$1'))" 2>/dev/null || true
}

if [ -x "$PY" ] && [ "$(installed_version openapi-spec-validator)" = "$VERSION" ]; then
    echo "openapi-spec-validator $VERSION already installed in $VENV"
    exit 0
fi

start=$(date +%s)
if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
"$PY" -m pip install --disable-pip-version-check -q "openapi-spec-validator==$VERSION"

got="$(installed_version openapi-spec-validator)"
if [ "$got" != "$VERSION" ]; then
    echo "error: expected openapi-spec-validator $VERSION in $VENV, found '${got:-none}'" >&2
    exit 1
fi
echo "installed openapi-spec-validator $VERSION into $VENV in $(( $(date +%s) - start ))s"
