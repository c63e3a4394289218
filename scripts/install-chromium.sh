#!/usr/bin/env bash
# Install Debian's headless-capable Chromium and its WebDriver (chromedriver), which the
# browser integration tests (tests/it/browser.rs) drive: /usr/bin/chromium and
# /usr/bin/chromedriver (idempotent).
set -euo pipefail

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

if [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]; then
    echo "chromium and chromedriver already installed ($("$CHROMEDRIVER" --version 2>/dev/null | head -n1 || echo "$CHROMEDRIVER"))"
    exit 0
fi

start=$(date +%s)
bash "$(dirname "$0")/apt-install.sh" chromium chromium-driver

if [ ! -x "$CHROMIUM" ] || [ ! -x "$CHROMEDRIVER" ]; then
    echo "error: apt-get succeeded but $CHROMIUM or $CHROMEDRIVER is missing" >&2
    exit 1
fi
echo "installed $("$CHROMEDRIVER" --version | head -n1) in $(( $(date +%s) - start ))s"
