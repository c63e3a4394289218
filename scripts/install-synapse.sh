#!/usr/bin/env bash
# Install a pinned Synapse, matrix-nio (a real client library the tests act as a
# ticket holder with) and icalendar (a real iCalendar parser the calendar tests read
# Foyer's feeds with) into <repo>/target/synapse-venv (idempotent).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$REPO_ROOT/scripts/lib/pinned-venv.sh"
pinned_venv "$REPO_ROOT/target/synapse-venv" "matrix-synapse==1.163.2" "matrix-nio==0.25.2" "icalendar==7.3.2"
