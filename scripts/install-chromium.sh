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

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "error: installing chromium needs root, and sudo is not available" >&2
        exit 1
    fi
fi

start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q \
        && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends chromium chromium-driver; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "error: could not install chromium and chromium-driver with apt-get (see above)" >&2
    exit 1
fi

if [ ! -x "$CHROMIUM" ] || [ ! -x "$CHROMEDRIVER" ]; then
    echo "error: apt-get succeeded but $CHROMIUM or $CHROMEDRIVER is missing" >&2
    exit 1
fi
echo "installed $("$CHROMEDRIVER" --version | head -n1) in $(( $(date +%s) - start ))s"
