#!/usr/bin/env bash
# Install Debian's Prometheus (prometheus, promtool), which the metrics tests
# (tests/it/prometheus.rs) run against Foyer: /usr/bin/prometheus and /usr/bin/promtool
# (idempotent). The tests start their own Prometheus on a free port; the packaged
# service is not used.
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
