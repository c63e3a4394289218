#!/usr/bin/env bash
# Installs Debian packages with apt-get, as root or through sudo, quietly unless it fails
# (then the last lines of apt's output and a one-line error). Used by the install-*.sh
# scripts, which first check whether what they need is already there.
#   scripts/apt-install.sh PACKAGE...
set -euo pipefail

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "error: installing $* needs root, and sudo is not available" >&2
        exit 1
    fi
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q \
        && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "$@"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "error: could not install $* with apt-get (see above)" >&2
    exit 1
fi
