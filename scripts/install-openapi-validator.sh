#!/usr/bin/env bash
# Install a pinned openapi-spec-validator, which checks docs/openapi.yaml, into
# <repo>/target/openapi-venv (idempotent).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$REPO_ROOT/scripts/lib/pinned-venv.sh"
pinned_venv "$REPO_ROOT/target/openapi-venv" "openapi-spec-validator==0.7.1"
