#!/usr/bin/env bash
# Install Debian's prometheus (the server and promtool), which the metrics tests
# (tests/it/prometheus.rs) run: Prometheus scrapes Foyer, the tests query its API and run
# the Grafana dashboard's queries, and promtool lints a scrape (idempotent).
set -euo pipefail

PROMETHEUS=/usr/bin/prometheus
PROMTOOL=/usr/bin/promtool

if [ -x "$PROMETHEUS" ] && [ -x "$PROMTOOL" ]; then
    echo "prometheus already installed ($("$PROMETHEUS" --version 2>&1 | head -n1))"
    exit 0
fi

start=$(date +%s)
bash "$(dirname "$0")/apt-install.sh" prometheus

if [ ! -x "$PROMETHEUS" ] || [ ! -x "$PROMTOOL" ]; then
    echo "error: apt-get succeeded but $PROMETHEUS or $PROMTOOL is missing" >&2
    exit 1
fi
echo "installed $("$PROMETHEUS" --version 2>&1 | head -n1) in $(( $(date +%s) - start ))s"
